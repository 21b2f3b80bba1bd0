"""Redis Sentinel: the primary is killed mid-traffic and a replica takes over.

The set has a primary and two replicas; the gateway runs with ``redis_wait_replicas=1``: it
answers a transition only once a replica holds it. During the failover requests fail closed
(503 ``store_unavailable``, never a 500, never an approval); once the sentinels have promoted a
replica and pointed the other at it, the same gateway, never restarted, succeeds again; and
everything it acknowledged, before the failover or after, is still there, unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.api import Api
from tests.helpers.apps import close_apps, open_app
from tests.helpers.polling import wait_until
from tests.helpers.settings import API_KEY, settings_for_tests
from tests.helpers.stores import redis_binary
from tests.helpers.traffic import Traffic
from tests.topology import Topology, current_primary_port, start_sentinel_set

pytestmark = [pytest.mark.real_redis, pytest.mark.topology]


@pytest.fixture(autouse=True)
def _close_apps() -> Iterator[None]:
    yield
    close_apps()


FAILOVER_SECONDS = 30.0


@pytest.fixture
def sentinel_set() -> Iterator[Topology]:
    topology = start_sentinel_set(redis_binary("Sentinel tests"))
    yield topology
    topology.stop()


def sentinel_app(topology: Topology, clock: Any = None, **overrides: Any) -> Any:
    settings = settings_for_tests(
        redis_url=topology.url, redis_timeout=2, redis_wait_replicas=1, redis_wait_timeout=1
    )
    settings.update(overrides)
    return open_app({**settings, "clock": clock} if clock is not None else settings)


def test_sentinel_url_finds_the_primary(sentinel_set: Topology) -> None:
    app = sentinel_app(sentinel_set)
    api = Api(app.test_client(), API_KEY)
    assert api.put("/v1/customers/cust-s", {"phones": ["090-1234-5678"]}).status_code == 200
    with sentinel_set.nodes[1].client() as replica:
        assert replica.exists(app.extensions["authgw"].store.keys.for_customer("cust-s").customer)
    assert app.test_client().get("/readyz").status_code == 200


def test_primary_killed_mid_traffic_fails_closed_then_recovers(sentinel_set: Topology, clock: Any) -> None:
    app = sentinel_app(sentinel_set, clock)
    traffic = Traffic(app, clock=clock)
    thread = threading.Thread(target=traffic.run, daemon=True)
    thread.start()
    try:
        wait_until("traffic before the failover", lambda: traffic.successes() >= 20)
        before_kill = dict(traffic.challenges), dict(traffic.customers)
        old_primary, *replicas = sentinel_set.nodes
        old_primary.kill()
        failed_at = len(traffic.statuses)
        wait_until(
            "a sentinel naming a replica as primary",
            lambda: current_primary_port(sentinel_set) in {r.port for r in replicas},
        )
        recovered_from = len(traffic.statuses)
        wait_until(
            "successes after the failover",
            lambda: sum(1 for _, s, _ in traffic.statuses[recovered_from:] if 200 <= s < 300) >= 20,
        )
    finally:
        traffic.stop.set()
        thread.join(10)
    assert not traffic.errors, traffic.errors

    traffic.fail_closed_only()
    assert (503, "store_unavailable") in {(s, c) for _, s, c in traffic.statuses[failed_at:]}
    # Nothing acknowledged was lost or changed, before the failover or after it.
    challenges, customers = before_kill
    assert challenges and customers
    traffic.check_acknowledged(Api(app.test_client(), API_KEY))
    assert any(statuses == {"consumed"} for statuses in traffic.challenges.values())
