"""Limits per customer and kind: per transaction and daily (API.md "Limits and step-up").

The limit rule lives in one place, ``_lib.lua`` (``limit_in_effect``, ``judge_limits``,
``used_today``): the creation script judges a new challenge's amount and books it in the same
atomic step, so no two racing creations can together pass a limit. A challenge's amount counts
against the day it was created on while it is open and not past its expiry, and for the rest
of that day once consumed; a challenge that ends failed, denied, cancelled or expired stops
counting, an untouched expiry included (the book is read against the open set, whose scores
are the expiries: no sweeper).

The day is the calendar day in ``AUTHGW_TIMEZONE`` of the store's clock: this module hands the
scripts the local days around now, from zoneinfo, and the script picks the one its ``TIME``
falls in, so the host's zone and clock decide nothing.

The scripts' KEYS and ARGV are built in ``authgw.scripts`` (``read_limits``, ``put_limits``,
``create_challenge_call``); the arguments of limits they take are made here (``create_args``,
``defaults_arg``, ``day_windows``, ``policy_arg``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from authgw import scripts
from authgw.challenges import models
from authgw.challenges.domain import Domain
from authgw.errors import StoreUnavailable, ValidationFailed
from authgw.settings import Settings

KINDS = ("transfer", "payeasy")
FIELDS = ("per_transaction", "daily")


def defaults_arg(settings: Settings) -> str:
    """The scripts' ``limit_defaults`` argument."""
    return ",".join(
        str(v)
        for v in (
            settings.limit_transfer_per_transaction,
            settings.limit_transfer_daily,
            settings.limit_payeasy_per_transaction,
            settings.limit_payeasy_daily,
        )
    )


def day_windows(timezone: str, now_ms: int) -> str:
    """The scripts' ``day_of`` argument: the local days from yesterday to tomorrow around
    ``now_ms`` (an estimate of the store's clock), as '<start ms>|<date>,...,<end ms>'."""
    zone = ZoneInfo(timezone)
    today = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(zone).date()
    parts = []
    for offset in (-1, 0, 1, 2):
        day = today + timedelta(days=offset)
        start = datetime(day.year, day.month, day.day, tzinfo=zone)
        start_ms = int(start.timestamp()) * 1000
        parts.append(f"{start_ms}|{day.isoformat()}" if offset < 2 else str(start_ms))
    return ",".join(parts)


def policy_arg(settings: Settings) -> str:
    """The scripts' ``step_up`` argument."""
    return json.dumps(
        {
            "new_payee": list(settings.new_payee_methods),
            "step_up_amount": settings.step_up_amount,
            "step_up_methods": list(settings.step_up_methods),
            "dual_factor_amount": settings.dual_factor_amount,
        }
    )


def payee_digest(customer_id: str, kind: str, currency: str, payee: dict[str, Any]) -> str:
    """Who is paid, without the amount: the first 128 bits of SHA-256 of the canonical JSON."""
    canonical = models.canonical_json(
        {"currency": currency, "customer_id": customer_id, "kind": kind, "payee": payee}
    )
    return hashlib.sha256(canonical).hexdigest()[:32]


def create_args(settings: Settings, now_ms: int) -> list[Any]:
    """What ``create_challenge.lua`` needs of limits and step-up: ARGV[16] to ARGV[18]."""
    return [defaults_arg(settings), day_windows(settings.timezone, now_ms), policy_arg(settings)]


def render(fields: dict[str, str]) -> dict[str, Any]:
    """The contract's limits object from a ``read_limits``/``put_limits`` answer's fields."""
    out: dict[str, Any] = {}
    raises = []
    for kind in KINDS:
        out[kind] = {f: int(fields[f"{kind}:{f}"]) for f in FIELDS}
        out[kind]["used_today"] = int(fields[f"{kind}:used_today"])
        for f in FIELDS:
            waiting = fields.get(f"raise:{kind}:{f}")
            if waiting:
                value, at = waiting.split("|", 1)
                raises.append({"kind": kind, "field": f, "value": int(value), "effective_at": at})
    out["pending_raises"] = raises
    return out


def changes(body: Any) -> list[tuple[str, str, str]]:
    """A PUT body as the script's changes: (kind, field, value or 'null')."""
    request = models.parse(models.LimitsPut, body)
    flat: list[tuple[str, str, str]] = []
    for kind in KINDS:
        if kind not in request.model_fields_set:
            continue
        values = getattr(request, kind)
        if values is None:
            raise ValidationFailed([{"field": kind, "message": "must be an object"}])
        for f in FIELDS:
            if f in values.model_fields_set:
                value = getattr(values, f)
                flat.append((kind, f, "null" if value is None else str(value)))
    return flat


class Limits:
    def __init__(self, domain: Domain) -> None:
        self.d = domain
        self.keys = domain.store.keys

    def get(self, customer_id: str) -> dict[str, Any]:
        now = self.d.now()
        settings = self.d.settings
        answer = scripts.read_limits(
            self.d.store,
            self.keys.for_customer(customer_id),
            now=now,
            defaults=defaults_arg(settings),
            days=day_windows(settings.timezone, now.ms),
        )
        return render(_ok(answer))

    def put(self, customer_id: str, body: Any, client: str) -> dict[str, Any]:
        requested = changes(body)
        now = self.d.now()
        settings = self.d.settings
        answer = scripts.put_limits(
            self.d.store,
            self.keys.for_customer(customer_id),
            now=now,
            events_ms=self.d.maxlen,
            client=client,
            defaults=defaults_arg(settings),
            days=day_windows(settings.timezone, now.ms),
            raise_delay_ms=settings.limit_raise_delay_seconds * 1000,
            changes=requested,
        )
        return render(_ok(answer))


def _ok(answer: scripts.LimitsAnswer) -> dict[str, str]:
    if answer.status == "stale":
        # The store's clock is more than a day off this host's: fail closed.
        raise StoreUnavailable("the store's clock is far off this host's")
    return answer.fields
