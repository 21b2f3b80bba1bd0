"""The challenge lifecycle: create, read, verify by TOTP, consume, cancel.

    pending ──▶ verified ──▶ consumed
       ├──▶ failed      (attempts used up)
       ├──▶ denied      (the customer said no on the phone)
       ├──▶ cancelled   (the client, or deletion)
       └──▶ expired     (time up; a verified challenge not consumed in time expires too)

Each arrow is one Lua script (``lua/``), run as one atomic step on the customer's slot. A
status is settled lazily: the first script to touch a challenge past its time turns it
``expired`` and writes the event, so no sweeper is needed and Redis's TTL drops the record
once the retention period has passed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from authgw.auth import sees_every_client
from authgw.challenges import limits, models
from authgw.challenges.customers import Customers
from authgw.challenges.domain import Domain, rfc3339
from authgw.challenges.locks import policy_arg
from authgw.challenges.outcomes import RETRIES, expect_ok, pairs, status_of
from authgw.challenges.phones import display
from authgw.errors import ApiError, StoreUnavailable, ValidationFailed
from authgw.keys import new_challenge_id, tag_of_challenge

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_MAX = 255
# How long a request in flight holds its Idempotency-Key against other bodies. It bounds how
# long a request that died between its claim and its answer (a store failure, a killed
# worker) keeps the key from a corrected request; far longer than any request lives (each
# store call gives up after redis_timeout, a worker is killed after 10 s without a beat).
IDEMPOTENCY_LEASE_SECONDS = 60


@dataclass
class Claim:
    """One request's claim on an Idempotency-Key (``idempotency_claim.lua``)."""

    key: str
    key_digest: str
    request_hash: str
    token: str
    ttl_ms: int
    held: bool = False  # this request holds the key: it must settle or release it


def transaction_digest(customer_id: str, kind: str, amount: int, currency: str, payee: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the transaction (API.md), lowercase hex."""
    return hashlib.sha256(
        models.canonical_json(
            {
                "amount": amount,
                "currency": currency,
                "customer_id": customer_id,
                "kind": kind,
                "payee": payee,
            }
        )
    ).hexdigest()


def document(
    request: models.ChallengeCreate,
    payee: dict[str, Any],
    digest: str,
    attempts: int,
    callback_mode: str,
) -> dict[str, Any]:
    """The immutable part of a challenge record (its ``doc`` field), but for ``created_at`` and
    ``expires_at``: the creation script adds those, from the store's clock."""
    return {
        "kind": request.kind,
        "amount": request.amount,
        "currency": request.currency,
        "payee": payee,
        "transaction_digest": digest,
        "attempts": attempts,
        "callback_mode": callback_mode,
    }


def render(challenge_id: str, record: dict[str, str], *, as_created: bool = False) -> dict[str, Any]:
    """The contract's challenge object; ``as_created`` gives it as the first response was."""
    doc = json.loads(record["doc"])
    out: dict[str, Any] = {
        "id": challenge_id,
        "status": "pending" if as_created else record["status"],
        "customer_id": record["customer_id"],
        "kind": doc["kind"],
        "amount": doc["amount"],
        "currency": doc["currency"],
        "payee": doc["payee"],
        "methods": json.loads(record["methods"]),
    }
    if record.get("line"):
        callback = {"number": record["line"], "display": display(record["line"])}
        if record.get("code"):
            callback["code"] = record["code"]
        out["callback"] = callback
    out.update(
        {
            "transaction_digest": doc["transaction_digest"],
            "attempts_left": doc["attempts"] if as_created else max(int(record["attempts"]), 0),
            "created_at": doc["created_at"],
            "expires_at": doc["expires_at"],
            "verified_by": None if as_created else record.get("verified_by"),
            "verified_at": None if as_created else record.get("verified_at"),
            "new_payee": record.get("new_payee") == "1",
            "required": json.loads(record["required"]) if record.get("required") else None,
        }
    )
    return out


class Challenges:
    def __init__(self, domain: Domain, customers: Customers) -> None:
        self.d = domain
        self.customers = customers
        self.keys = domain.store.keys

    # -- creation -------------------------------------------------------------------------

    def create(self, client: str, body: Any, idempotency_key: str | None) -> tuple[dict[str, Any], bool]:
        """Create a challenge; returns it and whether it is new (False: an idempotent replay).

        With an ``Idempotency-Key``, only a request that created a challenge (or is still in
        flight) holds the key: a refused one releases it, so the corrected request may use it.
        """
        request, payee = models.parse_challenge(body)
        claim = self._claim(client, body, request, idempotency_key)
        try:
            challenge, new = self._create(client, request, payee, claim)
        except ApiError:
            # Refused (unknown customer, locked, no usable method...): nothing was created,
            # so the key is free again, unless another request holds it too. A store failure
            # is no refusal (the creation may have happened): the lease bounds that hold.
            if claim is not None and claim.held:
                self._release(claim)
            raise
        if claim is not None and claim.held:
            self._settle(claim)
        return challenge, new

    def _claim(
        self, client: str, body: Any, request: models.ChallengeCreate, idempotency_key: str | None
    ) -> Claim | None:
        if idempotency_key is None:
            return None
        if not 1 <= len(idempotency_key) <= IDEMPOTENCY_KEY_MAX or not idempotency_key.isprintable():
            raise ValidationFailed(
                [{"field": "Idempotency-Key", "message": "must be 1-255 printable characters"}]
            )
        key_digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
        claim = Claim(
            key=self.keys.idempotency_claim(client, key_digest),
            key_digest=key_digest,
            request_hash=hashlib.sha256(models.canonical_json(body)).hexdigest(),
            token=secrets.token_hex(8),
            ttl_ms=self.d.retention_ms + request.ttl_seconds * 1000,
        )
        # The claim is client-wide (its own slot); the customer-side record, written with
        # the challenge, makes the creation itself idempotent.
        state = expect_ok(
            self.d.store.run(
                "idempotency_claim",
                [claim.key],
                [
                    claim.request_hash,
                    claim.token,
                    self.d.now().ms,
                    IDEMPOTENCY_LEASE_SECONDS * 1000,
                    claim.ttl_ms,
                ],
            )
        )
        claim.held = state[0] == "held"
        return claim

    def _release(self, claim: Claim) -> None:
        try:
            self.d.store.run("idempotency_release", [claim.key], [claim.token])
        except StoreUnavailable:
            # The refusal stands; the key is held until the lease ends.
            log.warning("an Idempotency-Key could not be released; it is free when its lease ends")

    def _settle(self, claim: Claim) -> None:
        try:
            result = self.d.store.run(
                "idempotency_settle", [claim.key], [claim.request_hash, claim.token, claim.ttl_ms]
            )
        except StoreUnavailable:
            # The challenge exists and a retry of this body replays it (the customer's own
            # record); only another body under this key is no longer refused after the lease.
            log.warning("an Idempotency-Key could not be settled after its challenge was created")
            return
        if status_of(result) != "ok":
            log.warning("an Idempotency-Key was taken by another body after its lease ended")

    def _create(
        self, client: str, request: models.ChallengeCreate, payee: dict[str, Any], claim: Claim | None
    ) -> tuple[dict[str, Any], bool]:
        settings = self.d.settings
        store = self.d.store
        keys = self.keys.for_customer(request.customer_id)
        request_hash = claim.request_hash if claim is not None else ""
        if claim is not None:
            idem_key = keys.idempotency(client, claim.key_digest)

        now = self.d.now()
        challenge_id = new_challenge_id(request.customer_id)
        expires_ms = now.ms + request.ttl_seconds * 1000
        mode = settings.callback_mode
        code = ""
        if mode == "code":
            code = "".join(secrets.choice("0123456789") for _ in range(settings.callback_code_digits))
        doc = document(
            request,
            payee,
            transaction_digest(request.customer_id, request.kind, request.amount, request.currency, payee),
            settings.challenge_attempts,
            mode,
        )
        doc["payee_digest"] = limits.payee_digest(request.customer_id, request.kind, request.currency, payee)
        doc_json = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
        methods_json = json.dumps(request.methods) if request.methods is not None else ""
        base_keys = [
            keys.customer,
            keys.open,
            keys.events,
            keys.lines,
            keys.challenge(challenge_id),
            keys.usage(),
            keys.payees(),
        ]
        if request_hash:
            base_keys.append(idem_key)
        result = store.run(
            "create_challenge",
            base_keys,
            [
                now.ms,
                now.iso,
                self.d.maxlen,
                expires_ms - now.ms + self.d.retention_ms,
                challenge_id,
                client,
                request.customer_id,
                doc_json,
                methods_json,
                settings.challenge_attempts,
                expires_ms,
                rfc3339(expires_ms),
                request_hash,
                json.dumps(list(settings.callback_numbers)),
                code,
                *limits.create_args(self.d, now.ms),
            ],
        )
        if status_of(result) == "replay":
            return self._read(client, result[1], as_created=True), False
        methods_out, line, stored_doc, new_payee, required = expect_ok(result)
        record = {
            "customer_id": request.customer_id,
            "doc": stored_doc,
            "methods": methods_out,
            "status": "pending",
            "attempts": str(settings.challenge_attempts),
            "new_payee": str(new_payee),
        }
        if required:
            record["required"] = required
        if line:
            record["line"] = line
            if code:
                record["code"] = code
        return render(challenge_id, record), True

    # -- reads ----------------------------------------------------------------------------

    def _challenge_keys(self, challenge_id: str) -> tuple[Any, str]:
        tag = tag_of_challenge(challenge_id)
        if tag is None:
            raise ApiError("challenge_not_found")
        keys = self.keys.for_tag(tag)
        return keys, keys.challenge(challenge_id)

    def _read(
        self, client: str, challenge_id: str, *, as_created: bool = False, any_client: bool = False
    ) -> dict[str, Any]:
        keys, ch = self._challenge_keys(challenge_id)
        now = self.d.now()
        result = self.d.store.read(
            "read_challenge",
            [ch, keys.open, keys.events, keys.lines],
            [now.ms, self.d.maxlen, client, challenge_id, "1" if any_client else "0"],
        )
        return render(challenge_id, pairs(expect_ok(result)), as_created=as_created)

    def get(self, client: str, challenge_id: str) -> dict[str, Any]:
        """The challenge, if the client created it, or reads every client's (an operator)."""
        return self._read(client, challenge_id, any_client=sees_every_client(client, self.d.settings))

    # -- transitions ----------------------------------------------------------------------

    def verify_totp(self, client: str, challenge_id: str, body: Any) -> dict[str, Any]:
        code = models.parse(models.CodeBody, body).code
        keys, ch = self._challenge_keys(challenge_id)
        store = self.d.store
        for _ in range(RETRIES):
            # The codes are computed at the store's now, read with the secret.
            customer_id, sealed, now = self.customers._secret(keys, "totp")
            steps = self.customers._steps(sealed, customer_id, code, now.seconds)
            result = store.run(
                "verify_totp",
                [ch, keys.customer, keys.open, keys.events, keys.lines],
                [
                    now.ms,
                    now.iso,
                    self.d.maxlen,
                    self.d.retention_ms,
                    client,
                    policy_arg(self.d.settings),
                    sealed,
                    steps,
                    challenge_id,
                ],
            )
            if status_of(result) != "stale":
                return render(challenge_id, pairs(expect_ok(result, counts_attempts=True)))
        raise StoreUnavailable("the TOTP secret kept changing")

    def consume(self, client: str, challenge_id: str, body: Any) -> dict[str, Any]:
        digest = models.parse(models.ConsumeBody, body).transaction_digest
        keys, ch = self._challenge_keys(challenge_id)
        now = self.d.now()
        result = self.d.store.run(
            "consume",
            [ch, keys.open, keys.events, keys.lines, keys.customer, keys.usage(), keys.payees()],
            [now.ms, now.iso, self.d.maxlen, self.d.retention_ms, client, digest, challenge_id],
        )
        return render(challenge_id, pairs(expect_ok(result)))

    def cancel(self, client: str, challenge_id: str) -> dict[str, Any]:
        keys, ch = self._challenge_keys(challenge_id)
        now = self.d.now()
        result = self.d.store.run(
            "cancel",
            [ch, keys.open, keys.events, keys.lines],
            [now.ms, now.iso, self.d.maxlen, self.d.retention_ms, client, challenge_id],
        )
        return render(challenge_id, pairs(expect_ok(result)))
