"""What ``redis_wait_replicas`` and ``appendfsync always`` cost per transition (docs/operations.md).

Run: ``.venv/bin/python -m bench.wait_cost``. It starts its own Redis topologies with the
suite's process helpers (``tests/topology.py``) and prints the figures as JSON.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from typing import Any

from authgw.app import create_app
from tests.helpers.api import Api, transfer
from tests.helpers.settings import API_KEY, settings_for_tests
from tests.topology import start_sentinel_set, start_server


def measure_wait_cost(count: int = 1000) -> dict[str, float]:
    """Median and 99th-percentile milliseconds of one transition (cancel) through the app,
    on a primary with two replicas, without and with ``redis_wait_replicas=1``, and on one
    server with ``appendfsync always``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("no redis-server on the PATH")

    def run(url: str, **settings: Any) -> tuple[float, float]:
        app = create_app(settings_for_tests(redis_url=url, rate_limit_customer=0, **settings))
        api = Api(app.test_client(), API_KEY)
        times = []
        for i in range(count + 50):  # the first 50 warm up connections and scripts
            # A cancelled challenge keeps its number bound until its expires_at: one customer
            # per transition, so the pool of three numbers never runs out.
            customer = f"m-{i}"
            assert api.put(f"/v1/customers/{customer}", {"phones": ["090-1234-5678"]}).status_code == 200
            ch = api.post("/v1/challenges", transfer(customer, methods=["callback"])).get_json()["id"]
            started = time.perf_counter()
            assert api.post(f"/v1/challenges/{ch}/cancel").status_code == 200
            if i >= 50:
                times.append((time.perf_counter() - started) * 1000)
        times.sort()
        return statistics.median(times), times[int(len(times) * 0.99) - 1]

    figures: dict[str, float] = {}
    sentinel = start_sentinel_set(binary)
    try:
        figures["no_wait_p50"], figures["no_wait_p99"] = run(sentinel.url)
        figures["wait_1_p50"], figures["wait_1_p99"] = run(sentinel.url, redis_wait_replicas=1)
    finally:
        sentinel.stop()
    aof = start_server(binary, "--appendonly", "yes", "--appendfsync", "always")
    try:
        figures["aof_always_p50"], figures["aof_always_p99"] = run(aof.url)
    finally:
        aof.stop()
    return {k: round(v, 3) for k, v in figures.items()}


if __name__ == "__main__":
    print(json.dumps(measure_wait_cost(), indent=1))
