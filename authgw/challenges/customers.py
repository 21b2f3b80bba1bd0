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

from authgw import scripts
from authgw.challenges import models
from authgw.challenges.codes import Codes, secret_context
from authgw.challenges.domain import Domain, Now, rfc3339
from authgw.challenges.locks import lock_of, policy_arg, with_open
from authgw.challenges.outcomes import RETRIES
from authgw.challenges.phones import registrable
from authgw.challenges.totp import qr_svg
from authgw.errors import ApiError, InvalidPhone, PhoneError, StoreUnavailable
from authgw.identifiers import event_id, trail_id_of
from authgw.keys import CustomerKeys
from authgw.store import FIRST_ID


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
    event["id"] = event_id(str(fields.get("customer_id", "")), entry_id)
    return event


class Customers:
    def __init__(self, domain: Domain) -> None:
        self.d = domain
        self.keys = domain.store.keys

    def _keys(self, customer_id: str) -> CustomerKeys:
        return self.keys.for_customer(customer_id)

    def put(self, customer_id: str, request: models.CustomerPut, client: str) -> tuple[dict[str, Any], bool]:
        """Register or update (``client`` is the author named in the event); returns the customer
        and whether it was created. The view has checked the id and parsed the body."""
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
        store.add_phone_hints(customer_id, phones)
        put = scripts.put_customer(
            store,
            keys,
            customer_id=customer_id,
            phones=phones,
            region=request.region,
            now=now,
            events_ms=self.d.maxlen,
            client=client,
        )
        store.drop_phone_hints(customer_id, [p for p in put.previous_phones if p not in phones])
        return render(put.customer, now.ms), put.created

    def get(self, customer_id: str) -> dict[str, Any]:
        record = self.d.store.customer_record(self._keys(customer_id))
        if not record:
            raise ApiError("customer_not_found")
        # A plain read (no write, so no WAIT): a temporary lock past its time shows as ended;
        # the next transition that looks records its end (lock_state).
        return render(record, self.d.now().ms)

    def delete(self, customer_id: str, client: str) -> None:
        keys = self._keys(customer_id)
        store = self.d.store
        for _ in range(RETRIES):
            deleted = scripts.delete_customer(
                store,
                keys,
                open_ids=store.open_challenges(keys),
                now=self.d.now(),
                events_ms=self.d.maxlen,
                retention_ms=self.d.retention_ms,
                client=client,
            )
            if deleted.status == "ok":
                store.drop_phone_hints(customer_id, deleted.phones)
                return
        raise StoreUnavailable("the customer's challenges kept changing")

    def enrol_totp(self, customer_id: str, client: str) -> dict[str, str]:
        secret = self.d.totp.new_secret()
        sealed = self.d.box.seal(secret, secret_context(customer_id))
        keys = self._keys(customer_id)
        scripts.totp_enrol(
            self.d.store, keys, sealed=sealed, now=self.d.now(), events_ms=self.d.maxlen, client=client
        )
        uri = self.d.totp.uri(secret, customer_id)
        return {"secret": secret, "otpauth_uri": uri, "qr_svg": qr_svg(uri)}

    def confirm_totp(self, customer_id: str, code: str, client: str) -> dict[str, Any]:
        keys = self._keys(customer_id)
        for _ in range(RETRIES):
            judging = Codes(self.d.store, self.d.box, self.d.totp).read(keys, "totp_pending", code)
            judged = scripts.totp_confirm(
                self.d.store,
                keys,
                now=judging.now,
                events_ms=self.d.maxlen,
                policy=policy_arg(self.d.settings),
                sealed=judging.sealed,
                steps=judging.steps,
                client=client,
            )
            if judged.status == "ok":
                return render(judged.record)
        raise StoreUnavailable("the TOTP enrolment kept changing")

    def remove_totp(self, customer_id: str, client: str) -> None:
        keys = self._keys(customer_id)
        scripts.totp_remove(self.d.store, keys, now=self.d.now(), events_ms=self.d.maxlen, client=client)

    def unlock(self, customer_id: str, client: str) -> dict[str, Any]:
        keys = self._keys(customer_id)
        return render(
            scripts.unlock(self.d.store, keys, now=self.d.now(), events_ms=self.d.maxlen, client=client)
        )

    def lock(self, customer_id: str, client: str, note: str) -> dict[str, Any]:
        """An operator's lock (reason ``operator``, ``by`` the client): cancels every open
        challenge of the customer in the same step."""
        keys = self._keys(customer_id)

        def run(now: Now, ids: list[str]) -> scripts.Locked | None:
            locked = scripts.lock_customer(
                self.d.store,
                keys,
                open_ids=ids,
                now=now,
                events_ms=self.d.maxlen,
                retention_ms=self.d.retention_ms,
                client=client,
                note=note,
            )
            return locked if locked.status == "ok" else None

        return render(with_open(self.d, keys, run).customer)

    def events(self, customer_id: str, limit: int, before: str | None = None) -> list[dict[str, Any]]:
        """The customer's events, newest first; with ``before`` (one of the customer's event
        ids, as each event carries in ``id``), only those older than it."""
        keys = self._keys(customer_id)
        if before is not None:
            before = trail_id_of(customer_id, before) or FIRST_ID
        store = self.d.store
        now = self.d.now()
        exists, due, entries = store.trail_and_due(keys, now.ms, limit, before)
        if not exists:
            raise ApiError("customer_not_found")
        if due:
            # Challenges whose time is up but that nobody touched since: settle them so the
            # trail shows their expiry, then read it again.
            scripts.expire_due(store, keys, due_ids=due, now=now, events_ms=self.d.maxlen)
            entries = store.trail(keys, limit, before)
        return [render_event(entry_id, fields) for entry_id, fields in entries]
