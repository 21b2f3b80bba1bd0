"""``/readyz`` is 200 only while the store takes writes and this host's clock agrees with it.

Each not-ready reason is made on a private redis-server the test starts itself (never a shared
one): out of memory, a read-only replica, too few replicas for ``min-replicas-to-write``, a host
clock set apart from the store's, and no store at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from authgw.app import create_app
from authgw.embedded import EmbeddedStore, start_redis_server
from tests.helpers.ports import free_ports
from tests.helpers.settings import settings_for_tests
from tests.helpers.stores import real_client, redis_binary

pytestmark = pytest.mark.real_redis


@pytest.fixture
def server() -> Iterator[EmbeddedStore]:
    """A redis-server of this test's own: its configuration is changed below."""
    started = start_redis_server(redis_binary("readiness tests"))
    yield started
    started.stop()


@pytest.fixture
def admin(server: EmbeddedStore) -> Iterator[Any]:
    client = real_client(server.url)
    yield client
    client.close()


def gateway(server: EmbeddedStore, host_clock: Any = None, **settings: Any) -> Any:
    config: dict[str, Any] = {**settings_for_tests(redis_url=server.url, redis_timeout=0.5, **settings)}
    if host_clock is not None:
        config["host_clock"] = host_clock
    return create_app(config)


def not_ready(app: Any, reason: str) -> dict[str, Any]:
    rv = app.test_client().get("/readyz")
    assert rv.status_code == 503, rv.get_data(as_text=True)
    assert rv.mimetype == "application/problem+json"
    body = rv.get_json()
    assert body["code"] == "store_unavailable"
    assert body["reason"] == reason, body
    return body


def ready(app: Any) -> None:
    rv = app.test_client().get("/readyz")
    assert rv.status_code == 200, rv.get_data(as_text=True)
    assert rv.get_json() == {"status": "ready"}


def test_ready_while_the_store_takes_writes_and_the_probe_key_expires(server, admin):
    app = gateway(server)
    ready(app)
    probe = app.extensions["authgw"].store.keys.readiness_probe()
    assert probe.startswith("authgw:")
    assert admin.exists(probe) == 1
    assert 0 < admin.pttl(probe) <= 10_000


def test_out_of_memory_is_not_ready(server, admin):
    app = gateway(server)
    ready(app)
    assert admin.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    admin.config_set("maxmemory", 1)
    try:
        assert admin.ping()  # the store still answers: a ping alone said "ready"
        body = not_ready(app, "out_of_memory")
        assert "memory" in body["detail"]
    finally:
        admin.config_set("maxmemory", 0)
    ready(app)


def test_a_read_only_replica_is_not_ready(server, admin):
    app = gateway(server)
    ready(app)
    admin.replicaof("127.0.0.1", free_ports(1)[0])  # a primary that is not there: still read-only
    try:
        not_ready(app, "read_only_replica")
    finally:
        admin.replicaof("NO", "ONE")
    ready(app)


def test_too_few_replicas_for_min_replicas_to_write_is_not_ready(server, admin):
    app = gateway(server)
    admin.config_set("min-replicas-to-write", 1)
    try:
        not_ready(app, "too_few_replicas")
    finally:
        admin.config_set("min-replicas-to-write", 0)
    ready(app)


def test_too_few_replicas_to_confirm_a_write_is_not_ready_when_the_gateway_waits_for_them(server):
    # AUTHGW_REDIS_WAIT_REPLICAS=1 and no replica: every transition would answer 503.
    not_ready(gateway(server, redis_wait_replicas=1, redis_wait_timeout=0.05), "too_few_replicas")


@pytest.mark.parametrize("skew", [5.0, -5.0, 600.0])
def test_a_host_clock_off_the_store_s_is_not_ready(server, skew):
    app = gateway(server, host_clock=lambda: time.time() + skew)
    body = not_ready(app, "clock_skew")
    assert body["clock_offset_seconds"] == pytest.approx(-skew, abs=1)
    assert body["clock_skew_max_seconds"] == 2.0


def test_a_host_clock_within_the_allowed_skew_is_ready(server):
    ready(gateway(server, host_clock=lambda: time.time() + 1))
    ready(gateway(server, host_clock=lambda: time.time() + 5, clock_skew_max_seconds=10))


def test_the_gauge_shows_the_host_to_store_clock_offset(server):
    app = gateway(server, host_clock=lambda: time.time() - 30)
    client = app.test_client()
    not_ready(app, "clock_skew")
    values = {
        s.name: s.value
        for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
        for s in family.samples
    }
    assert values["authgw_clock_offset_seconds"] == pytest.approx(30, abs=1)


def test_no_store_is_not_ready(server):
    app = gateway(server)
    ready(app)
    server.stop()
    not_ready(app, "store_unreachable")
