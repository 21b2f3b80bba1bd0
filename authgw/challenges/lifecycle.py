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

from authgw import scripts
from authgw.auth import sees_every_client
from authgw.challenges import limits, models
from authgw.challenges.codes import Codes
from authgw.challenges.customers import Customers
from authgw.challenges.domain import Domain, pause, rfc3339
from authgw.challenges.locks import policy_arg
from authgw.challenges.outcomes import RETRIES
from authgw.challenges.phones import display
from authgw.challenges.waiting import Waiting
from authgw.errors import ApiError, StoreUnavailable
from authgw.identifiers import new_challenge_id, tag_of_challenge
from authgw.keys import CustomerKeys

log = logging.getLogger(__name__)

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
        # The payee without the amount: what "new payee" is judged by (limits.payee_digest).
        "payee_digest": limits.payee_digest(request.customer_id, request.kind, request.currency, payee),
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
        # The long-polls of this process (one listener for all of them). A test's stand-in
        # sleep, when there is one, is what a waiting request's waits are.
        self.waiting = Waiting(
            domain.store,
            domain.clock,
            lambda: domain.now().seconds - domain.clock(),
            sleep=None if domain.sleep is pause else domain.sleep,
        )

    # -- creation -------------------------------------------------------------------------

    def create(self, client: str, new: models.NewChallenge) -> tuple[dict[str, Any], bool]:
        """Create a challenge; returns it and whether it is new (False: an idempotent replay).

        With an ``Idempotency-Key``, only a request that created a challenge (or is still in
        flight) holds the key: a refused one releases it, so the corrected request may use it.
        """
        claim = self._claim(client, new)
        try:
            challenge, new_one = self._create(client, new.request, new.payee, claim)
        except ApiError:
            # Refused (unknown customer, locked, no usable method...): nothing was created,
            # so the key is free again, unless another request holds it too. A store failure
            # is no refusal (the creation may have happened): the lease bounds that hold.
            if claim is not None and claim.held:
                self._release(claim)
            raise
        if claim is not None and claim.held:
            self._settle(claim)
        return challenge, new_one

    def _claim(self, client: str, new: models.NewChallenge) -> Claim | None:
        if new.idempotency_key is None:
            return None
        key_digest = hashlib.sha256(new.idempotency_key.encode()).hexdigest()[:32]
        claim = Claim(
            key=self.keys.idempotency_claim(client, key_digest),
            key_digest=key_digest,
            request_hash=new.body_hash,
            token=secrets.token_hex(8),
            ttl_ms=self.d.retention_ms + new.request.ttl_seconds * 1000,
        )
        # The claim is client-wide (its own slot); the customer-side record, written with
        # the challenge, makes the creation itself idempotent.
        claim.held = scripts.idempotency_claim(
            self.d.store,
            claim=claim.key,
            request_hash=claim.request_hash,
            token=claim.token,
            now=self.d.now(),
            lease_ms=IDEMPOTENCY_LEASE_SECONDS * 1000,
            ttl_ms=claim.ttl_ms,
        ).held
        return claim

    def _release(self, claim: Claim) -> None:
        try:
            scripts.idempotency_release(self.d.store, claim=claim.key, token=claim.token)
        except StoreUnavailable:
            # The refusal stands; the key is held until the lease ends.
            log.warning("an Idempotency-Key could not be released; it is free when its lease ends")

    def _settle(self, claim: Claim) -> None:
        try:
            settled = scripts.idempotency_settle(
                self.d.store,
                claim=claim.key,
                request_hash=claim.request_hash,
                token=claim.token,
                ttl_ms=claim.ttl_ms,
            )
        except StoreUnavailable:
            # The challenge exists and a retry of this body replays it (the customer's own
            # record); only another body under this key is no longer refused after the lease.
            log.warning("an Idempotency-Key could not be settled after its challenge was created")
            return
        if settled != "ok":
            log.warning("an Idempotency-Key was taken by another body after its lease ended")

    def _create(
        self, client: str, request: models.ChallengeCreate, payee: dict[str, Any], claim: Claim | None
    ) -> tuple[dict[str, Any], bool]:
        settings = self.d.settings
        store = self.d.store
        keys = self.keys.for_customer(request.customer_id)
        request_hash = claim.request_hash if claim is not None else ""
        idem_key = keys.idempotency(client, claim.key_digest) if claim is not None else None

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
        doc_json = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
        methods_json = json.dumps(request.methods) if request.methods is not None else ""
        made = scripts.create_challenge(
            store,
            keys,
            now=now,
            events_ms=self.d.maxlen,
            record_ttl_ms=expires_ms - now.ms + self.d.retention_ms,
            challenge_id=challenge_id,
            client=client,
            customer_id=request.customer_id,
            doc=doc_json,
            methods=methods_json,
            attempts=settings.challenge_attempts,
            expires_ms=expires_ms,
            expires_iso=rfc3339(expires_ms),
            request_hash=request_hash,
            idempotency_key=idem_key,
            numbers=settings.callback_numbers,
            code=code,
            policy=limits.create_args(self.d.settings, now.ms),
        )
        if made.status == "replay":
            return self._read(client, made.replayed_id, as_created=True), False
        record = {
            "customer_id": request.customer_id,
            "doc": made.doc,
            "methods": made.methods,
            "status": "pending",
            "attempts": str(settings.challenge_attempts),
            "new_payee": str(made.new_payee),
        }
        if made.required:
            record["required"] = made.required
        if made.line:
            record["line"] = made.line
            if code:
                record["code"] = code
        return render(challenge_id, record), True

    # -- reads ----------------------------------------------------------------------------

    def _challenge_keys(self, challenge_id: str) -> CustomerKeys:
        """The keys of the slot the challenge id names (its customer's)."""
        tag = tag_of_challenge(challenge_id)
        if tag is None:
            raise ApiError("challenge_not_found")
        return self.keys.for_tag(tag)

    def _read(
        self, client: str, challenge_id: str, *, as_created: bool = False, any_client: bool = False
    ) -> dict[str, Any]:
        now = self.d.now()
        record = scripts.read_challenge(
            self.d.store,
            self._challenge_keys(challenge_id),
            challenge_id=challenge_id,
            now=now,
            events_ms=self.d.maxlen,
            client=client,
            any_client=any_client,
        )
        if as_created and now.ms >= int(record["exp"]):
            # A replayed creation after expires_at: the designated number is no longer this
            # challenge's (it may be bound to a newer one), so the replay names none.
            record = {k: v for k, v in record.items() if k not in ("line", "code")}
        return render(challenge_id, record, as_created=as_created)

    def get(self, client: str, challenge_id: str, wait: float = 0) -> dict[str, Any]:
        """The challenge, if the client created it, or reads every client's (an operator).

        With ``wait`` (seconds), a pending challenge is answered as soon as a read finds it no
        longer pending, or after ``wait`` with it still pending: read again when its bucket's
        doorbell rings with its id, and every ``waiting.INTERVAL_SECONDS`` as the safety net
        (``authgw.challenges.waiting``). The request waits on an event in between (a greenlet
        under the gevent workers), holding no store connection."""
        any_client = sees_every_client(client, self.d.settings)
        if not wait:
            return self._read(client, challenge_id, any_client=any_client)
        keys = self._challenge_keys(challenge_id)
        return self.waiting.until_settled(
            keys.outbox, challenge_id, wait, lambda: self._read(client, challenge_id, any_client=any_client)
        )

    # -- transitions ----------------------------------------------------------------------

    def verify_totp(self, client: str, challenge_id: str, code: str) -> dict[str, Any]:
        keys = self._challenge_keys(challenge_id)
        codes = Codes(self.d.store, self.d.box, self.d.totp)
        for _ in range(RETRIES):
            # The codes are computed at the store's now, read with the secret.
            judging = codes.read(keys, "totp", code)
            judged = scripts.verify_totp(
                self.d.store,
                keys,
                challenge_id=challenge_id,
                now=judging.now,
                events_ms=self.d.maxlen,
                retention_ms=self.d.retention_ms,
                client=client,
                policy=policy_arg(self.d.settings),
                sealed=judging.sealed,
                steps=judging.steps,
            )
            if judged.status == "ok":
                return render(challenge_id, judged.record)
        raise StoreUnavailable("the TOTP secret kept changing")

    def consume(self, client: str, challenge_id: str, digest: str) -> dict[str, Any]:
        record = scripts.consume(
            self.d.store,
            self._challenge_keys(challenge_id),
            challenge_id=challenge_id,
            now=self.d.now(),
            events_ms=self.d.maxlen,
            retention_ms=self.d.retention_ms,
            client=client,
            digest=digest,
        )
        return render(challenge_id, record)

    def cancel(self, client: str, challenge_id: str) -> dict[str, Any]:
        record = scripts.cancel(
            self.d.store,
            self._challenge_keys(challenge_id),
            challenge_id=challenge_id,
            now=self.d.now(),
            events_ms=self.d.maxlen,
            retention_ms=self.d.retention_ms,
            client=client,
        )
        return render(challenge_id, record)
