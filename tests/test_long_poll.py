"""Long-poll: ``GET /v1/challenges/{id}?wait=N`` (API.md Additions, "Events: ids, paging,
long-poll"). The wait runs on the test's clock: the app's sleep moves it."""

from __future__ import annotations

from typing import Any

import pytest

from authgw.app import create_app
from tests.helpers.api import Api, assert_problem, new_challenge, register


class Waits:
    """The app's sleep: moves the clock, records each pause, and may act at a given pause."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.pauses: list[float] = []
        self.at: dict[int, Any] = {}

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.clock.advance(seconds)
        action = self.at.get(len(self.pauses))
        if action:
            action()


@pytest.fixture
def waits(clock):
    return Waits(clock)


@pytest.fixture
def app(store, clock, settings, waits):
    return create_app({**settings, "redis_client": store, "clock": clock, "sleep": waits})


@pytest.fixture
def reads(app, monkeypatch):
    """Every store call the app makes (reads, scripts, commands), counted once each (a read
    that runs its script through ``run`` is one call)."""
    store = app.extensions["authgw"].store
    calls: list[str] = []
    depth = [0]
    for name in ("read", "read_command", "run", "run_and_read", "run_many", "time_ms"):
        original = getattr(store, name)

        def counted(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            if depth[0] == 0:
                calls.append(_name)
            depth[0] += 1
            try:
                return _original(*args, **kwargs)
            finally:
                depth[0] -= 1

        monkeypatch.setattr(store, name, counted)
    return calls


@pytest.fixture
def api(app):
    return Api(app.test_client())


def test_a_challenge_still_pending_is_answered_after_the_wait_with_one_read_per_5_seconds(
    api, clock, waits, reads
):
    register(api)
    cid = new_challenge(api, methods=["callback"])["id"]
    reads.clear()
    start = clock.now
    rv = api.get(f"/v1/challenges/{cid}?wait=30")
    assert rv.status_code == 200
    assert rv.get_json()["status"] == "pending"
    assert clock.now - start == pytest.approx(30)
    assert all(p <= 5 for p in waits.pauses)
    # The read that answers, plus at most one per 5 seconds of waiting.
    assert len(reads) <= 1 + 30 // 5


def test_a_short_wait_reads_twice(api, clock, waits, reads):
    register(api)
    cid = new_challenge(api, methods=["callback"])["id"]
    reads.clear()
    start = clock.now
    assert api.get(f"/v1/challenges/{cid}?wait=1").get_json()["status"] == "pending"
    assert clock.now - start == pytest.approx(1)
    assert len(reads) == 2


def test_the_wait_ends_at_the_first_read_after_the_transition(api, app, clock, waits, reads):
    register(api)
    cid = new_challenge(api, methods=["callback"])["id"]
    gateway = app.extensions["authgw"]
    # Another request cancels it during the second pause.
    waits.at[2] = lambda: gateway.challenges.cancel("corebank", cid)
    start = clock.now
    rv = api.get(f"/v1/challenges/{cid}?wait=30")
    assert rv.get_json()["status"] == "cancelled"
    assert len(waits.pauses) == 2
    assert clock.now - start <= 10


def test_a_challenge_no_longer_pending_is_answered_at_once(api, clock, waits, reads):
    register(api)
    cid = new_challenge(api, methods=["callback"])["id"]
    assert api.post(f"/v1/challenges/{cid}/cancel").status_code == 200
    reads.clear()
    rv = api.get(f"/v1/challenges/{cid}?wait=30")
    assert rv.get_json()["status"] == "cancelled"
    assert waits.pauses == []
    assert len(reads) == 1


def test_a_challenge_that_expires_during_the_wait_is_answered_expired(api, clock, waits):
    register(api)
    cid = new_challenge(api, methods=["callback"], ttl_seconds=60)["id"]
    clock.advance(50)
    rv = api.get(f"/v1/challenges/{cid}?wait=30")
    assert rv.get_json()["status"] == "expired"
    assert sum(waits.pauses) < 30


def test_without_wait_nothing_waits(api, waits):
    register(api)
    cid = new_challenge(api, methods=["callback"])["id"]
    assert api.get(f"/v1/challenges/{cid}").get_json()["status"] == "pending"
    assert waits.pauses == []


@pytest.mark.parametrize("bad", ["0", "31", "-1", "1.5", "abc", "", " 5", "５", "100000000000000000000"])
def test_a_bad_wait_is_a_validation_error(api, waits, bad):
    register(api)
    cid = new_challenge(api, methods=["callback"])["id"]
    body = assert_problem(
        api.get(f"/v1/challenges/{cid}", query_string={"wait": bad}), 422, "validation_error"
    )
    assert [e["field"] for e in body["errors"]] == ["wait"]
    assert waits.pauses == []


def test_waiting_on_an_unknown_or_foreign_challenge_is_not_found_at_once(app, api, waits):
    register(api)
    cid = new_challenge(api, methods=["callback"])["id"]
    assert_problem(api.get("/v1/challenges/ch_nope?wait=5"), 404, "challenge_not_found")
    from tests.helpers.settings import OTHER_KEY

    settings_roles_off = Api(app.test_client(), OTHER_KEY)  # roles off: ops sees only its own
    assert_problem(settings_roles_off.get(f"/v1/challenges/{cid}?wait=5"), 404, "challenge_not_found")
    assert waits.pauses == []
