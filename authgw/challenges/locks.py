"""Locks: the customer's lock as the contract shows it, and the calls that lock.

The lock model itself (reasons, temporary locks ending lazily at ``until``, the lockout modes,
the cancellation of open challenges) lives in one place, ``lua/_lib.lua`` (``lock_state``,
``lock_customer``, ``count_lock_failure``, ``clear_lock``, ``cancel_open``); every script that
creates, verifies, answers a call or consumes judges the lock through it. This module builds
the policy argument those scripts take, renders the lock, and runs the locks that cancel a
customer's open challenges (operator, fraud report, self-lock), whose scripts need the open
set read first (``with_open``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from authgw.challenges.domain import Domain, Now
from authgw.challenges.outcomes import RETRIES
from authgw.errors import StoreUnavailable
from authgw.keys import CustomerKeys
from authgw.settings import Settings

LOCK_REASONS = ("failures", "fraud_report", "self_lock", "operator")


def policy_arg(settings: Settings) -> str:
    """The lockout policy as the scripts take it (``lockout_policy`` in ``_lib.lua``)."""
    return ",".join(
        str(v)
        for v in (
            settings.lockout_threshold,
            settings.lockout_mode,
            settings.lockout_wait_seconds,
            settings.lockout_wait_max_seconds,
            settings.lockout_max_temporary,
        )
    )


def lock_of(record: dict[str, str], now_ms: int | None = None) -> dict[str, Any] | None:
    """The customer's ``lock`` member: None, or ``{"reason", "at", "until", "by"}``.

    A temporary lock whose ``until`` has passed is shown ended even before a script has
    recorded its end (the next transition does)."""
    if record.get("locked") != "1":
        return None
    until_ms = record.get("lock_until_ms")
    if until_ms and now_ms is not None and now_ms >= int(until_ms):
        return None
    return {
        "reason": record.get("lock_reason") or "failures",
        "at": record.get("locked_at"),
        "until": record.get("lock_until"),
        "by": record.get("lock_by"),
    }


T = TypeVar("T")


def with_open(domain: Domain, keys: CustomerKeys, run: Callable[[Now, list[str]], T | None]) -> T:
    """Run a lock that cancels the customer's open challenges: read the open set, then call
    ``run(now, ids)``, again while it answers None (its script said ``retry``: a challenge was
    created or ended in between)."""
    for _ in range(RETRIES):
        result = run(domain.now(), domain.store.open_challenges(keys))
        if result is not None:
            return result
    raise StoreUnavailable("the customer's challenges kept changing")
