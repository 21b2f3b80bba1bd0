"""Fixtures: one suite, three stores.

``store`` is parametrised over fakeredis, a real ``redis-server`` that the suite starts on a
free loopback port (marker ``real_redis``) and a Redis Cluster it starts too (marker
``cluster``). Where no binary exists the real runs skip with a reason, unless
``AUTHGW_REQUIRE_REAL_REDIS=1`` (set by ``.ci/run``), which makes that a failure.
The clock is injected: tests move time with ``clock.advance``, never by sleeping.
Only fixtures live here; helpers are in ``tests/helpers/`` and nothing imports from this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis

from authgw.app import create_app
from authgw.embedded import EmbeddedStore, start_redis_server
from tests.helpers.api import Api
from tests.helpers.settings import OTHER_KEY, Clock, settings_for_tests
from tests.helpers.stores import cluster_client, real_client, redis_binary
from tests.topology import start_cluster


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: runs against a 3-primary Redis Cluster the suite starts itself"
    )
    config.addinivalue_line(
        "markers", "topology: starts its own Redis topology or gateway processes (slower)"
    )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedStore]:
    """A private redis-server for the whole session (never the machine's shared one)."""
    server = start_redis_server(redis_binary("real-Redis tests"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A private 3-primary Redis Cluster for the whole session (``tests/topology.py``)."""
    cluster = start_cluster(redis_binary("Cluster tests", with_cli=True))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster_client(redis_cluster: Any) -> Iterator[Any]:
    """One cluster client for the session: making one per test costs more than the test."""
    client = cluster_client(redis_cluster.url)
    yield client
    client.close()


@pytest.fixture(
    params=[
        "fake",
        pytest.param("real", marks=pytest.mark.real_redis),
        pytest.param("cluster", marks=[pytest.mark.real_redis, pytest.mark.cluster]),
    ]
)
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A Redis client, empty: fakeredis, the suite's own redis-server, or its own Cluster."""
    if request.param == "fake":
        client = fakeredis.FakeRedis(decode_responses=True)
        yield client
        client.flushall()
        return
    if request.param == "cluster":
        client = request.getfixturevalue("redis_cluster_client")
        client.flushall()
        yield client
        return
    yield request.getfixturevalue("real_store")


@pytest.fixture
def real_store(redis_server: EmbeddedStore) -> Iterator[redis.Redis]:
    """The suite's redis-server only: for races and anything fakeredis cannot show."""
    client = real_client(redis_server.url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings() -> dict[str, Any]:
    """Settings overrides for ``app``; a test may change them before using ``app``."""
    return settings_for_tests()


@pytest.fixture
def app(store: Any, clock: Clock, settings: dict[str, Any]) -> Any:
    return create_app({**settings, "redis_client": store, "clock": clock})


@pytest.fixture
def api(app: Any) -> Api:
    return Api(app.test_client())


@pytest.fixture
def other_api(app: Any) -> Api:
    return Api(app.test_client(), OTHER_KEY)


@pytest.fixture
def real_app(real_store: redis.Redis, clock: Clock, settings: dict[str, Any]) -> Any:
    """The app over the suite's redis-server only: for real concurrency."""
    return create_app({**settings, "redis_client": real_store, "clock": clock})
