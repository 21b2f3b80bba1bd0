"""Redis Sentinel: the primary is killed mid-traffic and a replica takes over.

The set has a primary and two replicas; the gateway runs with ``redis_wait_replicas=1``: it
answers a transition only once a replica holds it. During the failover requests fail closed
(503 ``store_unavailable``, never a 500, never an approval); once the sentinels have promoted a
replica and pointed the other at it, the same gateway, never restarted, succeeds again; and
everything it acknowledged, before the failover or after, is still there, unchanged.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from authgw.app import create_app
from tests.conftest import API_KEY, Api, _require_real, settings_for_tests, transfer
from tests.topology import Topology, current_primary_port, start_sentinel_set

pytestmark = [pytest.mark.real_redis, pytest.mark.topology]

FAILOVER_SECONDS = 30.0


@pytest.fixture
def sentinel_set() -> Iterator[Topology]:
    binary = shutil.which("redis-server")
    if binary is None:
        if _require_real():
            pytest.fail("AUTHGW_REQUIRE_REAL_REDIS=1 but no redis-server is on the PATH")
        pytest.skip("no redis-server on the PATH: Sentinel tests need one")
    topology = start_sentinel_set(binary)
    yield topology
    topology.stop()


def sentinel_app(topology: Topology, **overrides: Any) -> Any:
    settings = settings_for_tests(redis_url=topology.url, redis_timeout=0.5,
                                  redis_wait_replicas=1, redis_wait_timeout=0.25)
    settings.update(overrides)
    return create_app(settings)


def test_sentinel_url_finds_the_primary(sentinel_set: Topology) -> None:
    app = sentinel_app(sentinel_set)
    api = Api(app.test_client(), API_KEY)
    assert api.put("/v1/customers/cust-s", {"phones": ["090-1234-5678"]}).status_code == 200
    with sentinel_set.nodes[1].client() as replica:
        assert replica.exists(app.extensions["authgw"].store.keys.for_customer("cust-s").customer)
    assert app.test_client().get("/readyz").status_code == 200


class Traffic:
    """Requests in a loop from a thread; records what the gateway acknowledged."""

    def __init__(self, app: Any) -> None:
        self.api = Api(app.test_client(), API_KEY)
        self.stop = threading.Event()
        self.statuses: list[tuple[str, int, str | None]] = []
        self.customers: dict[str, list[str]] = {}  # acknowledged customers and their phones
        self.challenges: dict[str, str] = {}  # acknowledged challenge id -> acknowledged status
        self.errors: list[BaseException] = []

    def note(self, what: str, rv: Any) -> bool:
        body = rv.get_json(silent=True) or {}
        self.statuses.append((what, rv.status_code, body.get("code")))
        return bool(200 <= rv.status_code < 300)

    def run(self) -> None:
        i = 0
        try:
            while not self.stop.is_set() and i < 5000:
                cid, phone = f"cust-{i:04d}", f"+8190{10000000 + i}"
                i += 1
                if self.note("put", self.api.put(f"/v1/customers/{cid}", {"phones": [phone]})):
                    self.customers[cid] = [phone]
                else:
                    continue
                rv = self.api.post("/v1/challenges", transfer(cid))
                if not self.note("create", rv):
                    continue
                ch = rv.get_json()["id"]
                self.challenges[ch] = "pending"
                if i % 2 and self.note("cancel", self.api.post(f"/v1/challenges/{ch}/cancel")):
                    self.challenges[ch] = "cancelled"
                time.sleep(0.005)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    def successes(self) -> int:
        return sum(1 for _, status, _ in self.statuses if 200 <= status < 300)


def _wait_until(what: str, check: Any, seconds: float = FAILOVER_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        time.sleep(0.05)


def test_primary_killed_mid_traffic_fails_closed_then_recovers(sentinel_set: Topology) -> None:
    app = sentinel_app(sentinel_set)
    traffic = Traffic(app)
    thread = threading.Thread(target=traffic.run, daemon=True)
    thread.start()
    try:
        _wait_until("traffic before the failover", lambda: traffic.successes() >= 20)
        before_kill = dict(traffic.challenges), dict(traffic.customers)
        old_primary, *replicas = sentinel_set.nodes
        old_primary.kill()
        failed_at = len(traffic.statuses)
        _wait_until("a sentinel naming a replica as primary",
                    lambda: current_primary_port(sentinel_set) in {r.port for r in replicas})
        recovered_from = len(traffic.statuses)
        _wait_until("successes after the failover",
                    lambda: sum(1 for _, s, _ in traffic.statuses[recovered_from:] if 200 <= s < 300) >= 20)
    finally:
        traffic.stop.set()
        thread.join(10)
    assert not traffic.errors, traffic.errors

    outcomes = {(status, code) for _, status, code in traffic.statuses}
    assert all(status < 500 or (status, code) == (503, "store_unavailable") for status, code in outcomes)
    assert (503, "store_unavailable") in {(s, c) for _, s, c in traffic.statuses[failed_at:]}
    assert not any(status >= 400 and status != 503 for _, status, _ in traffic.statuses), outcomes

    # Nothing acknowledged was lost or changed, before the failover or after it.
    api = Api(app.test_client(), API_KEY)
    challenges, customers = before_kill
    assert challenges and customers
    for cid, phones in traffic.customers.items():
        rv = api.get(f"/v1/customers/{cid}")
        assert rv.status_code == 200 and rv.get_json()["phones"] == phones
    for ch, status in traffic.challenges.items():
        rv = api.get(f"/v1/challenges/{ch}")
        assert rv.status_code == 200 and rv.get_json()["status"] == status, ch
