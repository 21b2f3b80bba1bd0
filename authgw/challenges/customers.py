"""Customers: registered phones, TOTP enrolment, the lock, and the event trail.

The lockout rule lives in one place, the lock model of ``_lib.lua`` (``count_lock_failure``,
``lock_state``; see ``authgw.challenges.locks``): each wrong code adds one to the customer's
consecutive failures, the threshold locks the customer (permanently, or for a while in the
temporary and mixed modes), a right code on a challenge resets the count, and ``unlock`` (the
bank's reset procedure) clears any lock.
"""

from __future__ import annotations

import json
from typing import Any

from authgw.challenges import models
from authgw.challenges.domain import Domain, Now, rfc3339
from authgw.challenges.locks import lock_of, policy_arg, with_open
from authgw.challenges.outcomes import RETRIES, expect_ok, pairs, status_of
from authgw.challenges.phones import PhoneError, registrable
from authgw.challenges.totp import qr_svg
from authgw.errors import ApiError, InvalidPhone, StoreUnavailable
from authgw.keys import CustomerKeys


def render(record: dict[str, str], now_ms: int | None = None) -> dict[str, Any]:
    lock = lock_of(record, now_ms)
    if record.get("totp"):
        totp = "active"
    elif record.get("totp_pending"):
        totp = "pending"
    else:
        totp = "none"
    return {
        "customer_id": record["customer_id"],
        "phones": json.loads(record.get("phones") or "[]"),
        "totp": totp,
        "locked": lock is not None,
        # A temporary lock past its time has ended, and its end resets the failures.
        "failed_attempts": int(record.get("failed") or 0) if lock or record.get("locked") != "1" else 0,
        "lock": lock,
        "phones_added_at": {
            phone: rfc3339(int(ms)) for phone, ms in json.loads(record.get("phones_added") or "{}").items()
        },
    }


# Event fields that hold a list: the stream keeps them as JSON text, the API shows arrays.
LIST_FIELDS = frozenset({"added", "removed"})
# customer.limits_changed's limits, shown as integers.
LIMIT_VALUES = frozenset({"previous", "value"})


def render_event(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    event: dict[str, Any] = {
        "at": fields.get("at"),
        "type": fields.get("type"),
        "customer_id": fields.get("customer_id"),
    }
    for name, value in fields.items():
        if name not in event:
            if name == "amount" or (fields.get("type") == "customer.limits_changed" and name in LIMIT_VALUES):
                event[name] = int(value)
            elif name in LIST_FIELDS:
                event[name] = json.loads(value)
            else:
                event[name] = value
    if event["type"] in ("customer.locked", "customer.unlocked"):
        event.setdefault("by", None)
    if event["type"] == "customer.locked":
        event.setdefault("until", None)
    event["id"] = entry_id
    return event


class Customers:
    def __init__(self, domain: Domain) -> None:
        self.d = domain
        self.keys = domain.store.keys

    def _keys(self, customer_id: str) -> CustomerKeys:
        return self.keys.for_customer(customer_id)

    def _context(self, customer_id: str) -> str:
        """Associated data binding a sealed secret to its customer."""
        return f"totp:{customer_id}"

    def put(self, customer_id: str, body: Any, client: str) -> tuple[dict[str, Any], bool]:
        """Register or update (``client`` is the author named in the event); returns the customer
        and whether it was created."""
        if not isinstance(customer_id, str) or not models.CUSTOMER_ID_RE.fullmatch(customer_id):
            raise ApiError(
                "validation_error",
                errors=[{"field": "customer_id", "message": "must be 1-64 of A-Z a-z 0-9 . _ -"}],
            )
        request = models.parse(models.CustomerPut, body)
        phones: list[str] = []
        problems = []
        for i, raw in enumerate(request.phones):
            try:
                e164 = registrable(raw, request.region, self.d.settings.allow_voip)
            except PhoneError as exc:
                problems.append({"field": f"phones[{i}]", "message": f"{raw!r} {exc}"})
                continue
            if e164 not in phones:
                phones.append(e164)
        if problems:
            raise InvalidPhone(problems)

        keys = self._keys(customer_id)
        store = self.d.store
        now = self.d.now()
        # The phone index is a hint for the webhooks: added before the customer changes and
        # pruned after, so a crash in between leaves an extra hint (harmless), never a gap.
        with store.boundary():
            pipe = store.client.pipeline(transaction=False)
            for phone in phones:
                pipe.sadd(self.keys.phone_index(phone), customer_id)
            pipe.execute()
        payload = expect_ok(
            store.run(
                "put_customer",
                [keys.customer, keys.events],
                [customer_id, json.dumps(phones), request.region, now.iso, self.d.maxlen, client],
            )
        )
        created, previous = payload[0] == 1, json.loads(payload[1])
        self._drop_hints(customer_id, [p for p in previous if p not in phones])
        return render(pairs(payload[2:]), now.ms), created

    def _drop_hints(self, customer_id: str, phones: list[str]) -> None:
        if not phones:
            return
        with self.d.store.boundary():
            pipe = self.d.store.client.pipeline(transaction=False)
            for phone in phones:
                pipe.srem(self.keys.phone_index(phone), customer_id)
            pipe.execute()

    def get(self, customer_id: str) -> dict[str, Any]:
        record = self.d.store.read_command("hgetall", self._keys(customer_id).customer)
        if not record:
            raise ApiError("customer_not_found")
        # A plain read (no write, so no WAIT): a temporary lock past its time shows as ended;
        # the next transition that looks records its end (lock_state).
        return render(record, self.d.now().ms)

    def delete(self, customer_id: str, client: str) -> None:
        keys = self._keys(customer_id)
        store = self.d.store
        for _ in range(RETRIES):
            with store.boundary():
                open_ids = store.client.zrange(keys.open, 0, -1)
            now = self.d.now()
            result = store.run(
                "delete_customer",
                [keys.customer, keys.open, keys.events, keys.lines, *(keys.challenge(i) for i in open_ids)],
                [now.ms, now.iso, self.d.maxlen, self.d.retention_ms, client, *open_ids],
            )
            if status_of(result) != "retry":
                phones = json.loads(expect_ok(result)[0])
                self._drop_hints(customer_id, phones)
                return
        raise StoreUnavailable("the customer's challenges kept changing")

    def enrol_totp(self, customer_id: str, client: str) -> dict[str, str]:
        secret = self.d.totp.new_secret()
        sealed = self.d.box.seal(secret, self._context(customer_id))
        keys = self._keys(customer_id)
        expect_ok(
            self.d.store.run(
                "totp_enrol", [keys.customer, keys.events], [sealed, self.d.now().iso, self.d.maxlen, client]
            )
        )
        uri = self.d.totp.uri(secret, customer_id)
        return {"secret": secret, "otpauth_uri": uri, "qr_svg": qr_svg(uri)}

    def confirm_totp(self, customer_id: str, body: Any, client: str) -> dict[str, Any]:
        code = models.parse(models.CodeBody, body).code
        keys = self._keys(customer_id)
        for _ in range(RETRIES):
            _, sealed, now = self._secret(keys, "totp_pending")  # and the store's now
            steps = self._steps(sealed, customer_id, code, now.seconds)
            result = self.d.store.run(
                "totp_confirm",
                [keys.customer, keys.events],
                [now.iso, self.d.maxlen, policy_arg(self.d.settings), sealed, steps, client],
            )
            if status_of(result) != "stale":
                return render(pairs(expect_ok(result)))
        raise StoreUnavailable("the TOTP enrolment kept changing")

    def _secret(self, keys: CustomerKeys, which: str) -> tuple[str, str, Now]:
        """The customer id and the ``which`` TOTP ciphertext ('' for none), with the store's now
        (``TIME``) to compute codes at: one read, with any held rate-limit counters."""
        customer_id, sealed, now_ms = expect_ok(self.d.store.read("totp_secret", [keys.customer], [which]))
        return customer_id, sealed, Now(int(now_ms))

    def _steps(self, sealed: str, customer_id: str, code: str, now: float) -> str:
        """The matching steps as the scripts take them; none when there is no secret."""
        if not sealed:
            return ""
        try:
            secret = self.d.box.open(sealed, self._context(customer_id))
        except ValueError as exc:
            # A secret no configured key opens: fail closed, loudly.
            raise StoreUnavailable("a TOTP secret cannot be decrypted") from exc
        return ",".join(str(s) for s in self.d.totp.matching_steps(secret, code, now))

    def remove_totp(self, customer_id: str, client: str) -> None:
        keys = self._keys(customer_id)
        expect_ok(
            self.d.store.run(
                "totp_remove", [keys.customer, keys.events], [self.d.now().iso, self.d.maxlen, client]
            )
        )

    def unlock(self, customer_id: str, client: str) -> dict[str, Any]:
        keys = self._keys(customer_id)
        result = self.d.store.run(
            "unlock", [keys.customer, keys.events], [self.d.now().iso, self.d.maxlen, client]
        )
        return render(pairs(expect_ok(result)))

    def lock(self, customer_id: str, client: str, note: str) -> dict[str, Any]:
        """An operator's lock (reason ``operator``, ``by`` the client): cancels every open
        challenge of the customer in the same step."""
        keys = self._keys(customer_id)

        def run(now: Any, ids: list[str]) -> Any:
            return self.d.store.run(
                "lock_customer",
                [keys.customer, keys.open, keys.events, keys.lines, *(keys.challenge(i) for i in ids)],
                [now.ms, self.d.maxlen, self.d.retention_ms, client, note, *ids],
            )

        return render(pairs(expect_ok(with_open(self.d, keys, run))))

    def events(self, customer_id: str, limit: int) -> list[dict[str, Any]]:
        keys = self._keys(customer_id)
        store = self.d.store
        now = self.d.now()
        with store.boundary():
            pipe = store.client.pipeline(transaction=False)
            pipe.exists(keys.customer)
            pipe.zrangebyscore(keys.open, "-inf", now.ms)
            pipe.xrevrange(keys.events, count=limit)
            exists, due, entries = pipe.execute()
        if not exists:
            raise ApiError("customer_not_found")
        if due:
            # Challenges whose time is up but that nobody touched since: settle them so the
            # trail shows their expiry, then read it again.
            expect_ok(
                store.run(
                    "expire_due",
                    [keys.open, keys.events, keys.lines, *(keys.challenge(i) for i in due)],
                    [now.ms, self.d.maxlen, *due],
                )
            )
            with store.boundary():
                entries = store.client.xrevrange(keys.events, count=limit)
        return [render_event(entry_id, fields) for entry_id, fields in entries]
