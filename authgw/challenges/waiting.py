"""Long-polling requests, woken by the doorbell (``GET /v1/challenges/{id}?wait=N``).

Every script that writes an event rings its bucket's doorbell: ``SPUBLISH`` on the channel
named like the bucket's outbox, with the event's challenge id (``add_event`` in ``_lib.lua``).
A process has one ``Waiting``: one listener (a thread; a greenlet under the gevent workers,
whose monkey-patching makes ``threading`` cooperative) holds one sharded subscription to the
buckets that have waiters, and wakes exactly the waiters of the challenge id that rang. A
waiting request holds an event, not a thread of its own, and no store connection.

- No wake-up is missed: a waiter is registered, and its bucket's subscription confirmed by the
  server, before the read that decides to wait; a transition after that read rings a channel
  already listened to.
- A doorbell is a hint: a waiter re-reads its challenge every ``INTERVAL_SECONDS`` anyway, so a
  ring lost in a reconnection or a failover delays the answer, never loses it.
- The listener owns its pub/sub connection (a connection is not shared between threads):
  waiters only note what they need, and the listener applies the changes between its waits
  on the subscription, every ``LISTEN_TICK_SECONDS`` at the latest. It exits once no bucket has
  had a waiter for ``LINGER_SECONDS``, and the next waiter starts another.

``Store`` is this module's only door to Redis (``Store.subscribe``); the reads are the caller's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from authgw.store import Store, Subscription

log = logging.getLogger(__name__)

# A pending challenge is read again this often while a request waits on it: the contract
# allows a waiting request at most one store read per 5 seconds besides the read that answers
# it (API.md Additions, "Events: ids, paging, long-poll"). The doorbell answers sooner.
INTERVAL_SECONDS = 5.0
# A ring that finds the challenge still pending (a failed attempt, a call received) was one
# read; a second such read comes no sooner than this after it, however fast the rings come.
RING_GAP_SECONDS = 0.25
# A pending challenge is read again just after its expires_at, so that it is answered expired
# then (expiry is settled by the first read past that time, see ``lifecycle``).
EXPIRY_MARGIN_SECONDS = 0.1
# How long the listener waits on the subscription before it applies new waiters' buckets.
LISTEN_TICK_SECONDS = 0.05
# How long a new waiter waits for the server to confirm its bucket's subscription before it
# reads anyway (the store is slow or down: the re-reads still answer it).
SUBSCRIBE_WAIT_SECONDS = 1.0
# A bucket whose last waiter has gone stays subscribed this long: a client polling in a loop
# finds it subscribed again. The listener ends once nothing is left subscribed.
LINGER_SECONDS = 2.0
# After a store error the listener tries again this much later.
RETRY_SECONDS = 1.0


def wait_for(event: threading.Event, timeout: float) -> bool:
    """``event.wait(timeout)``, but never blocks past ``timeout`` under gevent: True if the
    event was or became set.

    gevent's ``Event.wait`` on an event that is already set, while its wake-up of the earlier
    waiters is still queued, parks the caller on that wake-up with no timer of its own; if
    the earlier waiters all leave before it runs (their timeouts fire in the same turn of the
    loop), gevent cancels the wake-up and the caller is never resumed (gevent 26.9; measured:
    a burst of long-polls left dozens of requests unanswered for good). A set event is
    therefore never waited on: no switch can happen between the check and the wait, so a wait
    only ever starts on an event that is not set, which takes the path with a timer."""
    if event.is_set():
        return True
    return event.wait(timeout)


class Bell:
    """One waiting request's doorbell: rung by the listener when its challenge's bucket rings
    with its challenge id."""

    def __init__(self, channel: str, challenge_id: str, sleep: Callable[[float], None] | None) -> None:
        self.channel = channel
        self.challenge_id = challenge_id
        self._sleep = sleep
        self._rung = threading.Event()

    def ring(self) -> None:
        self._rung.set()

    def wait(self, timeout: float) -> bool:
        """Wait until rung or ``timeout`` seconds have passed; True if it rang (since the last
        wait). With a stand-in ``sleep`` (tests that move their clock), that sleep is the
        wait, and a ring is seen after it."""
        if timeout > 0:
            if self._sleep is not None:
                self._sleep(timeout)
            else:
                wait_for(self._rung, timeout)
        rung = self._rung.is_set()
        self._rung.clear()
        return rung


class Waiting:
    """The waiters of one process and the listener that wakes them."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float],
        store_offset: Callable[[], float],
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        """``clock``: the host's clock (a stand-in in tests); ``store_offset``: the store's
        clock minus the host's, in seconds; ``sleep`` (tests only): what a bell's wait is,
        instead of waiting on its event (tests move their clock with it)."""
        self.store = store
        self.clock = clock
        self.store_offset = store_offset
        self.sleep = sleep
        self._lock = threading.Lock()
        self._bells: dict[str, set[Bell]] = {}  # challenge id -> its waiters' bells
        self._count: dict[str, int] = {}  # channel -> waiters on it
        self._idle: dict[str, float] = {}  # channel without waiters -> since when (monotonic)
        self._ready: dict[str, threading.Event] = {}  # channel -> set once confirmed
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()  # the current listener's: set to end it
        # What the listener has done, for tests and metrics.
        self.heard = 0  # rings received
        self.woken = 0  # bells rung
        # Called by the listener only (one greenlet or thread, never each request): with
        # ("waiting", n), the requests waiting after a read found their challenge pending, at
        # each of its ticks, and ("woken", n) as it rings n bells.
        self.observers: list[Callable[[str, int], None]] = []
        self._waiting = 0  # requests past their first read, waiting

    # -- the long-poll ----------------------------------------------------------------------

    def until_settled(
        self, channel: str, challenge_id: str, seconds: float, read: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """``read()`` (the challenge) until it is no longer pending or ``seconds`` have passed:
        at once, at each ring of its challenge id, every ``INTERVAL_SECONDS`` and just after
        its ``expires_at``; the answer is the last read. A read that fails (the store is down)
        raises: the request fails closed, as any other."""
        deadline = self.clock() + seconds
        with self.watch(channel, challenge_id, seconds) as bell:
            challenge = read()
            if challenge["status"] != "pending" or self.clock() >= deadline:
                return challenge
            self._count_waiting(1)
            try:
                return self._until_settled(bell, challenge, deadline, read)
            finally:
                self._count_waiting(-1)

    def _until_settled(
        self, bell: Bell, challenge: dict[str, Any], deadline: float, read: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        last = self.clock()
        expiry = self._expiry(challenge)
        after_ring = False
        while challenge["status"] == "pending":
            now = self.clock()
            if now >= deadline:
                break
            due = last + INTERVAL_SECONDS
            if expiry is not None and expiry > last:
                due = min(due, expiry)
            rung = bell.wait(min(due, deadline) - now)
            if rung and after_ring:
                # Rings that keep finding it pending: read no more often than the gap.
                bell.wait(min(last + RING_GAP_SECONDS, deadline) - self.clock())
            challenge = read()
            last = self.clock()
            after_ring = rung
        return challenge

    def _count_waiting(self, n: int) -> None:
        with self._lock:
            self._waiting += n

    def _tell(self, what: str, n: int) -> None:
        for observe in self.observers:
            observe(what, n)

    def _expiry(self, challenge: dict[str, Any]) -> float | None:
        """When, on the host's clock, the challenge's expiry is settled by a read."""
        try:
            expires = datetime.fromisoformat(challenge["expires_at"]).timestamp()
        except (KeyError, TypeError, ValueError):
            return None
        return expires - self.store_offset() + EXPIRY_MARGIN_SECONDS

    # -- waiters ----------------------------------------------------------------------------

    @contextmanager
    def watch(self, channel: str, challenge_id: str, seconds: float) -> Iterator[Bell]:
        """A bell for ``challenge_id``, whose bucket's doorbell rings on ``channel``: when this
        returns, the server has confirmed the subscription (or did not within
        ``SUBSCRIBE_WAIT_SECONDS``, nor ``seconds``), so every ring from then on reaches it."""
        bell = Bell(channel, challenge_id, self.sleep)
        ready = self._add(bell)
        try:
            if not wait_for(ready, min(SUBSCRIBE_WAIT_SECONDS, max(seconds, 0.0))):
                log.info("long-poll: the doorbell's subscription is not confirmed; reading anyway")
            yield bell
        finally:
            self._drop(bell)

    def _add(self, bell: Bell) -> threading.Event:
        with self._lock:
            self._bells.setdefault(bell.challenge_id, set()).add(bell)
            self._count[bell.channel] = self._count.get(bell.channel, 0) + 1
            self._idle.pop(bell.channel, None)
            ready = self._ready.setdefault(bell.channel, threading.Event())
            if self._listener is None:
                self._stop = threading.Event()
                self._listener = threading.Thread(
                    target=self._listen, args=(self._stop,), name="authgw-long-poll", daemon=True
                )
                self._listener.start()
            return ready

    def _drop(self, bell: Bell) -> None:
        with self._lock:
            bells = self._bells.get(bell.challenge_id)
            if bells is not None:
                bells.discard(bell)
                if not bells:
                    del self._bells[bell.challenge_id]
            left = self._count.get(bell.channel, 0) - 1
            if left > 0:
                self._count[bell.channel] = left
            else:
                self._count.pop(bell.channel, None)
                self._idle[bell.channel] = time.monotonic()

    def waiters(self) -> int:
        """How many requests wait now."""
        with self._lock:
            return sum(self._count.values())

    def channels(self) -> set[str]:
        """The channels the listener is to be subscribed to now (with waiters, or lingering)."""
        with self._lock:
            return set(self._count) | set(self._idle)

    def subscribed(self, channel: str) -> bool:
        """Whether the server has confirmed the listener's subscription to ``channel``."""
        with self._lock:
            ready = self._ready.get(channel)
            return ready is not None and ready.is_set()

    def listening(self) -> bool:
        with self._lock:
            return self._listener is not None

    def close(self) -> None:
        """End the listener (at its next tick); a later waiter starts another."""
        with self._lock:
            self._stop.set()
            self._listener = None
            for ready in self._ready.values():
                ready.clear()

    # -- the listener -------------------------------------------------------------------------

    def _listen(self, stop: threading.Event) -> None:
        subscription = self.store.subscribe([])
        try:
            while self._apply(subscription, stop):
                self._tell("waiting", self._waiting)
                rings = subscription.wait(LISTEN_TICK_SECONDS)
                self._deliver(subscription, rings, stop)
                if not subscription.open:
                    wait_for(stop, RETRY_SECONDS)  # the store is down; the re-reads go on
        except Exception:  # never seen; the next waiter starts a listener again
            log.exception("long-poll listener stopped")
            with self._lock:
                if not stop.is_set():
                    self._listener = None
        finally:
            self._tell("waiting", self._waiting)
            subscription.close()

    def _apply(self, subscription: Subscription, stop: threading.Event) -> bool:
        """Bring the subscription to the channels wanted now; False (and the listener is done)
        once none is wanted."""
        with self._lock:
            if stop.is_set():
                return False
            now = time.monotonic()
            for channel, since in list(self._idle.items()):
                if now - since >= LINGER_SECONDS:
                    del self._idle[channel]
                    self._ready.pop(channel, None)
            wanted = set(self._count) | set(self._idle)
            if not wanted:
                stop.set()
                self._listener = None
                return False
        have = set(subscription.channels)
        subscription.remove(sorted(have - wanted))
        subscription.add(sorted(wanted - have))
        return True

    def _deliver(
        self, subscription: Subscription, rings: list[tuple[str, str]], stop: threading.Event
    ) -> None:
        confirmed = subscription.confirmed
        with self._lock:
            if stop.is_set():
                return
            for channel, ready in self._ready.items():
                if channel in confirmed:
                    ready.set()
                else:
                    ready.clear()
            self.heard += len(rings)
            woken = 0
            for _channel, challenge_id in rings:
                for bell in self._bells.get(challenge_id, ()):
                    bell.ring()
                    woken += 1
            self.woken += woken
        if woken:
            self._tell("woken", woken)
