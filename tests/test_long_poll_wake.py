"""Long-poll woken by the doorbell, with real concurrency: a waiting request is answered by its
challenge's ring, not by the 5-second re-read (``authgw.challenges.waiting``).

The gateway waits in real time here (its host clock is the real one), while the store's clock
is the test's, so TOTP codes stay the test's to compute. Nothing is judged by wall-clock time:
each waiter's reads are counted, and the listener counts the rings it heard and the bells it
rang. The safety-net re-read is moved past the wait, so only a ring can answer before it ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from authgw.app import create_app
from authgw.challenges import waiting as waiting_module
from authgw.identifiers import bucket_of_tag, customer_tag
from tests.helpers.api import Api, enrol_totp, new_challenge, register, totp_code
from tests.helpers.polling import wait_until
from tests.helpers.stores import redis_binary
from tests.topology import start_server

WAIT = 30  # seconds each waiter asks for; none of these tests lets one run that long


@pytest.fixture
def live(store: Any, clock: Any, settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(waiting_module, "INTERVAL_SECONDS", 3600.0)  # the safety net: after WAIT
    app = create_app({**settings, "redis_client": store, "clock": clock, "host_clock": time.time})
    yield app
    app.extensions["authgw"].challenges.waiting.close()


class Reads:
    """The challenge reads (``read_challenge``) of each thread."""

    def __init__(self, app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        store = app.extensions["authgw"].store
        self.by_thread: dict[int, int] = {}
        self.first: list[Any] = []  # called in the reading thread after its first read
        original = store.read

        def read(name: str, keys: Any, args: Any) -> Any:
            answer = original(name, keys, args)
            if name == "read_challenge":
                me = threading.get_ident()
                self.by_thread[me] = self.by_thread.get(me, 0) + 1
                if self.by_thread[me] == 1:
                    for action in self.first:
                        action()
            return answer

        monkeypatch.setattr(store, "read", read)

    def of(self, waiter: Waiter) -> int:
        return self.by_thread.get(waiter.ident or 0, 0)


class Waiter(threading.Thread):
    """One ``GET /v1/challenges/{id}?wait=N`` in a thread of its own (the Flask test client)."""

    def __init__(self, app: Any, challenge_id: str) -> None:
        super().__init__(daemon=True)
        self.api = Api(app.test_client())
        self.challenge_id = challenge_id
        self.status_code: int | None = None
        self.answer: dict[str, Any] | None = None

    def run(self) -> None:
        rv = self.api.get(f"/v1/challenges/{self.challenge_id}?wait={WAIT}")
        self.status_code = rv.status_code
        self.answer = rv.get_json()

    def result(self) -> str:
        self.join(WAIT * 2)
        assert not self.is_alive(), "the waiter is still waiting"
        assert self.status_code == 200, self.answer
        assert self.answer is not None
        return str(self.answer["status"])


def waiting_of(app: Any) -> Any:
    return app.extensions["authgw"].challenges.waiting


def test_a_waiter_is_answered_by_the_ring_of_another_threads_verification(live, clock, monkeypatch):
    api = Api(live.test_client())
    register(api)
    secret = enrol_totp(api, clock)
    cid = new_challenge(api, methods=["totp"])["id"]
    reads = Reads(live, monkeypatch)
    bells = waiting_of(live)
    waiter = Waiter(live, cid)
    waiter.start()
    wait_until("the waiter's first read", lambda: reads.of(waiter) == 1)
    rv = api.post(f"/v1/challenges/{cid}/totp", {"code": totp_code(secret, clock())})
    assert rv.get_json()["status"] == "verified"
    assert waiter.result() == "verified"
    # Woken by its ring: the read that decided to wait, and the one that answers.
    assert reads.of(waiter) == 2
    assert bells.woken == 1


def test_a_transition_right_after_the_read_that_decides_to_wait_is_not_missed(live, monkeypatch):
    """The waiter is registered and its bucket subscribed before its first read: a transition
    between that read and the wait rings a channel already listened to."""
    api = Api(live.test_client())
    register(api)
    cid = new_challenge(api, methods=["callback"])["id"]
    reads = Reads(live, monkeypatch)
    gateway = live.extensions["authgw"]
    bells = waiting_of(live)
    seen: list[tuple[int, bool]] = []

    def cancel_in_another_thread() -> None:
        seen.append((bells.waiters(), bells.subscribed(gateway.store.keys.for_customer("cust-001").outbox)))
        other = threading.Thread(target=gateway.challenges.cancel, args=("corebank", cid))
        other.start()
        other.join()

    reads.first.append(cancel_in_another_thread)
    waiter = Waiter(live, cid)
    waiter.start()
    assert waiter.result() == "cancelled"
    assert seen == [(1, True)]  # registered and subscribed when it first read
    assert reads.of(waiter) == 2
    assert bells.woken == 1


def test_rings_of_other_challenges_of_the_bucket_wake_no_one(live, monkeypatch):
    api = Api(live.test_client())
    register(api)
    # Another customer of the same bucket: its challenges ring the same doorbell.
    bucket = bucket_of_tag(customer_tag("cust-001"))
    neighbour = next(
        f"cust-{n}" for n in range(2, 100_000) if bucket_of_tag(customer_tag(f"cust-{n}")) == bucket
    )
    register(api, neighbour)
    watched = new_challenge(api, methods=["callback"])["id"]
    sibling = new_challenge(api, methods=["callback"])["id"]
    neighbours = new_challenge(api, neighbour, methods=["callback"])["id"]
    reads = Reads(live, monkeypatch)
    bells = waiting_of(live)
    waiter = Waiter(live, watched)
    waiter.start()
    wait_until("the waiter's first read", lambda: reads.of(waiter) == 1)
    for other in (sibling, neighbours):
        assert api.post(f"/v1/challenges/{other}/cancel").status_code == 200
    wait_until("both rings heard by the listener", lambda: bells.heard == 2)
    assert bells.woken == 0
    assert waiter.is_alive()
    assert reads.of(waiter) == 1  # not even a read
    assert api.post(f"/v1/challenges/{watched}/cancel").status_code == 200
    assert waiter.result() == "cancelled"
    assert reads.of(waiter) == 2
    assert bells.woken == 1


def test_many_waiters_on_many_buckets_are_each_woken_once_and_the_listener_then_stops(live, monkeypatch):
    api = Api(live.test_client())
    customers = [f"cust-{n}" for n in range(12)]
    for customer in customers:
        register(api, customer)
    ids = [new_challenge(api, customer, methods=["callback"])["id"] for customer in customers]
    reads = Reads(live, monkeypatch)
    bells = waiting_of(live)
    waiters = [Waiter(live, cid) for cid in ids for _ in range(2)]  # two on each challenge
    for waiter in waiters:
        # One after the other: the test client's threads would otherwise all read at once,
        # more at a time than the Cluster client's pool holds.
        waiter.start()
        wait_until("the waiter's first read", lambda w=waiter: reads.of(w) == 1)
    assert bells.waiters() == len(waiters)
    assert len(bells.channels()) == len({bucket_of_tag(customer_tag(c)) for c in customers})
    for cid in ids:
        assert api.post(f"/v1/challenges/{cid}/cancel").status_code == 200
    assert [w.result() for w in waiters] == ["cancelled"] * len(waiters)
    assert [reads.of(w) for w in waiters] == [2] * len(waiters)
    assert bells.woken == len(waiters)
    assert bells.waiters() == 0
    # No waiter left: the buckets are let go (after a short linger) and the listener ends.
    wait_until("the listener gone", lambda: not bells.channels() and not bells.listening())


@pytest.mark.parametrize("store", ["fake"], indirect=True)
def test_a_wait_on_a_challenge_already_settled_answers_with_one_read(live, monkeypatch):
    api = Api(live.test_client())
    register(api)
    cid = new_challenge(api, methods=["callback"])["id"]
    assert api.post(f"/v1/challenges/{cid}/cancel").status_code == 200
    reads = Reads(live, monkeypatch)
    waiter = Waiter(live, cid)
    waiter.start()
    assert waiter.result() == "cancelled"
    assert reads.of(waiter) == 1


@pytest.mark.topology
def test_a_store_outage_during_the_wait_fails_closed_without_hanging(clock, settings, monkeypatch):
    """The store dies while a request waits: its next read fails closed (503), as any request
    does; the listener does not hold it."""
    server = start_server(redis_binary("the long-poll outage test"))
    try:
        monkeypatch.setattr(waiting_module, "INTERVAL_SECONDS", 0.5)  # the re-read meets the outage
        app = create_app({**settings, "redis_url": server.url, "clock": clock, "host_clock": time.time})
        api = Api(app.test_client())
        register(api)
        cid = new_challenge(api, methods=["callback"])["id"]
        reads = Reads(app, monkeypatch)
        waiter = Waiter(app, cid)
        waiter.start()
        wait_until("the waiter's first read", lambda: reads.of(waiter) == 1)
        server.nodes[0].kill()
        waiter.join(WAIT * 2)
        assert not waiter.is_alive()
        assert waiter.status_code == 503
        assert waiter.answer is not None and waiter.answer["code"] == "store_unavailable"
        app.extensions["authgw"].challenges.waiting.close()
        app.extensions["authgw"].store.close()
    finally:
        server.stop()
