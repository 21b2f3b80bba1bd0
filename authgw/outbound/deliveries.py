"""``Webhooks``: the one interface to webhook endpoints and their deliveries.

The deliverer calls ``endpoints``, ``fan_out``, ``claim_due``, ``record`` and ``next_due_ms``;
the ``/v1/webhooks`` API calls the rest. Every change is one ``webhook_*`` script on the ``{wh}``
slot (``authgw.scripts``), so an endpoint and its deliveries change together:

- a delivery is ``pending`` (due at ``next_ms``), then ``delivered`` or ``failed``;
- ``claim_due`` takes due ones and pushes each to now + lease, counting the attempt, so a
  crashed deliverer's claim comes back by itself; ``record`` is ignored unless its attempt is
  the one claimed last (a re-claimed delivery belongs to its new claimer);
- after try ``n`` fails the next is due ``schedule[n-1]`` seconds on (``Retry-After`` may make
  it later, never sooner, up to a day); after the last try it is ``failed``;
- finished deliveries are kept 7 days, then pruned by the scripts that finish others;
- ``DELETE`` removes the endpoint and every delivery at once; delivery ids are random, so a
  late ``record`` of a deleted endpoint's delivery never touches an endpoint made again under
  its name, which is never sent events older than itself.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from authgw import scripts
from authgw.challenges.domain import Domain, rfc3339
from authgw.challenges.outcomes import RETRIES
from authgw.errors import ApiError, StoreUnavailable, ValidationFailed
from authgw.outbound import endpoints as rules
from authgw.outbound.endpoints import Endpoint
from authgw.outbound.models import WebhookPut

log = logging.getLogger(__name__)

KEEP_FINISHED_MS = 7 * 86400 * 1000
MAX_ENDPOINTS = 100  # fan-out touches every matching endpoint's keys in one script
RETRY_AFTER_MAX_SECONDS = 86400  # an endpoint cannot park a delivery for longer than a day
ERROR_MAX = 200
# How old the list of endpoints a fan-out picks its candidates from may be (the script re-checks).
RECORDS_CACHE_SECONDS = 1.0
DELIVERY_ID = re.compile(r"dl_[a-z2-7]{26}")
TEST_EVENT = "webhook.test"

__all__ = ["Claimed", "Endpoint", "Webhooks"]


def _random_id(prefix: str) -> str:
    """``prefix`` + 130 random bits in base32."""
    return prefix + base64.b32encode(secrets.token_bytes(17)).decode("ascii").lower()[:26]


def new_delivery_id() -> str:
    return _random_id("dl_")


def ms_of(at: str) -> int:
    """An RFC 3339 time (``...Z`` or with an offset) in ms since 1970."""
    moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def body_of(event: dict[str, Any]) -> str:
    """The exact text posted for an event: compact JSON, stored so every try posts the same."""
    body = {"type": event["type"], "timestamp": event["at"], "data": event}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def render_endpoint(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """The endpoint object of the contract (never a secret)."""
    return {
        "name": name,
        "url": record["url"],
        "events": list(record["events"]),
        "enabled": bool(record["enabled"]),
        "created_at": record["created_at"],
    }


def render_delivery(raw: str) -> dict[str, Any]:
    """The delivery object of the contract."""
    rec = json.loads(raw)
    pending = rec["state"] == "pending"
    return {
        "id": rec["id"],
        "event_id": rec["event_id"],
        "type": rec["type"],
        "state": rec["state"],
        "attempts": int(rec["attempts"]),
        "last_status": int(rec["last_status"]) if rec["last_status"] else None,
        "last_error": rec["last_error"] or None,
        "next_attempt_at": rfc3339(int(rec["next_ms"])) if pending and rec["next_ms"] else None,
        "created_at": rfc3339(int(rec["created_ms"])),
    }


def _wants(record: dict[str, Any], event_type: str, event_ms: int) -> bool:
    """The hint of ``wh_wants`` (``_lib.lua``): the script judges again."""
    return (
        bool(record["enabled"])
        and int(record["created_ms"]) <= event_ms
        and rules.matches(tuple(record["events"]), event_type)
    )


def _retry_after_ms(retry_after: float | None) -> int:
    if retry_after is None or not math.isfinite(retry_after) or retry_after <= 0:
        return 0
    return int(min(retry_after, RETRY_AFTER_MAX_SECONDS) * 1000)


def _error_text(error: str | None) -> str:
    """A deliverer's error as kept and shown: printable, one line, short."""
    if not error:
        return ""
    return "".join(c if c.isprintable() else " " for c in error)[:ERROR_MAX]


@dataclass(frozen=True)
class Claimed:
    delivery_id: str
    event_id: str
    body: str  # the exact JSON text to POST
    attempt: int  # 1 for the first try
    # The endpoint as it was at the claim: post to its url, sign with its secrets (a deliverer's
    # list of endpoints may be older). Always set by ``claim_due``.
    endpoint: Endpoint | None = None


class Webhooks:
    def __init__(self, domain: Domain) -> None:
        self.d = domain
        self.store = domain.store
        self._records_cache: dict[str, str] = {}
        self._records_read = -1e9  # monotonic time of the last read of the endpoints

    @property
    def schedule(self) -> tuple[int, ...]:
        return self.d.settings.webhook_retry_schedule

    # -- the deliverer's interface ----------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        """Every endpoint, by name, with the secrets it signs with now."""
        now_ms = self.d.now().ms
        found = []
        for name, raw in sorted(self.store.webhook_endpoints().items()):
            endpoint = self._endpoint(name, raw, now_ms)
            if endpoint is not None:
                found.append(endpoint)
        return found

    def _endpoint(self, name: str, raw: str, now_ms: int) -> Endpoint | None:
        record = json.loads(raw)
        context = rules.secret_context(name, record["incarnation"])
        try:
            keys = [self.d.box.open(record["secret"], context)]
            if record["previous"] and now_ms < int(record["previous_until_ms"]):
                keys.append(self.d.box.open(record["previous"], context))
        except ValueError:
            # Sealed under a key no longer in AUTHGW_SECRET_KEY: nothing can be signed for it.
            log.error("webhook endpoint %s: its secret opens with no configured key", name)
            return None
        return Endpoint(
            name=name,
            url=record["url"],
            events=tuple(record["events"]),
            enabled=bool(record["enabled"]),
            created_at=record["created_at"],
            created_ms=int(record["created_ms"]),
            secrets=tuple(keys),
            incarnation=record["incarnation"],
        )

    def fan_out(self, event: dict[str, Any]) -> int:
        """One pending delivery, due now, for each enabled endpoint whose patterns match the
        event and that existed when it happened; none twice per (endpoint, event id). How many
        were made."""
        return self.fan_out_many([event])

    def fan_out_many(self, events: Sequence[dict[str, Any]]) -> int:
        """``fan_out`` for a batch of events, in one round trip. The candidates are taken from
        a list of the endpoints at most ``RECORDS_CACHE_SECONDS`` old: the script re-checks them
        and answers ``retry`` when the list missed one, and those events go again with a list
        read fresh."""
        created = 0
        pending = list(events)
        for attempt in range(RETRIES):
            records = self._records(fresh=attempt > 0)
            calls = [self._fan_out_call(event, records) for event in pending]
            outs = scripts.webhook_fan_out_many(self.store, calls)
            created += sum(len(out.created) for out in outs if out.status == "ok")
            pending = [event for event, out in zip(pending, outs, strict=True) if out.status != "ok"]
            if not pending:
                return created
        raise StoreUnavailable("the webhook endpoints kept changing during a fan-out")

    def _records(self, fresh: bool) -> dict[str, str]:
        now = time.monotonic()
        if fresh or now - self._records_read > RECORDS_CACHE_SECONDS:
            self._records_cache = self.store.webhook_endpoints()
            self._records_read = now
        return self._records_cache

    def _fan_out_call(self, event: dict[str, Any], records: dict[str, str]) -> scripts.Call:
        event_id, event_type = str(event["id"]), str(event["type"])
        event_ms = ms_of(str(event["at"]))
        return scripts.webhook_fan_out_call(
            self.store.keys,
            candidates=[
                (name, new_delivery_id())
                for name, raw in sorted(records.items())
                if _wants(json.loads(raw), event_type, event_ms)
            ],
            event_id=event_id,
            event_type=event_type,
            event_ms=event_ms,
            body=body_of(event),
        )

    def claim_due(self, name: str, limit: int, lease_seconds: float) -> list[Claimed]:
        """Take up to ``limit`` deliveries due now, each pushed to now + lease, its attempt
        counted. None for a disabled or missing endpoint."""
        if limit < 1:
            return []
        claims = scripts.webhook_claim(
            self.store,
            name=name,
            limit=limit,
            lease_ms=max(1, math.ceil(lease_seconds * 1000)),
            tries=len(self.schedule) + 1,
            keep_ms=KEEP_FINISHED_MS,
        )
        if claims is None or not claims.claims:
            return []
        endpoint = self._endpoint(name, claims.endpoint, self.d.now().ms)
        return [Claimed(c.delivery_id, c.event_id, c.body, c.attempt, endpoint) for c in claims.claims]

    def record(
        self,
        name: str,
        delivery_id: str,
        attempt: int,
        *,
        ok: bool,
        status: int | None,
        error: str | None,
        retry_after: float | None,
    ) -> str:
        """How the try went: ``delivered``, ``retry`` (due again later), ``failed`` (no try
        left) or ``ignored`` (not the delivery's current claim, or gone)."""
        return scripts.webhook_record(
            self.store,
            name=name,
            delivery_id=delivery_id,
            attempt=attempt,
            ok=ok,
            status=status,
            error=_error_text(error),
            retry_after_ms=_retry_after_ms(retry_after),
            schedule=self.schedule,
            keep_ms=KEEP_FINISHED_MS,
        )

    def next_due_ms(self, name: str) -> int | None:
        """The earliest pending due time; None when nothing is pending, or the endpoint is
        disabled or gone."""
        try:
            read = scripts.webhook_read(self.store, name=name)
        except ApiError as exc:
            if exc.code == "webhook_not_found":
                return None
            raise
        if not json.loads(read.record)["enabled"]:
            return None
        return read.next_due_ms

    # -- the API's ------------------------------------------------------------------------

    @property
    def audit_ms(self) -> int:
        """How long an operator's action stays on the audit stream: the events retention."""
        return self.d.maxlen

    def put(self, name: str, body: WebhookPut, by: str) -> tuple[dict[str, Any], str | None]:
        """Create (with a new secret, returned this once) or update an endpoint, audited
        under ``by`` (an operator's client name), like every change below."""
        secret, incarnation = rules.new_secret(), rules.new_incarnation()
        out = scripts.webhook_put(
            self.store,
            name=name,
            url=body.url,
            events=body.events,
            enabled=body.enabled,
            sealed=self.d.box.seal(secret, rules.secret_context(name, incarnation)),
            incarnation=incarnation,
            max_endpoints=MAX_ENDPOINTS,
            by=by,
            audit_ms=self.audit_ms,
        )
        if out.status == "too_many":
            raise ValidationFailed(
                [{"field": "name", "message": f"at most {MAX_ENDPOINTS} endpoints may exist; delete one"}]
            )
        endpoint = render_endpoint(name, json.loads(out.record))
        return endpoint, secret if out.status == "created" else None

    def listed(self) -> list[dict[str, Any]]:
        records = self.store.webhook_endpoints()
        listed = [render_endpoint(name, json.loads(raw)) for name, raw in records.items()]
        return sorted(listed, key=lambda e: (e["created_at"], e["name"]))

    def get(self, name: str) -> dict[str, Any]:
        """The endpoint with ``lag_seconds``: the age of its oldest pending delivery's event."""
        read = scripts.webhook_read(self.store, name=name)
        endpoint = render_endpoint(name, json.loads(read.record))
        oldest = read.oldest_pending_event_ms
        endpoint["lag_seconds"] = 0.0 if oldest is None else max(0, read.now_ms - oldest) / 1000
        return endpoint

    def delete(self, name: str, by: str) -> None:
        scripts.webhook_delete(self.store, name=name, by=by, audit_ms=self.audit_ms)

    def rotate(self, name: str, by: str) -> str:
        """A new secret (returned this once); the old one signs on for 24 hours."""
        for _ in range(RETRIES):
            incarnation = json.loads(scripts.webhook_read(self.store, name=name).record)["incarnation"]
            secret = rules.new_secret()
            out = scripts.webhook_rotate(
                self.store,
                name=name,
                incarnation=incarnation,
                sealed=self.d.box.seal(secret, rules.secret_context(name, incarnation)),
                grace_ms=rules.ROTATION_GRACE_SECONDS * 1000,
                by=by,
                audit_ms=self.audit_ms,
            )
            if out != "stale":
                return secret
        raise StoreUnavailable("the webhook endpoint kept being made again during a rotation")

    def deliveries(self, name: str, state: str | None, limit: int) -> list[dict[str, Any]]:
        return [
            render_delivery(raw)
            for raw in scripts.webhook_deliveries(self.store, name=name, state=state, limit=limit)
        ]

    def retry(self, name: str, delivery_id: str, by: str) -> dict[str, Any]:
        if not DELIVERY_ID.fullmatch(delivery_id):
            # The endpoint's 404 first, as for a well-formed id.
            scripts.webhook_read(self.store, name=name)
            raise ApiError("delivery_not_found")
        record = scripts.webhook_retry(
            self.store, name=name, delivery_id=delivery_id, by=by, audit_ms=self.audit_ms
        )
        return render_delivery(record)

    def test(self, name: str, by: str) -> dict[str, Any]:
        """Queue a ``webhook.test`` event for the endpoint, whatever its patterns."""
        now = self.d.now()
        event = {"id": _random_id("ev_test_"), "at": now.iso, "type": TEST_EVENT, "webhook": name}
        record = scripts.webhook_test(
            self.store,
            name=name,
            event_id=event["id"],
            event_type=TEST_EVENT,
            event_ms=now.ms,
            body=body_of(event),
            delivery_id=new_delivery_id(),
            by=by,
            audit_ms=self.audit_ms,
        )
        return render_delivery(record)

    # -- the console's --------------------------------------------------------------------

    def listed_with_lag(self) -> list[dict[str, Any]]:
        """Every endpoint (in ``listed`` order) with its ``lag_seconds``, all read from the store
        (the same on every gateway host); one deleted in between is left out."""
        found = []
        for endpoint in self.listed():
            try:
                found.append(self.get(endpoint["name"]))
            except ApiError as exc:
                if exc.code != "webhook_not_found":
                    raise
        return found

    def audit(self, limit: int) -> list[dict[str, str]]:
        """The newest ``limit`` operator actions on the endpoints, newest first: each with
        ``at``, ``by``, ``action``, ``webhook`` and what the action names (``delivery_id``,
        ``event_id``, ``event_type``, ``url``, ``events``, ``enabled``) where it has them."""
        return [dict(fields) for _id, fields in self.store.webhook_audit(limit)]

    def delivery(self, name: str, delivery_id: str) -> dict[str, Any] | None:
        """One delivery object of endpoint ``name``, or None when there is no such delivery."""
        if not DELIVERY_ID.fullmatch(delivery_id):
            return None
        raw = self.store.webhook_delivery(name, delivery_id)
        return None if raw is None else render_delivery(raw)
