"""The suite's Redis: the binary, clients, every key of a store, and counting round trips."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest
import redis


def redis_binary(needed_by: str, *, with_cli: bool = False) -> str:
    """The ``redis-server`` binary; without it (or ``redis-cli`` when ``with_cli``) the test
    skips with the reason, or fails when ``AUTHGW_REQUIRE_REAL_REDIS=1`` (CI)."""
    binary = shutil.which("redis-server")
    missing = "redis-server" if binary is None else None
    if with_cli and shutil.which("redis-cli") is None:
        missing = "redis-cli"
    if binary is None or missing:
        if os.environ.get("AUTHGW_REQUIRE_REAL_REDIS") == "1":
            pytest.fail(f"AUTHGW_REQUIRE_REAL_REDIS=1 but no {missing} is on the PATH")
        pytest.skip(f"no {missing} on the PATH: {needed_by} need it")
    return binary


def real_client(url: str, **kwargs: Any) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, **kwargs)


def cluster_client(url: str) -> Any:
    """A client made the way the gateway makes it (``authgw.store.connect``)."""
    from authgw.store import connect

    return connect(url, timeout=2.0, pool_size=16)


def every_key(client: Any) -> set[str]:
    """Every key in the store, on every primary of a Cluster too (KEYS alone asks one node).

    The tests' stores are private to the suite. Every "the store is unchanged" check goes
    through here, so it can fail on a Cluster as it does on one server."""
    if hasattr(client, "get_primaries"):
        return set(client.keys("*", target_nodes=client.PRIMARIES))
    return set(client.keys("*"))


class CountingConnection(redis.Connection):
    """A connection that counts what it sends: one round trip per command or whole pipeline."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)
