"""The console overview's counts, kept in the store so every gateway host sees the same.

After each transition script the store's observers see its name and answer (as the metrics
do); the outcomes below are counted by one small script (``console_count``) into a hash per
minute (kept two hours) and a hash per day in Japan's time (kept two days). The overview then
reads 60 minute hashes and one day hash in one pipeline: bounded, whatever the traffic. A
count is a separate, non-durable step after its transition: a process dying in between loses
that one count, never a transition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from authgw.errors import StoreUnavailable
from authgw.store import Store

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
DAY_MS = 86_400_000
JST_MS = 9 * 3_600_000  # the bank's day: Japan has no daylight saving time
MINUTES_KEPT_MS = 2 * 3_600_000
DAYS_KEPT_MS = 2 * DAY_MS
SCRIPT = "console_count"


def outcome(name: str, result: Any) -> tuple[str, str]:
    """(the minute's field, the day's field) a script's answer counts in; '' for none."""
    if not isinstance(result, list) or not result or not isinstance(result[0], str):
        return "", ""
    status = result[0]
    locked = len(result) > 2 and str(result[2]) == "1"
    if (name, status) in (("verify_totp", "ok"), ("answer_call", "verified"), ("confirm_call", "verified")):
        return "verified", ""
    if name in ("verify_totp", "confirm_call") and status == "invalid_code":
        return "failed", "locks" if locked else ""
    if name == "confirm_call" and status == "denied":
        return "", "fraud_locked" if locked else "fraud"
    if (name, status) in (("lock_customer", "ok"), ("self_lock", "locked")):
        return "", "locks"
    return "", ""


def day_of(ms: int) -> str:
    return str((ms + JST_MS) // DAY_MS)


def count(store: Store, name: str, result: Any, now_ms: int) -> None:
    minute_field, day_field = outcome(name, result)
    if not (minute_field or day_field):
        return
    keys = [
        store.keys.console_stats(f"m:{now_ms // MINUTE_MS}"),
        store.keys.console_stats(f"d:{day_of(now_ms)}"),
    ]
    try:
        store.run(SCRIPT, keys, [minute_field, day_field, MINUTES_KEPT_MS, DAYS_KEPT_MS], durable=False)
    except StoreUnavailable:
        log.warning("console overview count lost (store unavailable)")


def install(store: Store, now_ms: Callable[[], int]) -> None:
    """Count every transition's outcome for the overview (``store.observers``)."""

    def observe(name: str, result: Any) -> None:
        if name != SCRIPT:
            count(store, name, result, now_ms())

    store.observers.append(observe)


def overview(store: Store, now_ms: int) -> dict[str, int]:
    """The last hour's verifications and failures, today's fraud reports and locks."""
    minute = now_ms // MINUTE_MS
    keys = [store.keys.console_stats(f"m:{m}") for m in range(minute - 59, minute + 1)]
    day = store.keys.console_stats(f"d:{day_of(now_ms)}")
    with store.boundary():
        pipe = store.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, "verified", "failed")
        pipe.hmget(day, "fraud", "fraud_locked", "locks")
        answers = pipe.execute()
    total = {"verified": 0, "failed": 0}
    for verified, failed in answers[:-1]:
        total["verified"] += int(verified or 0)
        total["failed"] += int(failed or 0)
    fraud, fraud_locked, locks = (int(v or 0) for v in answers[-1])
    return {**total, "fraud_reports": fraud + fraud_locked, "locks": locks + fraud_locked}
