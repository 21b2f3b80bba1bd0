"""Limits per customer and kind (API.md Additions, "Limits and step-up"), over HTTP.

Every test runs on each store of the ``store`` fixture (fakeredis, a real redis-server, a real
Cluster) unless it races (real threads against the real redis-server). The clock is injected:
it stands in for the store's ``TIME`` too, so the day boundary and the raise delay are moved by
hand.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from authgw.app import create_app
from tests.helpers.api import (
    Api,
    assert_problem,
    enrol_totp,
    field_errors,
    register,
    totp_code,
    transfer,
    wrong_code,
)
from tests.helpers.settings import Clock, settings_for_tests

DAILY = 1_000_000
PAYEASY_PAYEE = {
    "biller_number": "12345",
    "customer_number": "98765432101234567890",
    "confirmation_number": "123456",
    "name": "ｺｸｾｲﾁｮｳ",
}


@pytest.fixture
def settings() -> dict[str, Any]:
    return settings_for_tests(limit_transfer_daily=DAILY, limit_payeasy_per_transaction=300_000)


@pytest.fixture
def customer(api: Api, clock: Clock) -> str:
    """A registered customer with TOTP (so challenges need no designated number); its secret."""
    register(api)
    return enrol_totp(api, clock)


def create(api: Api, amount: int, **overrides: Any) -> Any:
    return api.post("/v1/challenges", transfer(amount=amount, methods=["totp"], **overrides))


def created(api: Api, amount: int, **overrides: Any) -> dict[str, Any]:
    rv = create(api, amount, **overrides)
    assert rv.status_code == 201, rv.get_data(as_text=True)
    return rv.get_json()


def limits(api: Api, customer_id: str = "cust-001") -> dict[str, Any]:
    rv = api.get(f"/v1/customers/{customer_id}/limits")
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return rv.get_json()


def used(api: Api, kind: str = "transfer") -> int:
    return int(limits(api)[kind]["used_today"])


def put_limits(api: Api, body: Any, customer_id: str = "cust-001") -> dict[str, Any]:
    rv = api.put(f"/v1/customers/{customer_id}/limits", body)
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return rv.get_json()


def limit_events(api: Api) -> list[dict[str, Any]]:
    rv = api.get("/v1/customers/cust-001/events?limit=100")
    return [e for e in rv.get_json()["events"] if e["type"] == "customer.limits_changed"]


# -- the limits object and its calls ------------------------------------------------------


def test_limits_object_shows_the_defaults_and_no_usage(api: Api, customer: str) -> None:
    assert limits(api) == {
        "transfer": {"per_transaction": 0, "daily": DAILY, "used_today": 0},
        "payeasy": {"per_transaction": 300_000, "daily": 0, "used_today": 0},
        "pending_raises": [],
    }


def test_limits_of_an_unknown_customer_are_not_found(api: Api) -> None:
    assert_problem(api.get("/v1/customers/nobody/limits"), 404, "customer_not_found")
    assert_problem(
        api.put("/v1/customers/nobody/limits", {"transfer": {"daily": 5}}), 404, "customer_not_found"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"transfer": {"daily": "100"}}, "transfer.daily"),
        ({"transfer": {"daily": 1.0}}, "transfer.daily"),
        ({"transfer": {"daily": True}}, "transfer.daily"),
        ({"transfer": {"daily": -1}}, "transfer.daily"),
        ({"transfer": {"weekly": 5}}, "transfer.weekly"),
        ({"wire": {"daily": 5}}, "wire"),
        ({"transfer": None}, "transfer"),
        ({"transfer": [1]}, "transfer"),
    ],
)
def test_bad_limits_are_refused_and_change_nothing(api: Api, customer: str, body: Any, field: str) -> None:
    rv = api.put("/v1/customers/cust-001/limits", body)
    assert_problem(rv, 422, "validation_error")
    assert field in field_errors(rv)
    assert limits(api)["transfer"]["daily"] == DAILY
    assert limit_events(api) == []


def test_a_lowering_applies_at_once_and_writes_an_event_naming_the_client(api: Api, customer: str) -> None:
    out = put_limits(api, {"transfer": {"daily": 500_000}})
    assert out["transfer"] == {"per_transaction": 0, "daily": 500_000, "used_today": 0}
    assert out["payeasy"]["per_transaction"] == 300_000  # a kind left out is unchanged
    assert out["pending_raises"] == []
    (event,) = limit_events(api)
    assert event["by"] == "corebank"
    assert (event["kind"], event["field"], event["previous"], event["value"]) == (
        "transfer",
        "daily",
        DAILY,
        500_000,
    )
    # From no limit to a number is a lowering too.
    out = put_limits(api, {"transfer": {"per_transaction": 200_000}})
    assert out["transfer"]["per_transaction"] == 200_000
    assert out["transfer"]["daily"] == 500_000  # a field left out is unchanged


def test_null_returns_to_the_default(api: Api, customer: str) -> None:
    put_limits(api, {"transfer": {"daily": 500_000}})
    assert put_limits(api, {"transfer": {"daily": None}})["transfer"]["daily"] == DAILY


@pytest.fixture
def delayed(settings: dict[str, Any]) -> None:
    settings["limit_raise_delay_seconds"] = 86400


@pytest.mark.usefixtures("delayed")
def test_a_raise_waits_the_delay(api: Api, customer: str, clock: Clock) -> None:
    out = put_limits(api, {"transfer": {"daily": 2_000_000}})
    assert out["transfer"]["daily"] == DAILY
    (waiting,) = out["pending_raises"]
    assert waiting["kind"] == "transfer" and waiting["field"] == "daily" and waiting["value"] == 2_000_000
    (event,) = limit_events(api)
    assert event["effective_at"] == waiting["effective_at"] and event["by"] == "corebank"
    created(api, 900_000)
    assert_problem(create(api, 200_000), 422, "limit_exceeded")
    clock.advance(86400 - 1)
    assert limits(api)["transfer"]["daily"] == DAILY
    clock.advance(1)
    out = limits(api)
    assert out["transfer"]["daily"] == 2_000_000 and out["pending_raises"] == []
    created(api, 200_000)


@pytest.mark.usefixtures("delayed")
def test_a_raise_to_no_limit_waits_too_and_a_lowering_drops_it(api: Api, customer: str, clock: Clock) -> None:
    out = put_limits(api, {"transfer": {"daily": 0}})
    assert out["transfer"]["daily"] == DAILY
    assert [r["value"] for r in out["pending_raises"]] == [0]
    out = put_limits(api, {"transfer": {"daily": 400_000}})
    assert out["transfer"]["daily"] == 400_000 and out["pending_raises"] == []
    clock.advance(2 * 86400)
    assert limits(api)["transfer"]["daily"] == 400_000


# -- judging at creation ------------------------------------------------------------------


def test_per_transaction_is_judged_first(api: Api, customer: str) -> None:
    put_limits(api, {"transfer": {"per_transaction": 500_000}})
    body = assert_problem(create(api, 2_000_000), 422, "limit_exceeded")
    assert (body["limit_kind"], body["limit"], body["used"], body["remaining"]) == (
        "per_transaction",
        500_000,
        0,
        500_000,
    )
    assert used(api) == 0


def test_the_daily_limit_counts_today_and_refuses_what_would_pass_it(api: Api, customer: str) -> None:
    created(api, 600_000)
    created(api, 300_000)
    assert used(api) == 900_000
    body = assert_problem(create(api, 100_001), 422, "limit_exceeded")
    assert (body["limit_kind"], body["limit"], body["used"], body["remaining"]) == (
        "daily",
        DAILY,
        900_000,
        100_000,
    )
    assert used(api) == 900_000  # a refusal books nothing
    created(api, 100_000)
    assert used(api) == DAILY


def test_kinds_have_limits_of_their_own(api: Api, customer: str) -> None:
    created(api, DAILY)
    payeasy = {"kind": "payeasy", "payee": PAYEASY_PAYEE}
    body = assert_problem(create(api, 300_001, **payeasy), 422, "limit_exceeded")
    assert body["limit_kind"] == "per_transaction"
    created(api, 300_000, **payeasy)
    assert used(api, "payeasy") == 300_000 and used(api) == DAILY


def test_a_consumed_challenge_keeps_counting(api: Api, customer: str, clock: Clock) -> None:
    ch = created(api, 700_000)
    rv = api.post(f"/v1/challenges/{ch['id']}/totp", {"code": totp_code(customer, clock())})
    assert rv.status_code == 200, rv.get_data(as_text=True)
    rv = api.post(f"/v1/challenges/{ch['id']}/consume", {"transaction_digest": ch["transaction_digest"]})
    assert rv.status_code == 200, rv.get_data(as_text=True)
    clock.advance(1000)  # past its expires_at
    assert used(api) == 700_000
    assert_problem(create(api, 300_001), 422, "limit_exceeded")


def test_a_cancelled_challenge_stops_counting(api: Api, customer: str) -> None:
    ch = created(api, DAILY)
    assert api.post(f"/v1/challenges/{ch['id']}/cancel").status_code == 200
    assert used(api) == 0
    created(api, DAILY)


def test_a_failed_challenge_stops_counting(api: Api, customer: str, clock: Clock) -> None:
    ch = created(api, DAILY)
    for _ in range(3):
        rv = api.post(f"/v1/challenges/{ch['id']}/totp", {"code": wrong_code(customer, clock())})
        assert_problem(rv, 422, "invalid_code")
    assert api.get(f"/v1/challenges/{ch['id']}").get_json()["status"] == "failed"
    assert used(api) == 0
    created(api, DAILY)


def test_an_expiry_nobody_touched_stops_counting(api: Api, customer: str, clock: Clock) -> None:
    created(api, DAILY, ttl_seconds=60)
    clock.advance(59)
    assert_problem(create(api, 1), 422, "limit_exceeded")
    clock.advance(1)
    # Nothing read or settled the challenge: the check itself does not count it.
    created(api, DAILY)


def test_a_verified_challenge_not_consumed_in_time_stops_counting(
    api: Api, customer: str, clock: Clock
) -> None:
    ch = created(api, DAILY, ttl_seconds=60)
    rv = api.post(f"/v1/challenges/{ch['id']}/totp", {"code": totp_code(customer, clock())})
    assert rv.status_code == 200
    assert used(api) == DAILY
    clock.advance(60)
    assert used(api) == 0


def test_the_day_is_the_calendar_day_in_tokyo(api: Api, customer: str, clock: Clock) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    # 23:59:59 JST is 14:59:59 UTC: a day in UTC would not end here.
    clock.now = datetime(2026, 12, 24, 23, 59, 59, tzinfo=tokyo).timestamp()
    ch = created(api, DAILY)
    assert_problem(create(api, 1), 422, "limit_exceeded")
    # It was verified and consumed: it counts for the rest of its day, and not the next.
    rv = api.post(f"/v1/challenges/{ch['id']}/totp", {"code": totp_code(customer, clock())})
    assert rv.status_code == 200
    rv = api.post(f"/v1/challenges/{ch['id']}/consume", {"transaction_digest": ch["transaction_digest"]})
    assert rv.status_code == 200
    assert used(api) == DAILY
    clock.advance(1)  # 00:00:00 JST
    assert used(api) == 0
    created(api, DAILY)


def test_a_challenge_of_yesterday_still_pending_counts_for_yesterday_only(
    api: Api, customer: str, clock: Clock
) -> None:
    clock.now = datetime(2026, 12, 24, 23, 58, 0, tzinfo=ZoneInfo("Asia/Tokyo")).timestamp()
    created(api, DAILY)
    clock.advance(120)  # 00:00:00 JST, the challenge still pending
    assert used(api) == 0
    created(api, DAILY)


@pytest.fixture
def utc(settings: dict[str, Any]) -> None:
    settings["timezone"] = "UTC"


@pytest.mark.usefixtures("utc")
def test_the_timezone_setting_moves_the_boundary(api: Api, customer: str, clock: Clock) -> None:
    clock.now = datetime(2026, 12, 24, 23, 59, 59, tzinfo=ZoneInfo("UTC")).timestamp()
    created(api, DAILY)
    clock.advance(1)
    assert used(api) == 0


def test_usage_lives_in_the_customers_slot(api: Api, customer: str, store: Any) -> None:
    from tests.helpers.stores import every_key

    created(api, 100)
    tags = {key.split("{", 1)[1].split("}", 1)[0] for key in every_key(store) if ":c:" in key}
    assert len(tags) == 1


# -- races (real threads, the real redis-server) ----------------------------------------


def race(app: Any, calls: list[Any]) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        api = Api(app.test_client())
        try:
            barrier.wait(timeout=30)
            results[i] = calls[i](api)
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def enrolled(store: Any, clock: Clock, settings: dict[str, Any]) -> tuple[Any, Api]:
    """An app on ``store`` and its API, with cust-001 registered and enrolled in TOTP."""
    app = create_app({**settings, "redis_client": store, "clock": clock})
    api = Api(app.test_client())
    register(api)
    enrol_totp(api, clock)
    return app, api


@pytest.mark.real_redis
def test_thirty_racing_creations_pass_the_daily_limit_exactly_ten_times(
    real_store: Any, clock: Clock, settings: dict[str, Any]
) -> None:
    app, api = enrolled(real_store, clock, settings)
    results = race(app, [lambda a: create(a, 100_000) for _ in range(30)])
    statuses = sorted(rv.status_code for rv in results)
    assert statuses.count(201) == 10 and statuses.count(422) == 20
    assert all(rv.get_json()["code"] == "limit_exceeded" for rv in results if rv.status_code == 422)
    assert used(api) == DAILY


@pytest.mark.real_redis
def test_racing_cancels_and_creations_never_let_usage_drift(
    real_store: Any, clock: Clock, settings: dict[str, Any]
) -> None:
    app, api = enrolled(real_store, clock, settings)
    first = [created(api, 100_000) for _ in range(8)]

    def cancel(ch: dict[str, Any]) -> Any:
        return lambda a: a.post(f"/v1/challenges/{ch['id']}/cancel")

    results = race(app, [cancel(ch) for ch in first] + [lambda a: create(a, 100_000) for _ in range(12)])
    live = [rv.get_json() for rv in results[8:] if rv.status_code == 201]
    assert all(rv.status_code == 200 for rv in results[:8])
    assert 2 <= len(live) <= 10
    assert used(api) == 100_000 * len(live)
