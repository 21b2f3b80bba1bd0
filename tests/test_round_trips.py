"""How many Redis round trips each /v1 call makes (the README's table), on the real server.

A round trip is one write to the socket: a single command or a whole pipeline. Counting at the
connection catches both, so a pipeline of two rate-limit counters is one round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from authgw.app import create_app
from tests.helpers.api import Api, enrol_totp, register, totp_code, transfer
from tests.helpers.settings import settings_for_tests
from tests.helpers.stores import CountingConnection


def gateway(url: str, clock: Any, **settings: Any) -> tuple[Api, Callable[[Callable[[], Any]], int]]:
    pool = redis.ConnectionPool.from_url(url, decode_responses=True, connection_class=CountingConnection)
    app = create_app(
        {**settings_for_tests(**settings), "redis_client": redis.Redis(connection_pool=pool), "clock": clock}
    )
    api = Api(app.test_client())

    def cost(action: Callable[[], Any]) -> int:
        before = CountingConnection.sent
        action()
        return CountingConnection.sent - before

    return api, cost


def walk(api: Api, cost: Callable[[Callable[[], Any]], int], clock: Any) -> dict[str, int]:
    """Each call once with every script already loaded; the round trips of each."""
    register(api)
    secret = enrol_totp(api, clock)
    for _ in range(2):  # the first pass loads every script (SCRIPT LOAD before its first use)
        clock.advance(30)
        created = api.post("/v1/challenges", transfer(), headers={"Idempotency-Key": "warm"}).get_json()
        api.post("/v1/challenges", transfer(), headers={"Idempotency-Key": "warm"})
        api.get(f"/v1/challenges/{created['id']}")
        api.post(f"/v1/challenges/{created['id']}/totp", {"code": totp_code(secret, clock())})
        api.post(
            f"/v1/challenges/{created['id']}/consume", {"transaction_digest": created["transaction_digest"]}
        )
        api.post(f"/v1/challenges/{api.post('/v1/challenges', transfer()).get_json()['id']}/cancel")
        api.get("/v1/customers/cust-001")
    clock.advance(30)
    ids: dict[str, Any] = {}
    costs = {
        "create": cost(lambda: ids.update(a=api.post("/v1/challenges", transfer()).get_json())),
        "create with Idempotency-Key": cost(
            lambda: ids.update(
                b=api.post("/v1/challenges", transfer(), headers={"Idempotency-Key": "k-1"}).get_json()
            )
        ),
        "read": cost(lambda: api.get(f"/v1/challenges/{ids['a']['id']}")),
        "verify by TOTP": cost(
            lambda: api.post(f"/v1/challenges/{ids['a']['id']}/totp", {"code": totp_code(secret, clock())})
        ),
        "consume": cost(
            lambda: api.post(
                f"/v1/challenges/{ids['a']['id']}/consume",
                {"transaction_digest": ids["a"]["transaction_digest"]},
            )
        ),
        "cancel": cost(lambda: api.post(f"/v1/challenges/{ids['b']['id']}/cancel")),
        "read customer": cost(lambda: api.get("/v1/customers/cust-001")),
    }
    assert ids["a"]["id"] != ids["b"]["id"]
    return costs


WITHOUT_LIMITS = {
    "create": 1,
    "create with Idempotency-Key": 3,
    "read": 1,
    "verify by TOTP": 2,
    "consume": 1,
    "cancel": 1,
    "read customer": 1,
}


@pytest.mark.real_redis
def test_each_call_costs_the_round_trips_the_readme_says(redis_server, real_store, clock):
    api, cost = gateway(redis_server.url, clock, rate_limit_client=0, rate_limit_customer=0)
    assert walk(api, cost, clock) == WITHOUT_LIMITS


# Calls whose first store call only reads send both counters in that read's pipeline.
READS_FIRST = {"read", "verify by TOTP", "read customer"}


@pytest.mark.real_redis
def test_rate_limits_add_one_round_trip_for_both_counters_unless_the_call_reads_first(
    redis_server, real_store, clock
):
    api, cost = gateway(redis_server.url, clock)
    assert walk(api, cost, clock) == {
        name: n + (name not in READS_FIRST) for name, n in WITHOUT_LIMITS.items()
    }
