"""Every transition happens at most once, however many requests race for it (API.md).

Real threads against the suite's real redis-server: each thread has its own test client, and
a ``threading.Barrier`` releases them together so the requests truly overlap in Redis.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import phone
from tests.helpers.api import Api, enrol_totp, new_challenge, register, totp_code, transfer, wrong_code
from tests.helpers.settings import CALLBACK_NUMBERS, settings_for_tests

pytestmark = pytest.mark.real_redis


def race(app: Any, calls: list[Callable[[Api], Any]]) -> list[Any]:
    """Run each call in its own thread with its own client, all released at once."""
    return phone.race([functools.partial(_on_own_client, app, call) for call in calls])


def _on_own_client(app: Any, call: Callable[[Api], Any]) -> Any:
    return call(Api(app.test_client()))


def outcome(rv: Any) -> tuple[int, str]:
    body = rv.get_json()
    return rv.status_code, body.get("code", body.get("status"))


def events(api: Api, customer_id: str = "cust-001") -> list[dict[str, Any]]:
    return api.get(f"/v1/customers/{customer_id}/events?limit=100").get_json()["events"]


@pytest.fixture
def api(real_app: Any) -> Api:
    return Api(real_app.test_client())


def race_codes(
    app: Any, api: Api, clock: Any, code: Callable[[str, float], str], each: int
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Three TOTP challenges of one enrolled customer, each sent ``code`` (computed now from the
    secret) ``each`` times, all at once; the answers and the challenges."""
    register(api)
    secret = enrol_totp(api, clock)
    challenges = [new_challenge(api, methods=["totp"]) for _ in range(3)]
    sent = code(secret, clock())
    calls = [_post_code(c["id"], sent) for c in challenges for _ in range(each)]
    return race(app, calls), challenges


def _post_code(challenge_id: str, code: str) -> Callable[[Api], Any]:
    return lambda api: api.post(f"/v1/challenges/{challenge_id}/totp", {"code": code})


def test_fifty_consumers_of_one_verified_challenge_yield_exactly_one_success(real_app, api, clock):
    register(api)
    secret = enrol_totp(api, clock)
    challenge = new_challenge(api, methods=["totp"])
    assert (
        api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": totp_code(secret, clock())}).status_code
        == 200
    )
    body = {"transaction_digest": challenge["transaction_digest"]}

    results = race(real_app, [lambda a: a.post(f"/v1/challenges/{challenge['id']}/consume", body)] * 50)

    tally = Counter(outcome(rv) for rv in results)
    assert tally == {(200, "consumed"): 1, (409, "already_consumed"): 49}
    assert [e["type"] for e in events(api)].count("challenge.consumed") == 1


@pytest.mark.parametrize("settings", [settings_for_tests(lockout_threshold=100, challenge_attempts=10)])
def test_racing_wrong_codes_never_lose_a_failure_count(real_app, api, clock, settings):
    results, challenges = race_codes(real_app, api, clock, wrong_code, each=12)

    refused = [rv for rv in results if rv.status_code == 422]
    assert all(outcome(rv) == (422, "invalid_code") for rv in refused)
    # Every attempt a challenge had was spent exactly once: 10 each, no more, none lost.
    assert len(refused) == 30
    assert Counter(outcome(rv) for rv in results if rv.status_code != 422) == {
        (409, "challenge_not_pending"): 6
    }
    for challenge in challenges:
        lefts = sorted(
            rv.get_json()["attempts_left"]
            for rv, call_for in zip(results, [c for c in challenges for _ in range(12)], strict=True)
            if call_for is challenge and rv.status_code == 422
        )
        assert lefts == list(range(10)), "each attempt counted once, in turn"
        assert api.get(f"/v1/challenges/{challenge['id']}").get_json()["status"] == "failed"
    customer = api.get("/v1/customers/cust-001").get_json()
    assert customer["failed_attempts"] == len(refused)
    assert customer["locked"] is False
    assert [e["type"] for e in events(api)].count("challenge.failed_attempt") == 30


def test_racing_wrong_codes_lock_at_the_threshold_exactly(real_app, api, clock):
    results, _challenges = race_codes(real_app, api, clock, wrong_code, each=10)

    tally = Counter(outcome(rv) for rv in results)
    # Six failures are counted, the sixth locks, and nothing is counted after the lock.
    assert tally[(422, "invalid_code")] == 6
    assert set(tally) <= {(422, "invalid_code"), (423, "customer_locked"), (409, "challenge_not_pending")}
    customer = api.get("/v1/customers/cust-001").get_json()
    assert customer["failed_attempts"] == 6
    assert customer["locked"] is True
    types = [e["type"] for e in events(api)]
    assert types.count("customer.locked") == 1
    assert types.count("challenge.failed_attempt") == 6


@pytest.mark.parametrize("round_", range(5))
def test_one_totp_code_raced_on_several_challenges_verifies_one(real_app, api, clock, round_):
    results, challenges = race_codes(real_app, api, clock, totp_code, each=4)

    tally = Counter(outcome(rv) for rv in results)
    assert tally[(200, "verified")] == 1
    assert set(tally) <= {(200, "verified"), (422, "invalid_code"), (409, "challenge_not_pending")}
    statuses = [api.get(f"/v1/challenges/{c['id']}").get_json()["status"] for c in challenges]
    assert statuses.count("verified") == 1


def test_verify_and_cancel_racing_on_one_challenge_settle_it_once(real_app, api, clock):
    register(api)
    secret = enrol_totp(api, clock)
    for _ in range(5):
        clock.advance(30)
        challenge = new_challenge(api, methods=["totp"])
        code = totp_code(secret, clock())
        results = race(
            real_app,
            [
                lambda a: a.post(f"/v1/challenges/{challenge['id']}/totp", {"code": code}),  # noqa: B023
                lambda a: a.post(f"/v1/challenges/{challenge['id']}/cancel"),  # noqa: B023
            ],
        )
        verified, cancelled = (rv.status_code == 200 for rv in results)
        assert verified != cancelled, [rv.get_json() for rv in results]
        final = api.get(f"/v1/challenges/{challenge['id']}").get_json()["status"]
        assert final == ("verified" if verified else "cancelled")


def test_concurrent_creations_with_one_idempotency_key_create_one_challenge(real_app, api):
    register(api)
    results = race(
        real_app,
        [lambda a: a.post("/v1/challenges", transfer(), headers={"Idempotency-Key": "order-77"})] * 20,
    )
    assert {rv.status_code for rv in results} == {201}
    assert len({rv.get_json()["id"] for rv in results}) == 1
    assert [e["type"] for e in events(api)].count("challenge.created") == 1


def test_one_idempotency_key_raced_with_different_bodies_creates_one_challenge(real_app, api):
    register(api)
    calls = [
        lambda a, amount=amount: a.post(
            "/v1/challenges", transfer(amount=amount), headers={"Idempotency-Key": "order-88"}
        )
        for amount in range(1000, 1010)
    ]
    results = race(real_app, calls)
    tally = Counter(outcome(rv) for rv in results)
    assert tally == {(201, "pending"): 1, (409, "idempotency_conflict"): 9}
    assert [e["type"] for e in events(api)].count("challenge.created") == 1


def test_a_burst_of_creations_on_a_full_number_pool_binds_each_number_once(real_app, api):
    # Three designated numbers, twenty-four callback-only creations at once: three get a
    # number each, the rest are refused (no live number is taken from a pending challenge).
    # None may fail for the race (it once gave 503 store_unavailable).
    register(api)
    results = race(real_app, [lambda a: a.post("/v1/challenges", transfer())] * 24)
    assert Counter(outcome(rv) for rv in results) == {(201, "pending"): 3, (422, "method_unavailable"): 21}
    made = [rv.get_json() for rv in results if rv.status_code == 201]
    assert sorted(c["callback"]["number"] for c in made) == sorted(CALLBACK_NUMBERS)
    statuses = Counter(api.get(f"/v1/challenges/{c['id']}").get_json()["status"] for c in made)
    assert statuses == {"pending": 3}
    assert [e for e in events(api) if e["type"] == "challenge.cancelled"] == []


def test_concurrent_creations_take_distinct_designated_numbers(real_app, api):
    register(api)
    results = race(real_app, [lambda a: a.post("/v1/challenges", transfer())] * 3)
    assert {rv.status_code for rv in results} == {201}
    numbers = [rv.get_json()["callback"]["number"] for rv in results]
    assert len(set(numbers)) == 3


def test_deleting_a_customer_while_challenges_are_created_leaves_none_pending(real_app, api, clock):
    register(api)
    enrol_totp(api, clock)  # twelve creations, three numbers: the rest go without callback
    calls = [lambda a: a.post("/v1/challenges", transfer())] * 12
    calls.insert(6, lambda a: a.delete("/v1/customers/cust-001"))

    results = race(real_app, calls)

    assert results[6].status_code == 204
    created = [rv.get_json()["id"] for i, rv in enumerate(results) if i != 6 and rv.status_code == 201]
    refused = [rv for i, rv in enumerate(results) if i != 6 and rv.status_code != 201]
    assert {outcome(rv) for rv in refused} <= {(404, "customer_not_found")}, [rv.get_json() for rv in refused]
    # Whatever was created before the deletion was cancelled by it; nothing is left pending.
    for challenge_id in created:
        assert api.get(f"/v1/challenges/{challenge_id}").get_json()["status"] == "cancelled"


@pytest.mark.parametrize("round_", range(3))
def test_a_confirmation_racing_a_burst_of_enrolments_is_judged_not_refused(real_app, api, clock, round_):
    register(api)
    secret = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    code = totp_code(secret, clock())
    calls: list[Callable[[Api], Any]] = [lambda a: a.post("/v1/customers/cust-001/totp")] * 16
    calls.append(lambda a: a.post("/v1/customers/cust-001/totp/confirm", {"code": code}))

    results = race(real_app, calls)

    assert all(rv.status_code == 201 for rv in results[:-1])
    # Right for the secret it was made with, or wrong for the one that replaced it: never a
    # 503 from a healthy store.
    confirmation = results[-1]
    assert confirmation.status_code in (200, 422), confirmation.get_json()
    if confirmation.status_code == 422:
        assert outcome(confirmation) == (422, "invalid_code")
