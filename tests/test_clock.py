"""One clock: gateway processes whose host clocks disagree agree on expiry and on TOTP codes.

Every test runs two or three gateway apps on one store, with host clocks set apart (a host
120 s fast, one 600 s slow). The first group moves time by hand: ``clock`` stands in for the
store's clock (``TIME``) and each host's clock is ``clock`` plus its skew. The second group
uses the store's real ``TIME`` and real host clocks set apart from it, so what they check is
what production runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import redis

from authgw.app import create_app
from authgw.challenges.domain import rfc3339
from tests.helpers.api import Api, assert_problem, enrol_totp, new_challenge, register, totp_code, wrong_code
from tests.helpers.settings import Clock, settings_for_tests

FAST, SLOW = 120.0, -600.0


def gateway(store: Any, host_clock: Callable[[], float], clock: Clock | None = None, **settings: Any) -> Api:
    """An app on ``store`` whose host clock is ``host_clock``; ``clock``, when given, stands in
    for the store's."""
    config: dict[str, Any] = {
        **settings_for_tests(**settings),
        "redis_client": store,
        "host_clock": host_clock,
    }
    if clock is not None:
        config["clock"] = clock
    return Api(create_app(config).test_client())


def hosts(store: Any, clock: Clock, *skews: float, **settings: Any) -> list[Api]:
    """One app per skew, each host's clock that far from the store's (``clock``)."""
    return [gateway(store, skewed(clock, skew), clock, **settings) for skew in skews]


def real_hosts(store: Any, *skews: float, **settings: Any) -> list[Api]:
    """One app per skew on the store's real clock, each host's clock that far from the system's."""
    return [gateway(store, skewed(time.time, skew), **settings) for skew in skews]


def skewed(clock: Callable[[], float], skew: float) -> Callable[[], float]:
    """``clock``, ``skew`` seconds off."""
    return lambda: clock() + skew


def verify(api: Api, challenge: dict[str, Any], code: str) -> Any:
    return api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": code})


def consume(api: Api, challenge: dict[str, Any]) -> Any:
    return api.post(
        f"/v1/challenges/{challenge['id']}/consume", {"transaction_digest": challenge["transaction_digest"]}
    )


def status(api: Api, challenge: dict[str, Any]) -> str:
    return api.get(f"/v1/challenges/{challenge['id']}").get_json()["status"]


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- time moved by hand: ``clock`` is the store's ---------------------------------------------


def test_a_challenge_is_dated_by_the_store_s_clock_whichever_host_creates_it(store, clock):
    fast, slow = hosts(store, clock, FAST, SLOW)
    register(fast)
    for api in (fast, slow):
        challenge = new_challenge(api, ttl_seconds=60)
        assert challenge["created_at"] == rfc3339(int(clock() * 1000))
        assert challenge["expires_at"] == rfc3339(int(clock() * 1000) + 60_000)
        again = api.get(f"/v1/challenges/{challenge['id']}").get_json()
        assert (again["created_at"], again["expires_at"]) == (
            challenge["created_at"],
            challenge["expires_at"],
        )
    events = slow.get("/v1/customers/cust-001/events").get_json()["events"]
    assert {e["at"] for e in events if e["type"] == "challenge.created"} == {rfc3339(int(clock() * 1000))}


def test_hosts_with_clocks_apart_agree_on_expiry(store, clock):
    true, fast, slow = hosts(store, clock, 0, FAST, SLOW)
    register(true)
    secret = enrol_totp(true, clock)
    first, second, pending = (new_challenge(true, ttl_seconds=60) for _ in range(3))
    assert verify(true, first, totp_code(secret, clock())).status_code == 200
    clock.advance(30)
    assert verify(true, second, totp_code(secret, clock())).status_code == 200

    clock.advance(29.999)  # 1 ms before expires_at on the store's clock
    # The fast host (its clock 2 minutes past expires_at) expires nothing early.
    assert status(fast, pending) == "pending"
    assert consume(fast, first).status_code == 200

    clock.advance(0.001)  # expires_at, on the store's clock
    # The slow host (its clock 9 minutes before expires_at) consumes and verifies nothing.
    assert_problem(consume(slow, second), 410, "challenge_expired")
    assert_problem(verify(slow, pending, totp_code(secret, clock())), 410, "challenge_expired")
    assert status(slow, second) == status(fast, pending) == "expired"


@pytest.mark.parametrize("skew", [FAST, SLOW])
def test_six_genuine_codes_from_a_skewed_host_never_lock_the_customer(store, clock, skew):
    true, host = hosts(store, clock, 0, skew)
    register(true)
    secret = enrol_totp(true, clock)
    for _ in range(6):  # the lockout threshold: six wrong codes would lock
        challenge = new_challenge(host)
        rv = verify(host, challenge, totp_code(secret, clock()))  # what the customer's phone shows
        assert rv.status_code == 200, rv.get_data(as_text=True)
        clock.advance(30)
    customer = host.get("/v1/customers/cust-001").get_json()
    assert customer["locked"] is False
    assert customer["failed_attempts"] == 0


@pytest.mark.parametrize("skew", [FAST, SLOW])
def test_a_skewed_host_confirms_an_enrolment_with_the_phone_s_code(store, clock, skew):
    (host,) = hosts(store, clock, skew)
    register(host)
    secret = host.post("/v1/customers/cust-001/totp").get_json()["secret"]
    rv = host.post("/v1/customers/cust-001/totp/confirm", {"code": totp_code(secret, clock())})
    assert rv.status_code == 200, rv.get_data(as_text=True)


def test_no_host_accepts_a_code_of_its_own_clock_when_the_store_s_disagrees(store, clock):
    true, fast, slow = hosts(store, clock, 0, FAST, SLOW)
    register(true)
    secret = enrol_totp(true, clock)
    for api, skew in ((fast, FAST), (slow, SLOW)):
        challenge = new_challenge(api)
        # The code of the host's own now: 4 steps ahead of the store's, or 20 behind.
        rv = verify(api, challenge, totp_code(secret, clock() + skew))
        assert_problem(rv, 422, "invalid_code")


# -- the store's real TIME, hosts set apart from it ------------------------------------------


def test_on_the_real_store_clock_creation_is_dated_by_the_store(store):
    fast, slow = real_hosts(store, FAST, SLOW)
    register(fast)
    for api in (fast, slow):
        before = time.time()
        challenge = new_challenge(api, ttl_seconds=120)
        created = seconds(challenge["created_at"])
        assert before - 1 <= created <= time.time() + 1
        assert seconds(challenge["expires_at"]) == pytest.approx(created + 120, abs=0.001)


def test_on_the_real_store_clock_a_fast_host_expires_nothing_early(store):
    true, fast = real_hosts(store, 0, FAST)
    register(true)
    challenge = new_challenge(true, ttl_seconds=60)
    assert status(fast, challenge) == "pending"  # the fast host's clock is past expires_at
    assert fast.post(f"/v1/challenges/{challenge['id']}/cancel").status_code == 200


def test_on_the_real_store_clock_a_slow_host_cannot_consume_an_expired_challenge(store):
    # Made on a store clock stood in 450 s back (the enrolment spends 30 s of it): the
    # challenge expired 2 minutes ago on the real one.
    past = Clock(time.time() - 450)
    (setup,) = hosts(store, past, 0)
    register(setup)
    secret = enrol_totp(setup, past)
    challenge = new_challenge(setup, ttl_seconds=300)
    assert verify(setup, challenge, totp_code(secret, past())).status_code == 200
    assert seconds(challenge["expires_at"]) < time.time() - 90

    (slow,) = real_hosts(store, SLOW)  # its clock: 8 minutes before expires_at
    assert_problem(consume(slow, challenge), 410, "challenge_expired")
    assert status(slow, challenge) == "expired"


def test_on_the_real_store_clock_a_fast_host_confirms_totp_with_the_phone_s_code(store):
    (fast,) = real_hosts(store, FAST)
    register(fast)
    secret = fast.post("/v1/customers/cust-001/totp").get_json()["secret"]
    rv = fast.post("/v1/customers/cust-001/totp/confirm", {"code": totp_code(secret, time.time())})
    assert rv.status_code == 200, rv.get_data(as_text=True)


def test_the_rate_limit_window_is_the_store_s(store):
    fast, slow = real_hosts(store, FAST, SLOW, rate_limit_customer=3, rate_limit_window_seconds=60)
    register(fast)  # 1
    assert slow.get("/v1/customers/cust-001").status_code == 200  # 2
    assert fast.get("/v1/customers/cust-001").status_code == 200  # 3
    for api in (slow, fast):  # one window for both hosts, however far apart their clocks
        rv = api.get("/v1/customers/cust-001")
        assert_problem(rv, 429, "rate_limited")
        assert 1 <= int(rv.headers["Retry-After"]) <= 60


class CountingConnection(redis.Connection):
    """Counts round trips: each write to the socket, a single command or a whole pipeline."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


@pytest.mark.real_redis
def test_on_the_real_store_clock_reading_the_time_costs_no_round_trip_per_request(redis_server, real_store):
    """The store's time travels in the scripts and in the read of the TOTP secret; only the
    process's offset measurement (once per 30 s) adds a ``TIME`` of its own."""
    pool = redis.ConnectionPool.from_url(
        redis_server.url, decode_responses=True, connection_class=CountingConnection
    )
    client = redis.Redis(connection_pool=pool)
    fast = gateway(client, lambda: time.time() + FAST, rate_limit_client=0, rate_limit_customer=0)

    def cost(action: Callable[[], Any]) -> int:
        before = CountingConnection.sent
        action()
        return CountingConnection.sent - before

    for customer_id in ("cust-001", "cust-002"):
        register(fast, customer_id)
    secrets = [fast.post(f"/v1/customers/{c}/totp").get_json()["secret"] for c in ("cust-001", "cust-002")]
    code = totp_code(secrets[0], time.time())
    assert fast.post("/v1/customers/cust-001/totp/confirm", {"code": code}).status_code == 200
    warm = new_challenge(fast, "cust-001")
    assert verify(fast, warm, wrong_code(secrets[0], time.time())).status_code == 422
    fast.get(f"/v1/challenges/{warm['id']}")
    consume(fast, warm)  # every script is loaded now (SCRIPT LOAD before its first use)

    challenge: dict[str, Any] = {}
    code = totp_code(secrets[1], time.time())
    assert cost(lambda: fast.post("/v1/customers/cust-002/totp/confirm", {"code": code})) == 2
    assert cost(lambda: challenge.update(new_challenge(fast, "cust-001"))) == 1
    assert cost(lambda: fast.get(f"/v1/challenges/{challenge['id']}")) == 1
    assert cost(lambda: verify(fast, challenge, wrong_code(secrets[0], time.time()))) == 2
    assert cost(lambda: consume(fast, challenge)) == 1


def test_codes_computed_at_a_time_other_than_the_store_s_are_not_judged(store):
    """The script that judges a code checks the time it was computed at against its own."""
    (api,) = real_hosts(store, 0)
    register(api)
    secret = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    assert (
        api.post("/v1/customers/cust-001/totp/confirm", {"code": totp_code(secret, time.time())}).status_code
        == 200
    )
    challenge = new_challenge(api)
    gw = api.client.application.extensions["authgw"]
    keys = gw.store.keys.for_customer("cust-001")
    sealed = store.hget(keys.customer, "totp")
    then = int((time.time() + SLOW) * 1000)  # a host 10 minutes slow, its codes of then
    result = gw.store.run(
        "verify_totp",
        [keys.challenge(challenge["id"]), keys.customer, keys.open, keys.events, keys.lines],
        [then, rfc3339(then), 1000, 86_400_000, "corebank", 6, sealed, "", challenge["id"]],
    )
    assert result == ["stale"]
    assert api.get("/v1/customers/cust-001").get_json()["failed_attempts"] == 0
    assert status(api, challenge) == "pending"
