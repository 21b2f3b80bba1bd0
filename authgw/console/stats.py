"""The console overview's counts, kept in the store so every gateway host sees the same.

The store's observers see each transition script's name and answer (as the metrics do); the
outcomes of ``outcome`` are counted in this process and added to the store in one pipeline
(``console_count``, one run per count) at most every ``FLUSH_SECONDS``, by a background thread,
so no request pays a round trip for them. The store keeps a hash per minute (two hours) and a
hash per day in Japan's time (two days). The overview adds this process's unsent counts, then
reads 60 minute hashes and one day hash in one pipeline: bounded, whatever the traffic.

What this gives up: another host's counts show up to ``FLUSH_SECONDS`` late, and a process
that dies loses the counts it had not sent (never a transition: they are counted after it).

What is pending and locked *now* is not counted here but read from the buckets' indexes,
which the transition scripts keep in the same step as the change (``take_bucket`` in
``_lib.lua``): ``ZCOUNT now +inf`` of each bucket's pending and locked zsets, 2,048 counts in
one pipeline, exact whatever host made the change and never late.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from authgw import scripts
from authgw.identifiers import BUCKETS
from authgw.store import Store

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
DAY_MS = 86_400_000
JST_MS = 9 * 3_600_000  # the bank's day: Japan has no daylight saving time
MINUTES_KEPT_MS = 2 * 3_600_000
DAYS_KEPT_MS = 2 * DAY_MS
FLUSH_SECONDS = 5.0
SCRIPT = "console_count"

VERIFIED = {("verify_totp", "ok"), ("answer_call", "verified"), ("confirm_call", "verified")}
LOCKED = {("lock_customer", "ok"), ("self_lock", "locked")}


def outcome(name: str, result: Any) -> tuple[str, str]:
    """(the minute's field, the day's field) a script's answer counts in; '' for none."""
    if not isinstance(result, list) or not result or not isinstance(result[0], str):
        return "", ""
    status = result[0]
    locked = len(result) > 2 and str(result[2]) == "1"
    if (name, status) in VERIFIED:
        return "verified", ""
    if name in ("verify_totp", "confirm_call") and status == "invalid_code":
        return "failed", "locks" if locked else ""
    if name == "confirm_call" and status == "denied":
        return "", "fraud_locked" if locked else "fraud"
    if (name, status) in LOCKED:
        return "", "locks"
    return "", ""


def day_of(ms: int) -> str:
    return str((ms + JST_MS) // DAY_MS)


class Stats:
    """This process's unsent counts and their flushing."""

    def __init__(self, store: Store, now_ms: Callable[[], int], background: bool = True) -> None:
        """``background=False`` (tests that move time by hand): counts are sent only by
        ``flush``, which the overview calls, so nothing runs behind a test's back."""
        self.store = store
        self.now_ms = now_ms
        self.background = background
        self._pending: Counter[tuple[str, str, int]] = Counter()
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        store.observers.append(self.observe)

    def observe(self, name: str, result: Any) -> None:
        if name == SCRIPT:
            return
        minute_field, day_field = outcome(name, result)
        if not (minute_field or day_field):
            return
        now = self.now_ms()
        with self._lock:
            if minute_field:
                key = self.store.keys.console_stats(f"m:{now // MINUTE_MS}")
                self._pending[(key, minute_field, MINUTES_KEPT_MS)] += 1
            if day_field:
                key = self.store.keys.console_stats(f"d:{day_of(now)}")
                self._pending[(key, day_field, DAYS_KEPT_MS)] += 1
            if self.background and self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_soon, name="console-stats", daemon=True)
                self._flusher.start()

    def _flush_soon(self) -> None:
        threading.Event().wait(FLUSH_SECONDS)
        with self._lock:
            self._flusher = None
        try:
            self.flush()
        except Exception:  # a background thread must not die noisily; the counts wait
            log.warning("console overview counts not sent (store unavailable); kept for the next try")

    def flush(self) -> None:
        """Send this process's counts in one pipeline (on failure they are kept and raise)."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return
        try:
            scripts.console_count_many(
                self.store, [(key, field, n, kept) for (key, field, kept), n in pending.items()]
            )
        except Exception:
            with self._lock:
                self._pending.update(pending)
            raise

    def overview(self) -> dict[str, int]:
        """Challenges pending and customers locked now; the last hour's verifications and wrong
        codes; today's fraud reports and locks."""
        self.flush()
        now = self.now_ms()
        names = self.store.keys
        indexes = [names.pending_index(b) for b in range(BUCKETS)] + [
            names.locked_index(b) for b in range(BUCKETS)
        ]
        now_counts = self.store.count_from(indexes, now)
        pending, locked = now_counts[:BUCKETS], now_counts[BUCKETS:]
        minute = now // MINUTE_MS
        keys = [self.store.keys.console_stats(f"m:{m}") for m in range(minute - 59, minute + 1)]
        day = self.store.keys.console_stats(f"d:{day_of(now)}")
        answers = self.store.fields_of_many(
            [*((key, ("verified", "failed")) for key in keys), (day, ("fraud", "fraud_locked", "locks"))]
        )
        verified = sum(int(v or 0) for v, _ in answers[:-1])
        failed = sum(int(f or 0) for _, f in answers[:-1])
        fraud, fraud_locked, locks = (int(v or 0) for v in answers[-1])
        return {
            "pending": sum(pending),
            "locked": sum(locked),
            "verified": verified,
            "failed": failed,
            "fraud_reports": fraud + fraud_locked,
            "locks": locks + fraud_locked,
        }

    def locked_customers(self, limit: int) -> list[dict[str, str]]:
        """Up to ``limit`` customers locked now, newest lock first: id, reason, since, by, until."""
        now = self.now_ms()
        keys = self.store.keys
        members = self.store.members_from([keys.locked_index(b) for b in range(BUCKETS)], now, limit)
        fields = ("customer_id", "locked", "locked_at", "lock_reason", "lock_by", "lock_until")
        records = self.store.fields_of_many([(keys.for_customer(c).customer, fields) for c, _ in members])
        locks = [
            {name: value or "" for name, value in zip(fields, record, strict=True)}
            for record in records
            if record[1] == "1"  # the index is a hint; the customer's record says
        ]
        locks.sort(key=lambda lock: lock["locked_at"], reverse=True)
        return locks[:limit]
