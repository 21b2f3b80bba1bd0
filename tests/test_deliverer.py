"""The deliverer against a real HTTP receiver on loopback (API.md Additions, "Webhooks to the
bank"): every event delivered and signed, patterns, retries with the same webhook-id, failed
after the schedule, manual retry, rotation, isolation, no redirects. On fakeredis, the suite's
redis-server and its Cluster. Time that the schedule counts is the test's clock, moved by hand;
the HTTP is real."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest

from authgw.app import create_app
from tests.helpers.api import Api, enrol_totp, new_challenge, register, totp_code, wrong_code
from tests.helpers.delivering import attempts_made, deliveries, delivering, endpoint, newest, trail
from tests.helpers.polling import wait_until
from tests.helpers.receiver import receiver, signed_by


@pytest.fixture
def app(store, clock, settings):
    settings = {**settings, "webhook_allow_http": "1", "webhook_retry_schedule": "5,60"}
    return create_app({**settings, "redis_client": store, "clock": clock})


@pytest.fixture
def ops(other_api):
    return other_api


def every_kind_of_event(api: Api, clock, before_the_clock_moves: Callable[[], None]) -> None:
    """Registration, TOTP, challenges created, cancelled, verified, consumed, failed, a lock by
    failures, an operator's unlock and lock, limits, removal of TOTP. The test clock jumps 30 s
    once, past a delivery's 15 s lease: ``before_the_clock_moves`` lets the deliveries in
    flight finish first (a lease running out mid-request is a retry, at least once, and this
    test counts exactly once)."""
    register(api)
    secret = enrol_totp(api, clock)
    cancelled = new_challenge(api, methods=["totp"])["id"]
    assert api.post(f"/v1/challenges/{cancelled}/cancel").status_code == 200
    verified = new_challenge(api, methods=["totp"])
    assert (
        api.post(f"/v1/challenges/{verified['id']}/totp", {"code": totp_code(secret, clock())}).status_code
        == 200
    )
    before_the_clock_moves()
    clock.advance(30)
    consumed = api.post(
        f"/v1/challenges/{verified['id']}/consume", {"transaction_digest": verified["transaction_digest"]}
    )
    assert consumed.status_code == 200, consumed.get_data(as_text=True)
    for _ in range(2):  # two challenges' three attempts each: failed, and the customer locked
        cid = new_challenge(api, methods=["totp"])["id"]
        for _ in range(3):
            api.post(f"/v1/challenges/{cid}/totp", {"code": wrong_code(secret, clock())})
    assert api.post("/v1/customers/cust-001/unlock").status_code == 200
    assert api.put("/v1/customers/cust-001/limits", {"transfer": {"daily": 500000}}).status_code == 200
    assert api.delete("/v1/customers/cust-001/totp").status_code == 204


def test_every_event_is_delivered_once_signed_with_its_event_id(app, api, ops, clock):
    with receiver() as got:
        secret = endpoint(ops, "core", got.url)
        with delivering(app, clock):

            def delivered_so_far() -> bool:
                return len(got.got()) >= len(trail(api)) and not deliveries(ops, "core", "pending")

            every_kind_of_event(
                api, clock, lambda: wait_until("the events so far delivered", delivered_so_far)
            )
            events = trail(api)
            wait_until("every event delivered", lambda: len(got.got()) >= len(events))
            kinds = {e["type"] for e in events}
            assert {
                "customer.phones_changed",
                "totp.enrolled",
                "challenge.verified",
                "challenge.consumed",
            } <= kinds
            assert {
                "challenge.cancelled",
                "challenge.failed_attempt",
                "customer.locked",
                "customer.unlocked",
            } <= kinds
            assert {"customer.limits_changed", "totp.removed"} <= kinds
            wait_until("nothing pending", lambda: not deliveries(ops, "core", "pending"))
        received = got.got()
    assert sorted(r.id for r in received) == sorted(e["id"] for e in events)
    by_id = {e["id"]: e for e in events}
    for one in received:
        assert signed_by(one, secret), one.headers
        assert not signed_by(one, "whsec_" + "A" * 32)
        body = one.event
        assert body == {
            "type": by_id[one.id]["type"],
            "timestamp": by_id[one.id]["at"],
            "data": by_id[one.id],
        }
        assert one.headers["content-type"] == "application/json"
    assert {d["state"] for d in deliveries(ops, "core")} == {"delivered"}


def test_patterns_choose_what_each_endpoint_gets(app, api, ops, clock):
    with receiver() as verified_only, receiver() as customers_only:
        endpoint(ops, "verified", verified_only.url, ["challenge.verified"])
        endpoint(ops, "customers", customers_only.url, ["customer.*"])
        with delivering(app, clock):
            register(api)
            secret = enrol_totp(api, clock)
            cid = new_challenge(api, methods=["totp"])["id"]
            assert (
                api.post(f"/v1/challenges/{cid}/totp", {"code": totp_code(secret, clock())}).status_code
                == 200
            )
            assert api.post("/v1/customers/cust-001/lock", {"note": "x"}).status_code == 200
            wait_until("the lock delivered", lambda: "customer.locked" in customers_only.types())
            wait_until("the verification delivered", lambda: verified_only.types() == ["challenge.verified"])
        assert set(customers_only.types()) == {"customer.phones_changed", "customer.locked"}
        assert verified_only.types() == ["challenge.verified"]


def test_a_failed_attempt_is_retried_on_schedule_with_the_same_webhook_id(app, api, ops, clock):
    with receiver() as got:
        answers = iter([500, 200])
        got.answer = lambda _r: (next(answers, 200), {}, 0.0)
        endpoint(ops, "core", got.url, ["customer.*"])
        with delivering(app, clock) as deliverer:
            register(api)
            wait_until("the first try recorded", lambda: attempts_made(deliverer, "core") == 1)
            pending = newest(ops, "core")
            assert pending["state"] == "pending" and pending["last_status"] == 500
            clock.advance(4)  # the schedule's first wait is 5 s: not yet
            assert len(got.got()) == 1
            clock.advance(1.5)
            wait_until("the retry", lambda: len(got.got()) == 2)
            wait_until("delivered", lambda: newest(ops, "core")["state"] == "delivered")
        first, second = got.got()
        assert first.id == second.id and first.body == second.body
        assert newest(ops, "core")["attempts"] == 2


def test_retry_after_makes_the_next_try_later_never_sooner(app, api, ops, clock):
    with receiver() as got:
        got.answer = lambda r: (503, {"Retry-After": "120"}, 0.0) if len(got.got()) == 1 else (200, {}, 0.0)
        endpoint(ops, "core", got.url, ["customer.*"])
        with delivering(app, clock) as deliverer:
            register(api)
            wait_until("the try recorded", lambda: attempts_made(deliverer, "core") == 1)
            clock.advance(60)  # past the schedule's 5 s, not the endpoint's 120 s
            assert newest(ops, "core")["state"] == "pending"
            assert len(got.got()) == 1
            clock.advance(61)
            wait_until("delivered after Retry-After", lambda: newest(ops, "core")["state"] == "delivered")


def test_after_the_last_try_it_is_failed_and_a_manual_retry_delivers_it(app, api, ops, clock):
    with receiver() as got:
        healthy = threading.Event()
        got.answer = lambda _r: (200 if healthy.is_set() else 500, {}, 0.0)
        endpoint(ops, "core", got.url, ["customer.*"])
        with delivering(app, clock) as deliverer:
            register(api)
            for tries in (1, 2):
                wait_until(f"try {tries} recorded", lambda t=tries: attempts_made(deliverer, "core") == t)
                clock.advance(61)
            wait_until("failed", lambda: newest(ops, "core")["state"] == "failed")
            failed = deliveries(ops, "core", "failed")[0]
            assert failed["attempts"] == 3 and failed["last_status"] == 500 and failed["last_error"]
            assert ops.get("/v1/webhooks/core").get_json()["lag_seconds"] == 0  # failed is not lag
            clock.advance(3600)
            assert len(got.got()) == 3  # nothing more by itself
            healthy.set()
            assert ops.post(f"/v1/webhooks/core/deliveries/{failed['id']}/retry").status_code == 202
            wait_until("delivered by hand", lambda: newest(ops, "core")["state"] == "delivered")
        assert len({r.id for r in got.got()}) == 1 and len(got.got()) == 4


def test_after_a_rotation_deliveries_carry_both_signatures_for_a_day(app, api, ops, clock):
    with receiver() as got:
        old = endpoint(ops, "core", got.url, ["customer.*"])
        new = ops.post("/v1/webhooks/core/rotate-secret").get_json()["secret"]
        assert new != old
        with delivering(app, clock):
            register(api)
            wait_until("delivered", lambda: len(got.got()) == 1)
            assert signed_by(got.got()[0], old) and signed_by(got.got()[0], new)
            clock.advance(86400 + 10)
            register(api, "cust-002")
            wait_until("the next delivered", lambda: len(got.got()) == 2)
            later = got.got()[1]
        assert signed_by(later, new) and not signed_by(later, old)
        assert len(later.headers["webhook-signature"].split(" ")) == 1


def test_one_stuck_endpoint_never_delays_another(app, api, ops, clock):
    release = threading.Event()
    with receiver() as stuck, receiver() as fine:
        stuck.answer = lambda _r: (200, {}, 0.0) if release.wait(30) else (500, {}, 0.0)
        endpoint(ops, "stuck", stuck.url, ["customer.*"])
        endpoint(ops, "fine", fine.url, ["customer.*"])
        try:
            with delivering(app, clock):
                for n in range(12):  # more than the stuck endpoint's pool holds at once
                    register(api, f"cust-{n:03d}")
                wait_until("every event at the healthy endpoint", lambda: len(fine.got()) == 12)
                assert len(stuck.got()) <= 4  # its own pool is full; nothing else waits on it
                release.set()
                wait_until("the stuck one catches up", lambda: len(stuck.got()) == 12)
        finally:
            release.set()


def test_a_redirect_is_not_followed(app, api, ops, clock):
    with receiver() as elsewhere, receiver() as redirecting:
        redirecting.answer = lambda _r: (307, {"Location": elsewhere.url}, 0.0)
        endpoint(ops, "core", redirecting.url, ["customer.*"])
        with delivering(app, clock) as deliverer:
            register(api)
            wait_until("the try recorded", lambda: attempts_made(deliverer, "core") == 1)
        assert elsewhere.got() == []
        assert newest(ops, "core")["last_status"] == 307
        assert "redirect" in newest(ops, "core")["last_error"]


def test_a_deleted_endpoint_gets_nothing_more(app, api, ops, clock):
    with receiver() as got:
        endpoint(ops, "core", got.url, ["customer.*"])
        with delivering(app, clock):
            register(api)
            wait_until("delivered", lambda: len(got.got()) == 1)
            assert ops.delete("/v1/webhooks/core").status_code == 204
            register(api, "cust-002")
            assert api.post("/v1/customers/cust-002/lock", {"note": "x"}).status_code == 200
            # The outbox drained (fanned out to nobody) and nothing was posted.
            store = app.extensions["authgw"].store
            wait_until("the outbox drained", lambda: store.outbox_backlog(store.keys.outboxes()) == 0)
        assert len(got.got()) == 1


def test_the_test_event_goes_whatever_the_patterns(app, ops, clock):
    with receiver() as got:
        secret = endpoint(ops, "core", got.url, ["challenge.verified"])
        with delivering(app, clock):
            assert ops.post("/v1/webhooks/core/test").status_code == 202
            wait_until("the test event", lambda: got.types() == ["webhook.test"])
        assert signed_by(got.got()[0], secret)


def test_an_event_left_unacknowledged_by_a_dead_deliverer_is_fanned_out_by_another(app, api, ops, clock):
    """A deliverer that read an outbox entry and died before fanning it out: another claims the
    entry once it has been idle long enough, and delivers it."""
    gateway = app.extensions["authgw"]
    store = gateway.store
    with receiver() as got:
        endpoint(ops, "core", got.url, ["customer.*"])
        register(api)
        store.outbox_groups(store.keys.outboxes(), "deliverers")
        dead = store.outbox_read(store.keys.outboxes(), "deliverers", "dead-one", 100)
        assert [json.dumps(f, sort_keys=True) for _, _, f in dead]  # it read the entry, then died
        with delivering(app, clock, claim_idle_seconds=0.2, sweep_seconds=0.5):
            wait_until("delivered by the other", lambda: len(got.got()) == 1)
        assert got.types() == ["customer.phones_changed"]


@pytest.mark.parametrize("store", ["fake"], indirect=True)
def test_a_2xx_that_takes_longer_than_10_seconds_in_all_is_not_a_delivery(app, api, ops, clock):
    """httpx's time-out bounds each read; an answer that dribbles in, each byte within it, is
    still judged by when it was whole (API.md: done when the endpoint answers 2xx within 10 s)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def dribble() -> None:
        while not stop.is_set():
            listener.settimeout(0.5)
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n")
                for byte in b"abc":
                    if stop.wait(4):
                        return
                    conn.sendall(bytes([byte]))

    server = threading.Thread(target=dribble, daemon=True)
    server.start()
    try:
        endpoint(ops, "slow", f"http://127.0.0.1:{port}/hook", ["customer.*"])
        with delivering(app, clock) as deliverer:
            register(api)
            wait_until("the try recorded", lambda: attempts_made(deliverer, "slow") == 1, 60)
        tried = newest(ops, "slow")
        assert tried["state"] == "pending" and tried["last_status"] == 200
        assert "10 s" in tried["last_error"]
    finally:
        stop.set()
        listener.close()
