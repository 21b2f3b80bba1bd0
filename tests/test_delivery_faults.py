"""Webhook delivery under faults, with real processes (API.md Additions, "Webhooks to the bank":
at least once, even when every gateway process is killed right after the transition).

Each test runs its own redis-server (AOF, fsync always), real ``authgw serve`` / ``authgw
deliver`` processes and a real HTTP receiver on loopback. Every loop is bounded."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from authgw.console.demo import PAYEE
from tests.helpers.polling import wait_until
from tests.helpers.ports import free_ports
from tests.helpers.receiver import Receiver, receiver, signed_by
from tests.helpers.settings import API_KEY, settings_for_tests
from tests.helpers.stores import redis_binary
from tests.topology import Gateway, Topology, start_deliverer, start_gateway, start_server

pytestmark = [pytest.mark.real_redis, pytest.mark.topology]


@pytest.fixture
def durable() -> Iterator[Topology]:
    server = start_server(
        redis_binary("delivery fault tests"), "--appendonly", "yes", "--appendfsync", "always"
    )
    yield server
    server.stop()


def env_for(server: Topology, **extra: str) -> dict[str, str]:
    env = {f"AUTHGW_{k.upper()}": str(v) for k, v in settings_for_tests().items()}
    env.update({"AUTHGW_REDIS_URL": server.url, "AUTHGW_WEBHOOK_ALLOW_HTTP": "1", **extra})
    return env


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as rv:
            text = rv.read()
            return rv.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        # Closed even when its read fails: left open, a read that times out keeps its socket
        # in the poller's last error until the GC, which warns where it happens to run.
        with exc:
            return exc.code, json.loads(exc.read() or b"null")


def put_customer(base: str, customer_id: str) -> tuple[int, Any]:
    return call(base, "PUT", f"/v1/customers/{customer_id}", {"phones": ["090-1234-5678"]})


def register(base: str, customer_id: str) -> None:
    status, body = put_customer(base, customer_id)
    assert status == 200, body


def registered_or_unavailable(base: str, customer_id: str) -> bool:
    """True once registered; False on 503 (nothing acknowledged); any other answer fails."""
    status, body = put_customer(base, customer_id)
    assert status in (200, 503), body
    return status == 200


def create(base: str, customer_id: str) -> str:
    status, body = call(
        base,
        "POST",
        "/v1/challenges",
        {"customer_id": customer_id, "kind": "transfer", "amount": 1000, "payee": PAYEE},
    )
    assert status == 201, body
    return str(body["id"])


def add_endpoint(base: str, url: str, events: list[str] | None = None) -> str:
    status, body = call(base, "PUT", "/v1/webhooks/core", {"url": url, "events": events or ["*"]})
    assert status == 201, body
    return str(body["secret"])


def event_ids(base: str, customer_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for customer_id in customer_ids:
        status, body = call(base, "GET", f"/v1/customers/{customer_id}/events?limit=100")
        assert status == 200, body
        found |= {e["id"] for e in body["events"]}
    return found


def log_of(gateway: Gateway) -> str:
    return gateway.log.read_text(errors="replace")[-3000:]


def test_serve_killed_right_after_a_transition_delivers_it_after_the_restart(durable: Topology) -> None:
    """The transition is answered by a gateway with no deliverer, which is then SIGKILLed with
    all its workers: the event is only in the store's outbox. A new gateway delivers it."""
    env = env_for(durable)
    with receiver() as got:
        first = start_gateway(env, extra=["--no-deliver"])
        try:
            secret = add_endpoint(first.url, got.url)
            register(first.url, "cust-001")
            challenge_id = create(first.url, "cust-001")
            ids = event_ids(first.url, ["cust-001"])
        finally:
            first.kill()
        assert got.got() == []
        second = start_gateway(env)
        try:
            wait_until("both events delivered", lambda: set(got.ids()) == ids, 60)
        finally:
            second.stop()
    created = [r for r in got.got() if r.event["type"] == "challenge.created"]
    assert created and created[0].event["data"]["challenge_id"] == challenge_id
    assert all(signed_by(r, secret) for r in got.got())


def test_a_deliverer_killed_mid_delivery_leaves_it_to_another(durable: Topology) -> None:
    env = env_for(durable)
    gateway = start_gateway(env, extra=["--no-deliver"])
    first_arrived = threading.Event()
    hold = threading.Event()

    def answer(_r: Any) -> tuple[int, dict[str, str], float]:
        if not first_arrived.is_set():
            first_arrived.set()
            hold.wait(30)  # the first deliverer dies while this request is open
        return 200, {}, 0.0

    try:
        with receiver() as got:
            got.answer = answer
            add_endpoint(gateway.url, got.url, ["customer.*"])
            one, one_log = start_deliverer(env)
            try:
                register(gateway.url, "cust-001")
                wait_until("the first deliverer posting", first_arrived.is_set, 60)
                one.send_signal(signal.SIGKILL)
                one.wait(10)
            finally:
                if one.poll() is None:
                    one.kill()
            hold.set()
            two, two_log = start_deliverer(env)
            try:
                # The dead one's claim comes back after its lease; the other posts it again.
                wait_until("delivered by the second deliverer", lambda: len(got.got()) >= 2, 90)
            finally:
                two.send_signal(signal.SIGTERM)
                assert two.wait(30) == 0, two_log.read_text()
            ids = got.ids()
            assert len(set(ids)) == 1  # one event, posted twice: at least once, same webhook-id
            _status, body = call(gateway.url, "GET", "/v1/webhooks/core/deliveries")
            assert [d["state"] for d in body["deliveries"]] == ["delivered"], (body, one_log.read_text())
    finally:
        gateway.stop()


def test_a_receiver_down_for_a_while_gets_everything_when_it_returns(durable: Topology) -> None:
    """Every delivery fails at least once while the receiver is down, then all arrive once it
    is back. The waits are short and many (3 s, 50 times): with the default schedule a delivery
    whose second try also fell before the receiver returned would wait 5 minutes for its third,
    and on a slow machine some do."""
    env = env_for(durable, AUTHGW_WEBHOOK_RETRY_SCHEDULE=",".join(["3"] * 50))
    (port,) = free_ports(1)
    gateway = start_gateway(env)
    customers = [f"cust-{n:03d}" for n in range(15)]
    try:
        add_endpoint(gateway.url, f"http://127.0.0.1:{port}/hook")
        for customer_id in customers:  # the receiver is down: every first try fails
            register(gateway.url, customer_id)
            create(gateway.url, customer_id)
        wanted = event_ids(gateway.url, customers)

        def tried_everything() -> bool:
            status, body = call(gateway.url, "GET", "/v1/webhooks/core/deliveries?limit=100")
            return (
                status == 200
                and len(body["deliveries"]) == len(wanted)
                and all(d["attempts"] >= 1 and d["last_error"] for d in body["deliveries"])
            )

        wait_until("every delivery tried once and failed", tried_everything, 60)
        _, body = call(gateway.url, "GET", "/v1/webhooks/core")
        assert body["lag_seconds"] > 0
        got: Receiver
        with receiver(port) as got:
            wait_until("everything delivered", lambda: set(got.ids()) == wanted, 90)
        _status, body = call(gateway.url, "GET", "/v1/webhooks/core/deliveries?state=pending")
        assert body["deliveries"] == []
    finally:
        gateway.stop()


def test_redis_killed_and_restarted_with_aof_loses_no_event(durable: Topology) -> None:
    """Transitions before and after a SIGKILL of the store: every event a client was told about
    is delivered (duplicates allowed: at least once)."""
    env = env_for(durable, AUTHGW_REDIS_TIMEOUT="1")
    gateway = start_gateway(env)
    node = durable.nodes[0]
    try:
        with receiver() as got:
            add_endpoint(gateway.url, got.url, ["customer.*", "challenge.created"])
            before = [f"before-{n}" for n in range(5)]
            for customer_id in before:
                register(gateway.url, customer_id)
            node.kill()
            assert (
                call(gateway.url, "PUT", "/v1/customers/while-down", {"phones": ["090-1234-5678"]})[0] == 503
            )
            node.start()
            node.wait_up()
            after = [f"after-{n}" for n in range(5)]
            wait_until("the gateway writing again", lambda: call(gateway.url, "GET", "/readyz")[0] == 200, 60)
            for customer_id in after:
                register(gateway.url, customer_id)
                create(gateway.url, customer_id)
            wanted = event_ids(gateway.url, before + after)
            wait_until("every acknowledged event delivered", lambda: wanted <= set(got.ids()), 120)
            # Nothing was delivered that no trail holds (the refused write left no event).
            assert set(got.ids()) <= wanted
            assert call(gateway.url, "GET", "/v1/customers/while-down")[0] == 404
    finally:
        gateway.stop()


def test_serve_stops_its_deliverer_on_sigterm_and_a_killed_serve_leaves_no_orphan(durable: Topology) -> None:
    env = env_for(durable)
    gateway = start_gateway(env)
    (deliverer,) = gateway.deliverer_pids()
    assert gateway.stop() == 0
    wait_until("the deliverer gone after SIGTERM", lambda: not _alive(deliverer), 30)
    gateway = start_gateway(env)
    (deliverer,) = gateway.deliverer_pids()
    workers = gateway.worker_pids()
    gateway.process.send_signal(signal.SIGKILL)
    gateway.process.wait(5)
    for worker in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)
    wait_until("the orphaned deliverer stops by itself", lambda: not _alive(deliverer), 30)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_deliveries_show_on_the_gateways_metrics_and_a_failing_endpoint_leaves_readyz_alone(
    durable: Topology,
) -> None:
    env = env_for(durable)
    gateway = start_gateway(env)
    try:
        with receiver() as good, receiver() as bad:
            bad.answer = lambda _r: (500, {}, 0.0)
            add_endpoint(gateway.url, good.url, ["customer.*"])
            status, body = call(
                gateway.url, "PUT", "/v1/webhooks/bad", {"url": bad.url, "events": ["customer.*"]}
            )
            assert status == 201, body
            register(gateway.url, "cust-001")
            wait_until("delivered to the good one", lambda: len(good.got()) == 1, 60)
            wait_until("tried at the bad one", lambda: len(bad.got()) == 1, 60)
            assert call(gateway.url, "GET", "/readyz")[0] == 200

            def metrics() -> str:
                with urllib.request.urlopen(gateway.url + "/metrics", timeout=10) as rv:
                    return rv.read().decode()

            wanted = (
                'authgw_webhook_attempts_total{endpoint="core",outcome="delivered"} 1.0',
                'authgw_webhook_attempts_total{endpoint="bad",outcome="failed_attempt"} 1.0',
            )
            wait_until("the deliverer's metrics on /metrics", lambda: all(w in metrics() for w in wanted), 60)
            assert "authgw_webhook_delivery_seconds_bucket" in metrics()
            assert 'authgw_webhook_lag_seconds{endpoint="bad"' in metrics()
    finally:
        gateway.stop()


def test_a_sentinel_failover_loses_no_acknowledged_event() -> None:
    """The primary is SIGKILLed between transitions; with replicas waited for, every event a
    client was told about, before the failover or after, reaches the endpoint."""
    from tests.topology import current_primary_port, start_sentinel_set

    topology = start_sentinel_set(redis_binary("delivery failover test"))
    env = env_for(
        topology, AUTHGW_REDIS_TIMEOUT="2", AUTHGW_REDIS_WAIT_REPLICAS="1", AUTHGW_REDIS_WAIT_TIMEOUT="1"
    )
    gateway = start_gateway(env)
    try:
        with receiver() as got:
            add_endpoint(gateway.url, got.url, ["customer.*"])
            before = [f"before-{n}" for n in range(5)]
            for customer_id in before:
                register(gateway.url, customer_id)
            old_primary, *replicas = topology.nodes
            old_primary.kill()
            wait_until(
                "a sentinel naming a replica as primary",
                lambda: current_primary_port(topology) in {r.port for r in replicas},
                90,
            )
            wait_until("the gateway writing again", lambda: call(gateway.url, "GET", "/readyz")[0] == 200, 90)
            after = [f"after-{n}" for n in range(5)]
            for customer_id in after:
                # /readyz was one worker's answer; another may still be finding the new primary
                # and answer 503, which acknowledges nothing: the client tries again.
                wait_until(
                    f"{customer_id} registered",
                    functools.partial(registered_or_unavailable, gateway.url, customer_id),
                    60,
                )
            wanted = event_ids(gateway.url, before + after)
            wait_until("every acknowledged event delivered", lambda: wanted <= set(got.ids()), 120)
    finally:
        gateway.stop()
        topology.stop()
