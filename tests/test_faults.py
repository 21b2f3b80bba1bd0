"""Faults: the store killed and restarted, a slow store, too few replicas, a worker killed.

In every case: no approval without a verified transition, nothing acknowledged lost, no 500,
a clear 503 ``store_unavailable``, and recovery without restarting the gateway. Every server
here is the suite's own, on loopback; every loop is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.api import Api, enrol_totp, new_challenge, register, transfer, wrong_code
from tests.helpers.apps import close_apps, open_app
from tests.helpers.polling import wait_until
from tests.helpers.settings import API_KEY, settings_for_tests
from tests.helpers.stores import redis_binary
from tests.helpers.traffic import Traffic
from tests.topology import Topology, start_gateway, start_server

pytestmark = [pytest.mark.real_redis, pytest.mark.topology]


@pytest.fixture(autouse=True)
def _close_apps() -> Iterator[None]:
    yield
    close_apps()


def _binary() -> str:
    return redis_binary("fault tests")


@pytest.fixture
def durable_server() -> Iterator[Topology]:
    """A redis-server that writes every change to its AOF before answering."""
    server = start_server(_binary(), "--appendonly", "yes", "--appendfsync", "always")
    yield server
    server.stop()


@pytest.fixture
def server() -> Iterator[Topology]:
    server = start_server(_binary())
    yield server
    server.stop()


def test_store_killed_and_restarted_under_load(durable_server: Topology) -> None:
    app = open_app(settings_for_tests(redis_url=durable_server.url, redis_timeout=1))
    node = durable_server.nodes[0]
    traffic = [Traffic(app, prefix=f"t{n}") for n in range(2)]
    threads = [threading.Thread(target=t.run, daemon=True) for t in traffic]
    for thread in threads:
        thread.start()
    try:
        wait_until("traffic", lambda: all(t.successes() >= 10 for t in traffic))
        node.kill()
        marks = [len(t.statuses) for t in traffic]
        wait_until(
            "503s while the store is down",
            lambda: all(len(t.statuses) > m + 5 for t, m in zip(traffic, marks, strict=True)),
        )
        assert app.test_client().get("/readyz").status_code == 503
        node.start()
        node.wait_up()
        marks = [t.successes() for t in traffic]
        wait_until(
            "successes after the restart",
            lambda: all(t.successes() >= m + 10 for t, m in zip(traffic, marks, strict=True)),
        )
    finally:
        for t in traffic:
            t.stop.set()
        for thread in threads:
            thread.join(10)
    api = Api(app.test_client(), API_KEY)
    assert app.test_client().get("/readyz").status_code == 200
    for t in traffic:
        assert not t.errors, t.errors
        t.fail_closed_only()
        assert any(s == 503 for _, s, _ in t.statuses)
        t.check_acknowledged(api)


def test_slow_store_fails_closed_within_the_timeout(server: Topology, clock: Any) -> None:
    """A store that stops answering (CLIENT PAUSE) gives 503 after ``redis_timeout``, not a wait."""
    app = open_app({**settings_for_tests(redis_url=server.url, redis_timeout=0.2), "clock": clock})
    api = Api(app.test_client(), API_KEY)
    register(api)
    secret = enrol_totp(api, clock)
    challenge = new_challenge(api)
    with server.nodes[0].client() as admin:
        admin.execute_command("CLIENT", "PAUSE", 3000, "ALL")
    # Had the gateway waited for the store, this would be 422 invalid_code, not 503.
    rv = api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": wrong_code(secret, clock())})
    assert rv.status_code == 503 and rv.get_json()["code"] == "store_unavailable"
    assert rv.headers["Retry-After"]
    assert app.test_client().get("/readyz").status_code == 503
    wait_until("the store answering again", lambda: app.test_client().get("/readyz").status_code == 200)
    # The timed-out script may have run once when the pause ended; never twice (no retries),
    # and never half: the challenge's attempts and the customer's failures agree.
    after = api.get(f"/v1/challenges/{challenge['id']}").get_json()
    customer = api.get("/v1/customers/cust-001").get_json()
    assert after["status"] == "pending"
    assert after["attempts_left"] in (2, 3)
    assert customer["failed_attempts"] == 3 - after["attempts_left"]


def test_too_few_replicas_fail_closed(server: Topology, clock: Any) -> None:
    """With ``redis_wait_replicas`` set and no replica to confirm, nothing is acknowledged."""
    app = open_app(
        {
            **settings_for_tests(
                redis_url=server.url, redis_timeout=2, redis_wait_replicas=1, redis_wait_timeout=0.05
            ),
            "clock": clock,
        }
    )
    api = Api(app.test_client(), API_KEY)
    rv = api.put("/v1/customers/cust-001", {"phones": ["090-1234-5678"]})
    assert rv.status_code == 503 and rv.get_json()["code"] == "store_unavailable"
    # Not ready either: readiness means a write would succeed (issue 11 item 7).
    rv = app.test_client().get("/readyz")
    assert rv.status_code == 503 and rv.get_json()["reason"] == "too_few_replicas"


def _call(method: str, url: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as rv:
            text = rv.read()
            return rv.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        with exc:  # closed even when its read fails (else its socket waits for the GC)
            return exc.code, json.loads(exc.read() or b"null")


def _serve_env(server: Topology, **extra: str) -> dict[str, str]:
    settings = settings_for_tests()
    env = {f"AUTHGW_{k.upper()}": str(v) for k, v in settings.items()}
    env.update({"AUTHGW_REDIS_URL": server.url, **extra})
    return env


def test_worker_killed_mid_request_leaves_no_half_written_state(server: Topology) -> None:
    gateway = start_gateway(_serve_env(server, AUTHGW_REDIS_TIMEOUT="5"), workers=1)
    try:
        assert _call("PUT", gateway.url + "/v1/customers/cust-001", {"phones": ["090-1234-5678"]})[0] == 200
        status, challenge = _call("POST", gateway.url + "/v1/challenges", transfer("cust-001"))
        assert status == 201
        (worker,) = gateway.worker_pids()
        outcome: list[Any] = []

        def cancel() -> None:
            try:
                outcome.append(_call("POST", gateway.url + f"/v1/challenges/{challenge['id']}/cancel"))
            except OSError as exc:  # the worker died under the request
                outcome.append(exc)

        with server.nodes[0].client() as admin:
            admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")
        thread = threading.Thread(target=cancel)
        thread.start()
        time.sleep(0.3)  # let the request reach the store and wait there
        os.kill(worker, signal.SIGKILL)
        thread.join(15)
        assert outcome and not (isinstance(outcome[0], tuple) and outcome[0][0] == 200)
        wait_until("gunicorn starting a new worker", lambda: any(p != worker for p in gateway.worker_pids()))
        wait_until("the store answering", lambda: _call("GET", gateway.url + "/readyz")[0] == 200)

        status, after = _call("GET", gateway.url + f"/v1/challenges/{challenge['id']}")
        assert status == 200 and after["status"] in ("pending", "cancelled")
        status, events = _call("GET", gateway.url + "/v1/customers/cust-001/events")
        cancelled = [e for e in events["events"] if e["type"] == "challenge.cancelled"]
        assert len(cancelled) == (1 if after["status"] == "cancelled" else 0)
        # The gateway goes on: the challenge can still be settled, exactly once.
        status, _body = _call("POST", gateway.url + f"/v1/challenges/{challenge['id']}/cancel")
        assert (status, after["status"]) in ((200, "pending"), (409, "cancelled"))
    finally:
        gateway.stop()


def test_sigterm_lets_in_flight_requests_finish(server: Topology) -> None:
    gateway = start_gateway(_serve_env(server, AUTHGW_REDIS_TIMEOUT="5"), workers=1)
    try:
        assert _call("PUT", gateway.url + "/v1/customers/cust-001", {"phones": ["090-1234-5678"]})[0] == 200
        outcome: list[Any] = []

        def slow_put() -> None:
            try:
                outcome.append(
                    _call(
                        "PUT",
                        gateway.url + "/v1/customers/cust-001",
                        {"phones": ["090-1234-5678", "080-1234-5678"]},
                    )
                )
            except OSError as exc:
                outcome.append(exc)

        with server.nodes[0].client() as admin:
            admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")
        thread = threading.Thread(target=slow_put)
        thread.start()
        time.sleep(0.3)  # the request is in flight, waiting on the store
        gateway.process.send_signal(signal.SIGTERM)
        thread.join(15)
        assert gateway.process.wait(20) == 0
    finally:
        gateway.stop()
    assert outcome and outcome[0][0] == 200, outcome
    assert outcome[0][1]["phones"] == ["+819012345678", "+818012345678"]
    with server.nodes[0].client() as c:
        assert c.ping()


def test_cluster_shard_killed_and_restarted_fails_closed_then_recovers(clock: Any) -> None:
    from tests.topology import start_cluster

    cluster = start_cluster(_binary(), 3, "--appendonly", "yes", "--appendfsync", "always")
    try:
        app = open_app({**settings_for_tests(redis_url=cluster.url, redis_timeout=1), "clock": clock})
        api = Api(app.test_client(), API_KEY)
        store = app.extensions["authgw"].store
        dead = cluster.nodes[0]
        on_dead: list[str] = []
        elsewhere: list[str] = []
        for i in range(12):
            cid = f"cust-{i:03d}"
            register(api, cid, (f"090-1234-{5600 + i}",))
            node = store.client.get_node_from_key(store.keys.for_customer(cid).customer)
            (on_dead if node.port == dead.port else elsewhere).append(cid)
        assert on_dead and elsewhere
        dead.kill()
        # Customers on the lost shard fail closed; the others may too (the client's rate-limit
        # counter lives on one shard, and the cluster stops when a slot has no owner).
        answers = {cid: api.get(f"/v1/customers/{cid}") for cid in on_dead + elsewhere}
        assert all(rv.status_code in (200, 503) for rv in answers.values())
        assert all(answers[cid].get_json()["code"] == "store_unavailable" for cid in on_dead)
        dead.start()
        dead.wait_up()
        wait_until(
            "every customer readable again",
            lambda: all(api.get(f"/v1/customers/{cid}").status_code == 200 for cid in on_dead + elsewhere),
        )
        assert api.post("/v1/challenges", transfer(on_dead[0])).status_code == 201
    finally:
        cluster.stop()


def test_polling_waits_out_refused_connections() -> None:
    """A gateway whose new worker has not bound its socket yet refuses connections; the wait
    for it must go on, not fail (the worker-kill test above met this on a busy machine)."""
    answers: Iterator[OSError | bool] = iter(
        [ConnectionRefusedError(111, "refused"), ConnectionResetError(104, "reset"), True]
    )

    def check() -> bool:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    wait_until("the gateway answering", check, seconds=5)


def test_polling_names_the_last_error_when_time_runs_out() -> None:
    def check() -> bool:
        raise ConnectionRefusedError(111, "refused")

    with pytest.raises(AssertionError, match="ConnectionRefusedError"):
        wait_until("the gateway answering", check, seconds=0.2)
