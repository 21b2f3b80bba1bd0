"""Long-poll in a served gateway: a thousand waiting requests on one gevent worker hold no
thread each, cost the store one read per 5 seconds while idle, and are woken by the doorbell."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import urllib.request
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlsplit

import pytest

from authgw.identifiers import bucket_of_tag, customer_tag
from authgw.keys import Keys
from tests.helpers.api import transfer
from tests.helpers.polling import wait_until
from tests.helpers.serving import http, serving
from tests.helpers.stores import real_client, redis_binary

pytestmark = pytest.mark.topology

KEY = "dev-corebank-key-0001"
WAITERS = int(os.environ.get("LP_WAITERS", "1000"))  # the contract's thousand, on one worker
ARRIVING = 50  # waiters sent at once
IDLE_SECONDS = 6.0  # the window in which the store's commands are counted (a measurement)
INTERVAL = 5.0  # a waiting request's re-read (authgw.challenges.waiting.INTERVAL_SECONDS)


def metric(base: str, name: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, flags=re.M)
    return float(found.group(1)) if found else 0.0


def commands(client: Any) -> dict[str, int]:
    """The server's command counts by command (INFO commandstats), but INFO itself."""
    stats = client.info("commandstats")
    return {name[len("cmdstat_") :]: int(v["calls"]) for name, v in stats.items() if name != "cmdstat_info"}


def test_a_thousand_waiters_on_one_worker_cost_the_bound_and_are_all_woken_by_their_rings(redis_server):
    redis_binary("the served long-poll test")
    store = real_client(redis_server.url)
    store.flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGW_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["AUTHGW_REDIS_URL"] = redis_server.url
    customers = [f"lp-{i}" for i in range(WAITERS)]
    # No deliverer: it subscribes to every outbox, and this test counts the worker's own.
    argv = [sys.executable, "-m", "authgw.cli", "serve", "--dev", "--workers", "1", "--no-deliver"]
    with serving(argv, env) as (
        base,
        _log,
    ):
        ids = []
        for customer in customers:
            status, _ = http("PUT", f"{base}/v1/customers/{customer}", {"phones": ["090-1234-5678"]}, key=KEY)
            assert status == 200
            status, body = http("POST", f"{base}/v1/challenges", transfer(customer, amount=1000), key=KEY)
            assert status == 201, body
            ids.append(body["id"])

        netloc = urlsplit(base).netloc
        answers: dict[str, str] = {}

        def wait_on(challenge_id: str) -> None:
            conn = HTTPConnection(netloc, timeout=120)
            try:
                conn.request(
                    "GET",
                    f"/v1/challenges/{challenge_id}?wait=30",
                    headers={"Authorization": f"Bearer {KEY}"},
                )
                response = conn.getresponse()
                body = json.loads(response.read())
                answers[challenge_id] = (
                    body["status"] if response.status == 200 else f"{response.status} {body}"
                )
            finally:
                conn.close()

        threads = [threading.Thread(target=wait_on, args=(i,), daemon=True) for i in ids]
        # They arrive in groups of ARRIVING, each once the last is waiting: a thousand requests
        # landing in the same millisecond would be a burst of reads beyond the store pool's 32
        # connections, whatever the waiting (those fail closed, 503, before they wait).
        for first in range(0, WAITERS, ARRIVING):
            for t in threads[first : first + ARRIVING]:
                t.start()
            here = min(first + ARRIVING, WAITERS)

            def waiting(here: int = here) -> bool:
                assert not answers, sorted(answers.values())[:3]  # none answered before its end
                return metric(base, "authgw_long_poll_waiting") == here

            # Each has read its challenge once, found it pending, and waits.
            wait_until(f"{here} requests waiting", waiting, 60)

        # One listener for all of them: each bucket with a waiter has exactly one subscriber.
        keys = Keys("authgw")
        buckets = {keys.outbox(bucket_of_tag(customer_tag(c))) for c in customers}
        assert set(store.execute_command("PUBSUB", "SHARDCHANNELS")) == buckets
        subscribers = dict(store.pubsub_shardnumsub(*sorted(buckets)))
        assert set(subscribers.values()) == {1}

        # Idle: at most one read per waiter per 5 seconds (and no subscription traffic).
        before, started = commands(store), time.monotonic()
        time.sleep(IDLE_SECONDS)
        after, idle = commands(store), time.monotonic() - started
        spent = {
            name: after[name] - before.get(name, 0) for name in after if after[name] > before.get(name, 0)
        }
        reads = spent.get("evalsha", 0)  # each a round trip; INFO counts the script's own commands too
        allowed = WAITERS * (int(idle // INTERVAL) + 1)
        print(f"idle {idle:.1f} s, {WAITERS} waiters: {reads} reads (bound {allowed}); all commands {spent}")
        assert reads <= allowed
        # The read script's own commands, the process's clock (TIME) and health checks (PING):
        # no subscription traffic, nothing per waiter but its reads.
        assert set(spent) <= {"evalsha", "time", "hget", "hgetall", "ping"}, spent

        woken_before = metric(base, "authgw_long_poll_woken_total")
        # A worker that gave each waiter a thread (or a slot of a small pool) would serve these
        # only after waits of 30 s that end "pending"; gevent serves them beside the waiters.
        for challenge_id in ids:
            status, _ = http("POST", f"{base}/v1/challenges/{challenge_id}/cancel", key=KEY)
            assert status == 200
        for t in threads:
            t.join(120)
        assert answers == {i: "cancelled" for i in ids}
        # Each answered by its own ring (a few may have met their re-read first).
        woken = metric(base, "authgw_long_poll_woken_total") - woken_before
        print(f"woken by the doorbell: {woken:.0f} of {WAITERS}")
        assert woken >= WAITERS * 0.9
        wait_until("no request waiting", lambda: metric(base, "authgw_long_poll_waiting") == 0)
    store.flushdb()
    store.close()
