"""Delivery records through the interface the deliverer calls (``authgw.outbound.Webhooks``):
fan-out, the retry schedule, ``Retry-After``, leases, stale records, pruning, on every store,
with the test clock standing in for the store's (no test waits for time to pass)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from authgw.app import create_app
from authgw.errors import ConfigError
from authgw.outbound.deliveries import body_of
from authgw.settings import load_settings
from tests.helpers.api import Api
from tests.helpers.outbound import (
    answer,
    create,
    deliveries,
    event,
    operator,
    roles_on,
    webhook_keys,
    webhooks,
)
from tests.helpers.settings import settings_for_tests

SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
WEEK = 7 * 86400


@pytest.fixture
def settings() -> dict[str, Any]:
    return roles_on()


@pytest.fixture
def ops(app: Any) -> Api:
    return operator(app)


@pytest.fixture
def wh(app: Any, ops: Api, clock: Any) -> Any:
    """The app's Webhooks, with endpoint ``core`` taking every event, made a second ago."""
    create(ops)
    clock.advance(1)
    return webhooks(app)


def one_due(wh: Any, name: str = "core") -> Any:
    claims = wh.claim_due(name, 10, 30)
    assert len(claims) == 1, claims
    return claims[0]


# -- fan-out --------------------------------------------------------------------------------


def test_fan_out_makes_one_pending_delivery_per_matching_endpoint(app, ops, clock):
    create(ops, "all", events=["*"])
    create(ops, "customers", events=["customer.*"])
    create(ops, "verified", events=["challenge.verified"])
    create(ops, "off", events=["*"], enabled=False)
    clock.advance(1)
    wh = webhooks(app)
    assert wh.fan_out(event(wh, "challenge.verified", n=1)) == 2
    assert wh.fan_out(event(wh, "customer.locked", n=2)) == 2
    assert wh.fan_out(event(wh, "challenge.created", n=3)) == 1
    assert wh.fan_out(event(wh, "customerx.locked", n=4)) == 1
    got = {
        name: [d["type"] for d in deliveries(ops, name)] for name in ("all", "customers", "verified", "off")
    }
    assert got == {
        "all": ["customerx.locked", "challenge.created", "customer.locked", "challenge.verified"],
        "customers": ["customer.locked"],
        "verified": ["challenge.verified"],
        "off": [],
    }
    assert all(d["state"] == "pending" and d["attempts"] == 0 for d in deliveries(ops, "all"))


def test_fanning_the_same_event_out_again_makes_nothing_new(wh, ops):
    ev = event(wh)
    assert wh.fan_out(ev) == 1
    assert wh.fan_out(ev) == 0
    assert wh.fan_out(dict(ev)) == 0
    assert len(deliveries(ops)) == 1


def test_an_endpoint_made_after_the_event_is_not_sent_it(app, ops, clock):
    wh = webhooks(app)
    past = event(wh)
    clock.advance(1)
    create(ops)
    assert wh.fan_out(past) == 0
    assert deliveries(ops) == []
    assert wh.fan_out(event(wh, n=2)) == 1


def test_an_endpoint_made_in_the_same_millisecond_gets_the_event(app, ops):
    create(ops)
    wh = webhooks(app)
    assert wh.fan_out(event(wh)) == 1


def test_fan_out_with_no_endpoint_makes_nothing_and_writes_nothing(app, store):
    wh = webhooks(app)
    assert wh.fan_out(event(wh)) == 0
    assert webhook_keys(store) == set()


def test_the_body_is_the_event_wrapped_and_every_try_posts_the_same_bytes(wh, clock):
    ev = event(wh, challenge_id="ch_x", method="totp", payee_name="ﾔﾏﾀﾞ ﾀﾛｳ")
    wh.fan_out(ev)
    first = one_due(wh)
    assert first.body == body_of(ev)
    assert json.loads(first.body) == {"type": ev["type"], "timestamp": ev["at"], "data": ev}
    assert (
        first.body.encode()
        == json.dumps(
            {"type": ev["type"], "timestamp": ev["at"], "data": ev}, ensure_ascii=False, separators=(",", ":")
        ).encode()
    )
    assert first.event_id == ev["id"] and first.attempt == 1
    answer(wh, first, ok=False, status=500)
    clock.advance(5)
    second = one_due(wh)
    assert (second.delivery_id, second.body, second.attempt) == (first.delivery_id, first.body, 2)


def test_a_claim_carries_the_endpoint_as_it_is_now(wh, ops):
    wh.fan_out(event(wh))
    ops.put("/v1/webhooks/core", {"url": "https://moved.example.jp/x", "events": ["*"]})
    claimed = one_due(wh)
    assert claimed.endpoint.url == "https://moved.example.jp/x"
    assert claimed.endpoint.name == "core" and claimed.endpoint.secrets


# -- the retry schedule -------------------------------------------------------------------


def test_each_failed_try_waits_its_turn_of_the_schedule_and_the_last_fails(wh, ops, clock):
    assert wh.schedule == SCHEDULE
    wh.fan_out(event(wh))
    claimed = one_due(wh)
    for attempt, wait in enumerate(SCHEDULE, start=1):
        assert claimed.attempt == attempt
        assert answer(wh, claimed, ok=False, status=500, error="Internal Server Error") == "retry"
        (listed,) = deliveries(ops)
        assert listed["state"] == "pending" and listed["attempts"] == attempt
        assert listed["last_status"] == 500 and listed["last_error"] == "Internal Server Error"
        due = wh.next_due_ms("core")
        assert due == wh.d.now().ms + wait * 1000
        clock.advance(wait - 0.001)
        assert wh.claim_due("core", 10, 30) == []  # never sooner
        clock.advance(0.001)
        claimed = one_due(wh)
    assert claimed.attempt == len(SCHEDULE) + 1
    assert answer(wh, claimed, ok=False, status=None, error="timed out") == "failed"
    (listed,) = deliveries(ops)
    assert listed["state"] == "failed" and listed["attempts"] == 8
    assert listed["last_status"] is None and listed["last_error"] == "timed out"
    assert listed["next_attempt_at"] is None
    assert wh.next_due_ms("core") is None
    clock.advance(10 * 86400)
    assert wh.claim_due("core", 10, 30) == []


def test_a_delivered_try_is_done(wh, ops, clock):
    wh.fan_out(event(wh))
    claimed = one_due(wh)
    assert answer(wh, claimed, ok=True, status=202) == "delivered"
    (listed,) = deliveries(ops)
    assert (listed["state"], listed["attempts"], listed["last_status"]) == ("delivered", 1, 202)
    assert wh.next_due_ms("core") is None
    clock.advance(86400)
    assert wh.claim_due("core", 10, 30) == []
    # A second record of the same try changes nothing.
    assert answer(wh, claimed, ok=False, status=500) == "ignored"
    assert deliveries(ops)[0]["state"] == "delivered"


@pytest.mark.parametrize("store", ["fake"], indirect=True)
def test_the_schedule_comes_from_the_setting(store, clock):
    app = create_app({**roles_on(webhook_retry_schedule="2,3"), "redis_client": store, "clock": clock})
    create(operator(app))
    clock.advance(1)
    wh = webhooks(app)
    wh.fan_out(event(wh))
    outcomes = []
    for wait in (2, 3, 0):
        claimed = one_due(wh)
        outcomes.append(answer(wh, claimed, ok=False, status=500))
        clock.advance(wait)
    assert outcomes == ["retry", "retry", "failed"]


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [
        (60, 60),  # later than the schedule's 5 s: honoured
        (1, 5),  # sooner: the schedule's wait
        (0, 5),
        (-30, 5),
        (float("nan"), 5),
        (float("inf"), 5),
        (7.5, 7.5),
        (10**9, 86400),  # an endpoint parks a delivery for a day at most
    ],
)
def test_retry_after_makes_the_wait_longer_never_shorter(wh, clock, retry_after, wait):
    wh.fan_out(event(wh))
    claimed = one_due(wh)
    assert answer(wh, claimed, ok=False, status=429, retry_after=retry_after) == "retry"
    assert wh.next_due_ms("core") == wh.d.now().ms + int(wait * 1000)
    clock.advance(wait - 0.001)
    assert wh.claim_due("core", 10, 30) == []
    clock.advance(0.001)
    assert one_due(wh).attempt == 2


# -- leases and stale records ---------------------------------------------------------------


def test_a_claim_is_leased_and_comes_back_by_itself_when_never_recorded(wh, ops, clock):
    wh.fan_out(event(wh))
    first = one_due(wh)
    assert wh.claim_due("core", 10, 30) == []  # taken
    assert deliveries(ops)[0]["next_attempt_at"] is not None
    clock.advance(29.999)
    assert wh.claim_due("core", 10, 30) == []
    clock.advance(0.001)
    second = one_due(wh)  # the first deliverer died: another takes it
    assert second.delivery_id == first.delivery_id and second.attempt == 2
    assert deliveries(ops)[0]["last_error"] == "lease_expired"
    # The first deliverer's late record is ignored; the second's counts.
    assert answer(wh, first, ok=True, status=200) == "ignored"
    assert deliveries(ops)[0]["state"] == "pending"
    assert answer(wh, second, ok=True, status=200) == "delivered"
    assert answer(wh, first, ok=False, status=500) == "ignored"
    assert deliveries(ops)[0]["state"] == "delivered"


def test_a_lease_that_lapses_on_the_last_try_fails_the_delivery(wh, ops, clock):
    wh.fan_out(event(wh))
    for wait in SCHEDULE:
        answer(wh, one_due(wh), ok=False, status=500)
        clock.advance(wait)
    last = one_due(wh)
    assert last.attempt == 8
    clock.advance(30)
    assert wh.claim_due("core", 10, 30) == []
    (listed,) = deliveries(ops)
    assert listed["state"] == "failed" and listed["last_error"] == "lease_expired"
    assert answer(wh, last, ok=True, status=200) == "ignored"


def test_claims_take_at_most_limit_oldest_due_first(wh):
    for n in range(1, 6):
        wh.fan_out(event(wh, n=n))
    taken = wh.claim_due("core", 2, 30)
    assert len(taken) == 2
    rest = wh.claim_due("core", 10, 30)
    assert len(rest) == 3
    assert {c.delivery_id for c in taken}.isdisjoint(c.delivery_id for c in rest)
    assert wh.claim_due("core", 0, 30) == []


def test_a_record_for_an_unknown_delivery_or_endpoint_is_ignored(wh):
    wh.fan_out(event(wh))
    claimed = one_due(wh)
    assert (
        wh.record("core", "dl_" + "a" * 26, 1, ok=True, status=200, error=None, retry_after=None) == "ignored"
    )
    assert answer(wh, claimed, "nobody", ok=True, status=200) == "ignored"
    assert wh.record("core", claimed.delivery_id, 2, ok=True, status=200, error=None, retry_after=None) == (
        "ignored"
    )


def test_an_error_is_kept_printable_and_short(wh, ops):
    wh.fan_out(event(wh))
    answer(wh, one_due(wh), ok=False, error="bad\r\nline\x00" + "x" * 500)
    error = deliveries(ops)[0]["last_error"]
    assert error.isprintable() and len(error) == 200 and error.startswith("bad  line ")


# -- disabled, deleted, made again ----------------------------------------------------------


def test_a_disabled_endpoint_keeps_its_deliveries_waiting(wh, ops):
    wh.fan_out(event(wh))
    ops.put("/v1/webhooks/core", {"url": "https://bank.example.jp/x", "events": ["*"], "enabled": False})
    assert wh.claim_due("core", 10, 30) == []
    assert wh.next_due_ms("core") is None
    assert wh.fan_out(event(wh, n=2)) == 0
    ops.put("/v1/webhooks/core", {"url": "https://bank.example.jp/x", "events": ["*"]})
    assert wh.next_due_ms("core") is not None
    assert len(wh.claim_due("core", 10, 30)) == 1


def test_nothing_is_claimed_for_an_endpoint_that_does_not_exist(app):
    wh = webhooks(app)
    assert wh.claim_due("nobody", 10, 30) == []
    assert wh.next_due_ms("nobody") is None


def test_delete_then_put_of_the_same_name_never_brings_old_deliveries_back(wh, ops, store, clock):
    old_event = event(wh)
    wh.fan_out(old_event)
    claimed = one_due(wh)  # a deliverer is posting it as the endpoint goes
    clock.advance(1)
    assert ops.delete("/v1/webhooks/core").status_code == 204
    made_again = create(ops)
    # The late record finds nothing; the new endpoint has nothing of the old one's.
    assert answer(wh, claimed, ok=False, status=500) == "ignored"
    assert deliveries(ops) == []
    assert wh.claim_due("core", 10, 30) == []
    # The old event is older than the endpoint now named core: it is not sent to it.
    assert wh.fan_out(old_event) == 0
    assert wh.endpoints()[0].secrets == (made_again["secret"],)
    assert wh.fan_out(event(wh, n=2)) == 1
    assert [d["attempts"] for d in deliveries(ops)] == [0]


# -- kept 7 days ---------------------------------------------------------------------------


def test_finished_deliveries_stay_listed_7_days_then_go(wh, ops, store, clock):
    wh.fan_out(event(wh, n=1))
    answer(wh, one_due(wh), ok=True, status=200)
    clock.advance(WEEK - 1)
    wh.fan_out(event(wh, n=2))
    answer(wh, one_due(wh), ok=True, status=200)  # finishing another prunes the old ones
    assert len(deliveries(ops)) == 2
    clock.advance(1)
    wh.fan_out(event(wh, n=3))
    answer(wh, one_due(wh), ok=True, status=200)
    listed = [d["event_id"] for d in deliveries(ops)]
    assert len(listed) == 2 and all(not i.endswith("-1") for i in listed)
    records = store.hgetall(wh.store.keys.webhook("core").records)
    assert len(records) == 3  # two deliveries and the creation counter


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["", "5,,300", "5;300", "-5", "0", "1.5", "５", "x", ",".join(["1"] * 51), "700000"]
)
def test_a_bad_retry_schedule_stops_start_up_naming_it(raw):
    with pytest.raises(ConfigError) as caught:
        load_settings(settings_for_tests(webhook_retry_schedule=raw), environ={})
    assert caught.value.name == "AUTHGW_WEBHOOK_RETRY_SCHEDULE"


def test_the_retry_schedule_and_allow_http_are_read_from_the_environment():
    env = {"AUTHGW_WEBHOOK_RETRY_SCHEDULE": "1, 2,3", "AUTHGW_WEBHOOK_ALLOW_HTTP": "1"}
    settings = load_settings(settings_for_tests(), environ=env)
    assert settings.webhook_retry_schedule == (1, 2, 3) and settings.webhook_allow_http
    defaults = load_settings(settings_for_tests(), environ={})
    assert defaults.webhook_retry_schedule == SCHEDULE and not defaults.webhook_allow_http
