"""Rate limits: per API client, per customer, per calling number; 429 with Retry-After."""

from __future__ import annotations

from typing import Any

import pytest

from authgw import ratelimit
from authgw.errors import RateLimited
from tests.helpers.api import assert_problem, new_challenge, register


@pytest.fixture
def settings(settings: dict[str, Any]) -> dict[str, Any]:
    return {**settings, "rate_limit_client": 8, "rate_limit_customer": 4, "rate_limit_caller": 2}


def test_a_client_over_its_limit_gets_429_with_retry_after(api: Any, other_api: Any) -> None:
    for i in range(8):
        assert api.get(f"/v1/customers/nobody-{i}").status_code == 404
    rv = api.get("/v1/customers/nobody-9")
    body = assert_problem(rv, 429, "rate_limited")
    assert "nobody" not in body["detail"]
    assert 1 <= int(rv.headers["Retry-After"]) <= 60
    # Another client's key has its own budget.
    assert other_api.get("/v1/customers/nobody-0").status_code == 404


def test_a_customer_over_its_limit_gets_429_whatever_the_route(api: Any, other_api: Any) -> None:
    register(api, "cust-001")  # 1
    challenge = new_challenge(api, "cust-001")  # 2 (the body names the customer)
    assert api.get(f"/v1/challenges/{challenge['id']}").status_code == 200  # 3 (its challenge)
    assert api.get("/v1/customers/cust-001").status_code == 200  # 4
    assert_problem(api.post(f"/v1/challenges/{challenge['id']}/cancel"), 429, "rate_limited")
    # The budget is per client and customer: another key's calls for the customer are served.
    assert other_api.get("/v1/customers/cust-001").status_code == 200
    # Other customers are not held back.
    register(api, "cust-002")


def test_refused_requests_change_nothing(api: Any) -> None:
    register(api, "cust-001")
    challenge = new_challenge(api, "cust-001")
    for _ in range(2):
        api.get("/v1/customers/cust-001")
    assert_problem(api.post(f"/v1/challenges/{challenge['id']}/cancel"), 429, "rate_limited")
    store = api.client.application.extensions["authgw"].store
    key = store.keys.for_customer("cust-001").challenge(challenge["id"])
    assert store.client.hget(key, "status") == "pending"


def test_callers_are_limited_through_the_module_api(app: Any) -> None:
    with app.app_context():
        assert ratelimit.check("caller", "+819012345678").allowed
        assert ratelimit.check("caller", "+819012345678").allowed
        decision = ratelimit.check("caller", "+819012345678")
        assert not decision.allowed and decision.retry_after >= 1
        with pytest.raises(RateLimited):
            ratelimit.limit("caller", "+819012345678")
        assert ratelimit.check("caller", "+819087654321").allowed
        with pytest.raises(ValueError):
            ratelimit.check("planet", "earth")


def test_a_zero_limit_turns_the_limit_off(app: Any, store: Any) -> None:
    from authgw.app import create_app
    from tests.helpers.settings import settings_for_tests

    quiet = create_app({**settings_for_tests(rate_limit_caller=0), "redis_client": store})
    with quiet.app_context():
        assert all(ratelimit.check("caller", "+819012345678").allowed for _ in range(50))


def test_a_totp_check_over_the_limit_is_refused_before_it_is_judged(api: Any, clock: Any) -> None:
    # The check's counters travel with its first read (the sealed secret); the judgement,
    # which counts a wrong code, runs only once they have been judged.
    from tests.helpers.api import enrol_totp, wrong_code

    register(api, "cust-001")  # 1
    secret = enrol_totp(api, clock)  # 2, 3: enrol, confirm
    challenge = new_challenge(api, "cust-001")  # 4
    rv = api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": wrong_code(secret, clock())})
    assert_problem(rv, 429, "rate_limited")
    store = api.client.application.extensions["authgw"].store
    key = store.keys.for_customer("cust-001").challenge(challenge["id"])
    assert store.client.hget(key, "attempts") == str(challenge["attempts_left"])
    assert store.client.hget(store.keys.for_customer("cust-001").customer, "failed") in (None, "0")


def test_calls_refused_before_any_store_call_are_not_counted_and_leave_nothing_held(api: Any) -> None:
    register(api, "cust-001")  # 1
    challenge = new_challenge(api, "cust-001")  # 2
    for _ in range(10):  # refused by validation: they cost the store nothing and are not counted
        assert_problem(
            api.post(f"/v1/challenges/{challenge['id']}/totp", {"pin": "123456"}), 422, "validation_error"
        )
    assert api.get(f"/v1/challenges/{challenge['id']}").status_code == 200  # 3
    assert api.get("/v1/customers/cust-001").status_code == 200  # 4
    assert_problem(api.get(f"/v1/challenges/{challenge['id']}"), 429, "rate_limited")


def test_held_counters_go_out_before_any_write_and_can_stop_it(store: Any) -> None:
    from authgw.keys import Keys
    from authgw.store import Store

    s = Store(store, "rltest")
    s.add_script("rate_limit", ratelimit.SCRIPT)
    keys = Keys("rltest").for_customer("cust-x")
    target = keys.customer
    enrol_keys = [keys.customer, keys.events, *keys.bucket_keys]  # totp_enrol.lua's KEYS
    seen: list[Any] = []

    def refuse(answers: list[Any]) -> None:
        seen.append(answers)
        raise RateLimited("client", 1)

    s.defer("rate_limit", [(["rltest:{r:a}"], [60_000]), (["rltest:{r:b}"], [60_000])], refuse)
    with pytest.raises(RateLimited):
        s.run("totp_enrol", enrol_keys, ["sealed"])
    assert [[int(c) for c, _ttl in seen[0]]] == [[1, 1]]
    assert store.hgetall(target) == {}
    # Nothing is held any more: the next write runs (and finds no customer).
    assert s.run("totp_enrol", enrol_keys, ["sealed"]) == ["customer_not_found"]
    # A read takes held counters along in its own pipeline, and their judge sees them first.
    s.defer("rate_limit", [(["rltest:{r:a}"], [60_000])], refuse)
    with pytest.raises(RateLimited):
        s.read_command("hgetall", target)
    assert int(seen[1][0][0]) == 2
