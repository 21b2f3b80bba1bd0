"""The deliverer: events from the outboxes to the bank's endpoints (API.md, "Webhooks to the bank").

Every event a transition writes is also in its bucket's outbox (``add_event`` in ``_lib.lua``),
written by the same script, so nothing that happened is lost however a process dies. From
there, two stages, each at least once:

1. **Fan-out.** Every outbox is read through one consumer group, ``deliverers``, shared by
   every deliverer process (any number may run). An entry is fanned out to the endpoints
   whose patterns match (``Webhooks.fan_out``: one pending delivery per endpoint, idempotent
   per endpoint and event), and only then acknowledged and deleted. Entries a dead deliverer
   had read and not acknowledged are claimed by the others after ``CLAIM_IDLE_SECONDS``.
2. **Delivery.** Each endpoint has a dispatcher of its own and at most ``PER_ENDPOINT``
   requests in flight: it claims due deliveries (a lease, so a dead deliverer's claims come
   back by themselves), signs each with ``standardwebhooks`` under every secret the endpoint
   signs with (two for a day after a rotation), posts it with httpx (10 s, no redirects), and
   records the answer (``Webhooks.record`` keeps the retry schedule). A slow endpoint fills
   its own pool only; one whose last ``FAILING_AFTER`` attempts failed is tried one delivery
   at a time until one succeeds, so its retries cost the others little CPU.

It does not poll the outboxes: the script that writes an entry rings the bucket's doorbell
(sharded pub/sub on the bucket's slot), and the deliverer reads the outboxes that rang. A slow
sweep of every outbox (``SWEEP_SECONDS``) is the safety net for a ring lost in a reconnection.
"""

from __future__ import annotations

import email.utils
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from authgw.challenges.customers import render_event
from authgw.errors import AuthgwError
from authgw.outbound.deliveries import Claimed, Webhooks
from authgw.outbound.endpoints import Endpoint
from authgw.outbound.metrics import DeliveryMetrics
from authgw.store import Store

log = logging.getLogger(__name__)

GROUP = "deliverers"
PER_ENDPOINT = 4  # requests in flight to one endpoint at most
TIMEOUT_SECONDS = 10.0  # a delivery is done when the endpoint answers 2xx within this
ANSWER_READ_MAX = 64 * 1024  # bytes of an endpoint's answer read at most
LEASE_SECONDS = 15.0  # a claimed delivery comes back to the others after this (> the timeout)
CLAIM_IDLE_SECONDS = 30.0  # an outbox entry read but not acknowledged this long is claimed
SWEEP_SECONDS = 10.0  # every outbox is read (and stale entries claimed) at least this often
ENDPOINTS_SECONDS = 5.0  # the endpoint list (and their secrets) is read again this often
IDLE_SECONDS = 1.0  # an endpoint with nothing due looks again after at most this
READ_COUNT = 100  # outbox entries read per outbox per round
RETRY_AFTER_MAX_SECONDS = 86_400.0  # a Retry-After beyond a day is taken as a day
# An endpoint whose last attempts all failed is tried one delivery at a time, at most this
# often, until one succeeds: its retries then cost the deliverer (and the other endpoints) little.
FAILING_AFTER = 5
FAILING_PACE_SECONDS = 0.2


@dataclass
class _Dispatch:
    """One endpoint's dispatcher: its pool, its HTTP client and its wake-up."""

    endpoint: Endpoint
    pool: ThreadPoolExecutor
    http: httpx.Client
    wake: threading.Event = field(default_factory=threading.Event)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    gone: bool = False
    thread: threading.Thread | None = None
    failures_in_row: int = 0  # attempts that failed since the last success

    @property
    def failing(self) -> bool:
        return self.failures_in_row >= FAILING_AFTER


def signatures(endpoint: Endpoint, event_id: str, at: datetime, body: str) -> str:
    """The ``webhook-signature`` header: ``v1,<sig>`` under each of the endpoint's secrets."""
    return " ".join(Webhook(secret).sign(event_id, at, body) for secret in endpoint.secrets)


def retry_after(response: httpx.Response, now: float) -> float | None:
    """The seconds an endpoint asked us to wait (``Retry-After``: seconds or an HTTP date)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min(when.timestamp() - now, RETRY_AFTER_MAX_SECONDS))


class Deliverer:
    """One deliverer process's work: ``run`` until ``stop`` is set."""

    def __init__(
        self,
        store: Store,
        webhooks: Webhooks,
        *,
        name: str | None = None,
        metrics: DeliveryMetrics | None = None,
        transport: httpx.BaseTransport | None = None,
        sweep_seconds: float = SWEEP_SECONDS,
        claim_idle_seconds: float = CLAIM_IDLE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.webhooks = webhooks
        self.name = name or f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.metrics = metrics or DeliveryMetrics()
        self.transport = transport
        self.sweep_seconds = sweep_seconds
        self.claim_idle_ms = int(claim_idle_seconds * 1000)
        self.clock = clock
        self.outboxes = store.keys.outboxes()
        self.stop = threading.Event()
        self._dispatchers: dict[str, _Dispatch] = {}
        self._endpoints_read = 0.0

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Fan out and deliver until ``stop`` is set; store trouble is waited out, never fatal."""
        webhook_doorbell = self.store.keys.webhook_doorbell()
        doorbell = self.store.subscribe([*self.outboxes, webhook_doorbell])
        groups_made = False
        last_sweep = 0.0
        try:
            while not self.stop.is_set():
                try:
                    if not groups_made:
                        self.store.outbox_groups(self.outboxes, GROUP)
                        groups_made = True
                    self._refresh_endpoints()
                    now = time.monotonic()
                    if now - last_sweep >= self.sweep_seconds:
                        last_sweep = now
                        self.sweep()
                    rings = doorbell.wait(min(1.0, self.sweep_seconds))
                    outboxes = sorted({channel for channel, _ in rings if channel != webhook_doorbell})
                    if outboxes:
                        self.fan_out(outboxes)
                    names = [n for c, m in rings if c == webhook_doorbell for n in m.split(",") if n]
                    if names:
                        self._ring(sorted(set(names)))
                except AuthgwError as exc:  # StoreUnavailable and its kin: wait, then again
                    log.warning("deliverer: %s; trying again", type(exc).__name__)
                    groups_made = False
                    self.stop.wait(1.0)
        finally:
            doorbell.close()
            self._close_dispatchers()

    def sweep(self) -> int:
        """Read every outbox, claiming what a dead deliverer left, and fan it all out."""
        claimed = self.store.outbox_claim_stale(
            self.outboxes, GROUP, self.name, self.claim_idle_ms, READ_COUNT
        )
        done = self._fan_out_entries(claimed)
        return done + self.fan_out(self.outboxes)

    def fan_out(self, outboxes: list[str]) -> int:
        """Read new entries of these outboxes until they are drained; returns how many."""
        done = 0
        while not self.stop.is_set():
            entries = self.store.outbox_read(outboxes, GROUP, self.name, READ_COUNT)
            if not entries:
                return done
            done += self._fan_out_entries(entries)
            outboxes = sorted({outbox for outbox, _, _ in entries})  # only those that had more
        return done

    def _fan_out_entries(self, entries: list[tuple[str, str, dict[str, str]]]) -> int:
        """Fan a batch of outbox entries out (one round trip), then acknowledge them."""
        if not entries:
            return 0
        events = []
        acked: dict[str, list[str]] = {}
        for outbox, entry_id, entry in entries:
            fields = dict(entry)
            trail_id = fields.pop("trail_id", "")
            if trail_id:
                events.append(render_event(trail_id, fields))
            acked.setdefault(outbox, []).append(entry_id)
        if events and self.webhooks.fan_out_many(events):
            for dispatch in list(self._dispatchers.values()):
                dispatch.wake.set()  # ours at once; the webhook doorbell tells the others
        self.metrics.fanned_out.inc(len(events))
        self.store.outbox_ack(acked, GROUP)
        return len(entries)

    def _ring(self, names: list[str]) -> None:
        """Endpoints that have something due now (the webhook doorbell, rung by the fan-out and
        a manual retry, by any deliverer): wake their dispatchers, and meet a new endpoint."""
        if any(name not in self._dispatchers for name in names):
            self._refresh_endpoints(force=True)
        for name in names:
            dispatch = self._dispatchers.get(name)
            if dispatch is not None:
                dispatch.wake.set()

    # -- endpoints --------------------------------------------------------------------------

    def _refresh_endpoints(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._endpoints_read < ENDPOINTS_SECONDS:
            return
        self._endpoints_read = now
        current = {e.name: e for e in self.webhooks.endpoints() if e.enabled}
        for name in [n for n in self._dispatchers if n not in current]:
            gone = self._dispatchers.pop(name)  # deleted or disabled: its thread winds down
            gone.gone = True
            gone.wake.set()
        for name, endpoint in current.items():
            running = self._dispatchers.get(name)
            if running is None:
                self._dispatchers[name] = self._start_dispatcher(endpoint)
            else:
                running.endpoint = endpoint  # new secrets, new patterns
        self.metrics.observe_lag(self.webhooks, list(current))

    def _start_dispatcher(self, endpoint: Endpoint) -> _Dispatch:
        http = httpx.Client(
            timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=PER_ENDPOINT, max_keepalive_connections=PER_ENDPOINT),
            transport=self.transport,
            trust_env=False,
        )
        pool = ThreadPoolExecutor(PER_ENDPOINT, thread_name_prefix=f"webhook-{endpoint.name}")
        dispatch = _Dispatch(endpoint, pool, http)
        dispatch.thread = threading.Thread(
            target=self._dispatch, args=(dispatch,), name=f"dispatch-{endpoint.name}", daemon=True
        )
        dispatch.thread.start()
        return dispatch

    def _close_dispatchers(self) -> None:
        running = list(self._dispatchers.values())
        self._dispatchers.clear()
        for dispatch in running:
            dispatch.gone = True
            dispatch.wake.set()
        for dispatch in running:
            if dispatch.thread is not None:
                dispatch.thread.join()

    def _dispatch(self, dispatch: _Dispatch) -> None:
        """Claim what is due for one endpoint while its pool has room; sleep until the next due
        time, a wake-up (a fan-out, a finished request) or ``IDLE_SECONDS``."""
        name = dispatch.endpoint.name
        while not (self.stop.is_set() or dispatch.gone):
            dispatch.wake.clear()
            if dispatch.failing:
                # One at a time, paced: a failing endpoint's retries must not crowd out others.
                if self.stop.wait(FAILING_PACE_SECONDS):
                    break
                room = 1 - dispatch.in_flight
            else:
                room = PER_ENDPOINT - dispatch.in_flight
            claimed: list[Claimed] = []
            try:
                if room > 0:
                    claimed = self.webhooks.claim_due(name, room, LEASE_SECONDS)
                    wait = IDLE_SECONDS
                    if not claimed:
                        due = self.webhooks.next_due_ms(name)
                        if due is not None:
                            wait = max(0.01, min(IDLE_SECONDS, due / 1000 - self.clock()))
                else:
                    wait = IDLE_SECONDS
            except AuthgwError as exc:
                log.warning("deliverer: %s while claiming for %s", type(exc).__name__, name)
                wait = IDLE_SECONDS
            for one in claimed:
                with dispatch.lock:
                    dispatch.in_flight += 1
                dispatch.pool.submit(self._deliver, dispatch, one)
            if not claimed:
                dispatch.wake.wait(wait)
        # Stopped, or the endpoint is gone: let what is in flight finish (each request is
        # bounded by its timeout), then let go of the pool and the connections.
        dispatch.pool.shutdown(wait=True)
        dispatch.http.close()

    # -- one delivery -----------------------------------------------------------------------

    def _deliver(self, dispatch: _Dispatch, claimed: Claimed) -> None:
        try:
            # The endpoint as the claim read it: the url and secrets of that moment.
            ok = self.deliver(claimed.endpoint or dispatch.endpoint, claimed, dispatch.http)
            dispatch.failures_in_row = 0 if ok else dispatch.failures_in_row + 1
        except Exception:  # a bug must not kill the pool's thread; the lease brings it back
            log.exception("deliverer: delivery %s failed unexpectedly", claimed.delivery_id)
        finally:
            with dispatch.lock:
                dispatch.in_flight -= 1
            dispatch.wake.set()

    def deliver(self, endpoint: Endpoint, claimed: Claimed, http: httpx.Client) -> bool:
        """Post one claimed delivery and record the answer; True when it was delivered."""
        now = self.clock()
        at = datetime.fromtimestamp(now, tz=UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "authgw-webhooks",
            "webhook-id": claimed.event_id,
            "webhook-timestamp": str(int(now)),
            "webhook-signature": signatures(endpoint, claimed.event_id, at, claimed.body),
        }
        status: int | None = None
        error: str | None = None
        wait: float | None = None
        started = time.monotonic()
        try:
            body = claimed.body.encode("utf-8")
            with http.stream("POST", endpoint.url, content=body, headers=headers) as response:
                # httpx's time-out bounds each step (connect, each read), not the whole: an
                # answer that dribbles in is judged by when it was complete. The answer's body
                # is read only this far (an endpoint's long page is of no use here).
                for _chunk in response.iter_bytes():
                    if response.num_bytes_downloaded > ANSWER_READ_MAX:
                        break
            status = response.status_code
            ok = 200 <= status < 300
            if not ok:
                error = "redirect not followed" if 300 <= status < 400 else f"HTTP {status}"
                wait = retry_after(response, self.clock())
            elif time.monotonic() - started > TIMEOUT_SECONDS:
                ok, error = False, f"HTTP {status}, but after more than {TIMEOUT_SECONDS:g} s"
        except httpx.TimeoutException:
            ok, error = False, f"no answer within {TIMEOUT_SECONDS:g} s"
        except httpx.HTTPError as exc:
            ok, error = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        took = time.monotonic() - started
        self.webhooks.record(
            endpoint.name,
            claimed.delivery_id,
            claimed.attempt,
            ok=ok,
            status=status,
            error=error,
            retry_after=wait,
        )
        self.metrics.attempt(endpoint.name, ok, took)  # counted once recorded
        if ok:
            self.metrics.delivered(endpoint.name, claimed.body, now)
        return ok


def run_forever(deliverer: Deliverer, parent: int | None = None) -> None:
    """Run ``deliverer`` in this thread; with ``parent`` (the pid of the ``authgw serve`` that
    started this process), stop as soon as that process is gone, so a serve killed outright
    leaves no orphan behind, even one killed while this process was still starting."""
    if parent is not None:

        def watch() -> None:
            while os.getppid() == parent:
                if deliverer.stop.wait(1.0):
                    return
            deliverer.stop.set()

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    deliverer.run()


def build(settings: Any, **options: Any) -> Deliverer:
    """A deliverer on the store ``settings`` name (``authgw deliver``, and beside ``serve``)."""
    from authgw.challenges.domain import Domain
    from authgw.store import connect

    client = connect(settings.redis_url, settings.redis_timeout, max(8, PER_ENDPOINT * 4))
    store = Store(
        client, settings.key_prefix, settings.redis_wait_replicas, int(settings.redis_wait_timeout * 1000)
    )
    domain = Domain.build(settings, store, time.time, None)
    return Deliverer(store, Webhooks(domain), **options)
