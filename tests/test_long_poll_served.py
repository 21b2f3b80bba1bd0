"""Long-poll in a served gateway: waiting requests hold no worker thread (gevent)."""

from __future__ import annotations

import json
import os
import sys
import threading
from http.client import HTTPConnection
from urllib.parse import urlsplit

import pytest

from tests.helpers.api import transfer
from tests.helpers.serving import http, serving
from tests.helpers.stores import redis_binary

pytestmark = pytest.mark.topology

KEY = "dev-corebank-key-0001"
WAITERS = int(
    os.environ.get("LP_WAITERS", "300")
)  # more than the old 256 connections of a worker, on one worker


def test_hundreds_of_waiters_on_one_worker_are_all_woken_by_the_transitions():
    redis_binary("the served long-poll test")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGW_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with serving([sys.executable, "-m", "authgw.cli", "serve", "--dev", "--workers", "1"], env) as (
        base,
        _log,
    ):
        ids = []
        for i in range(WAITERS):
            status, _ = http("PUT", f"{base}/v1/customers/lp-{i}", {"phones": ["090-1234-5678"]}, key=KEY)
            assert status == 200
            status, body = http("POST", f"{base}/v1/challenges", transfer(f"lp-{i}", amount=1000), key=KEY)
            assert status == 201, body
            ids.append(body["id"])

        netloc = urlsplit(base).netloc
        answers: dict[str, str] = {}
        sent = threading.Barrier(WAITERS + 1, timeout=120)

        def wait_on(challenge_id: str) -> None:
            conn = HTTPConnection(netloc, timeout=120)
            try:
                conn.request(
                    "GET",
                    f"/v1/challenges/{challenge_id}?wait=30",
                    headers={"Authorization": f"Bearer {KEY}"},
                )
                sent.wait()
                answers[challenge_id] = json.loads(conn.getresponse().read())["status"]
            finally:
                conn.close()

        threads = [threading.Thread(target=wait_on, args=(i,)) for i in ids]
        for t in threads:
            t.start()
        sent.wait()  # every waiter's request is on the wire before any cancel
        # A worker that gave each waiter a thread (or a slot of a small pool) would serve these
        # only after waits of 30 s that end "pending"; gevent serves them beside the waiters.
        for challenge_id in ids:
            status, _ = http("POST", f"{base}/v1/challenges/{challenge_id}/cancel", key=KEY)
            assert status == 200
        for t in threads:
            t.join(120)
        assert answers == {i: "cancelled" for i in ids}
