"""Locks (API.md Additions, "Locks and fraud response"): the lock object, the operator's lock,
consumption refused while locked, lockout modes driven by the injected clock.

Every test runs over HTTP on each store of the ``store`` fixture (fakeredis, a real
redis-server, a real Cluster); the bursts run real threads against the real redis-server.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from authgw.app import create_app
from tests.helpers.api import (
    Api,
    assert_problem,
    enrol_totp,
    new_challenge,
    register,
    totp_code,
    transfer,
    wrong_code,
)
from tests.helpers.phone import PHONE, Phone, events, of_type, race, twiml, verbs
from tests.helpers.settings import Clock, settings_for_tests


def make_api(store: Any, clock: Clock, **settings: Any) -> Api:
    return Api(
        create_app({**settings_for_tests(**settings), "redis_client": store, "clock": clock}).test_client()
    )


def customer(api: Api, customer_id: str = "cust-001") -> dict[str, Any]:
    rv = api.get(f"/v1/customers/{customer_id}")
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return rv.get_json()


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def wrong_totp(api: Api, clock: Clock, secret: str, challenge: dict[str, Any]) -> Any:
    return api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": wrong_code(secret, clock())})


def lock_by_failures(api: Api, clock: Clock, secret: str, threshold: int = 6) -> list[int]:
    """Wrong TOTP codes until the customer is locked; returns each answer's failures_before_lock."""
    left = []
    challenge = new_challenge(api, methods=["totp"])
    for _ in range(threshold):
        rv = wrong_totp(api, clock, secret, challenge)
        body = assert_problem(rv, 422, "invalid_code")
        left.append(body["failures_before_lock"])
        if body["attempts_left"] == 0 and body["failures_before_lock"]:
            challenge = new_challenge(api, methods=["totp"])
    return left


@pytest.fixture
def secret(api: Api, clock: Clock) -> str:
    register(api)
    return enrol_totp(api, clock)


# -- the lock object ----------------------------------------------------------------------


def test_an_unlocked_customer_has_no_lock(api):
    register(api)
    body = customer(api)
    assert body["locked"] is False and body["lock"] is None


def test_a_lock_by_failures_names_its_reason_and_no_author(api, clock, secret):
    assert lock_by_failures(api, clock, secret) == [5, 4, 3, 2, 1, 0]
    body = customer(api)
    assert body["locked"] is True
    assert body["lock"] == {"reason": "failures", "at": body["lock"]["at"], "until": None, "by": None}
    locked = of_type(api, "customer.locked")
    assert len(locked) == 1
    assert locked[0]["reason"] == "failures" and locked[0]["until"] is None and locked[0]["by"] is None


def test_failures_before_lock_counts_down_on_enrolment_confirmations_too(api, clock):
    register(api)
    rv = api.post("/v1/customers/cust-001/totp")
    secret = rv.get_json()["secret"]
    rv = api.post("/v1/customers/cust-001/totp/confirm", {"code": wrong_code(secret, clock())})
    assert assert_problem(rv, 422, "invalid_code")["failures_before_lock"] == 5


# -- any lock stops money -----------------------------------------------------------------


def test_a_verified_challenge_is_not_consumed_while_locked_and_is_after_an_unlock(api, clock, secret):
    verified = new_challenge(api, methods=["totp"])
    rv = api.post(f"/v1/challenges/{verified['id']}/totp", {"code": totp_code(secret, clock())})
    assert rv.get_json()["status"] == "verified"
    clock.advance(30)
    lock_by_failures(api, clock, secret)
    digest = {"transaction_digest": verified["transaction_digest"]}
    assert_problem(api.post(f"/v1/challenges/{verified['id']}/consume", digest), 423, "customer_locked")
    assert api.get(f"/v1/challenges/{verified['id']}").get_json()["status"] == "verified"
    assert_problem(api.post("/v1/challenges", transfer()), 423, "customer_locked")
    assert api.post("/v1/customers/cust-001/unlock").status_code == 200
    rv = api.post(f"/v1/challenges/{verified['id']}/consume", digest)
    assert rv.status_code == 200 and rv.get_json()["status"] == "consumed"


def test_a_consume_of_a_locked_customers_challenge_writes_nothing(api, clock, secret, store):
    verified = new_challenge(api, methods=["totp"])
    api.post(f"/v1/challenges/{verified['id']}/totp", {"code": totp_code(secret, clock())})
    clock.advance(30)
    lock_by_failures(api, clock, secret)
    before = events(api)
    digest = {"transaction_digest": verified["transaction_digest"]}
    for _ in range(3):
        assert_problem(api.post(f"/v1/challenges/{verified['id']}/consume", digest), 423, "customer_locked")
    assert events(api) == before


# -- the operator's lock ------------------------------------------------------------------


def test_operator_lock_locks_with_reason_operator_and_the_client_as_author(api, clock):
    register(api)
    rv = api.post("/v1/customers/cust-001/lock", {"note": "本人より電話: 不審な振込"})
    assert rv.status_code == 200, rv.get_data(as_text=True)
    body = rv.get_json()
    assert body["locked"] is True
    assert body["lock"]["reason"] == "operator" and body["lock"]["by"] == "corebank"
    assert body["lock"]["until"] is None and body["lock"]["at"]
    assert customer(api) == body
    locked = of_type(api, "customer.locked")[-1]
    assert locked["reason"] == "operator" and locked["by"] == "corebank"
    assert locked["note"] == "本人より電話: 不審な振込" and locked["until"] is None
    assert_problem(api.post("/v1/challenges", transfer()), 423, "customer_locked")
    rv = api.post("/v1/customers/cust-001/unlock")
    assert rv.get_json()["lock"] is None
    assert of_type(api, "customer.unlocked")[-1]["by"] == "corebank"


def test_operator_lock_takes_no_body_or_a_note(api):
    register(api)
    assert api.post("/v1/customers/cust-001/lock").status_code == 200
    assert api.post("/v1/customers/cust-001/lock", {}).status_code == 200
    assert "note" not in of_type(api, "customer.locked")[-1]


@pytest.mark.parametrize(
    "body",
    [
        {"note": "x" * 501},
        {"note": 5},
        {"reason": "operator"},
        {"note": "ok", "by": "someone"},
        {"note": "nul\x00here"},  # control characters are refused in a note as in a payee
        {"note": "line\u2028break"},
    ],
)
def test_operator_lock_refuses_a_bad_body_and_writes_nothing(api, body):
    register(api)
    assert_problem(api.post("/v1/customers/cust-001/lock", body), 422, "validation_error")
    assert customer(api)["locked"] is False
    assert not of_type(api, "customer.locked")


def test_operator_lock_of_an_unknown_customer_is_404(api):
    assert_problem(api.post("/v1/customers/nobody/lock", {}), 404, "customer_not_found")
    assert_problem(api.post("/v1/customers/bad%20id/lock", {}), 404, "customer_not_found")


def test_operator_lock_cancels_every_pending_and_verified_challenge(api, clock, secret):
    pending = new_challenge(api)
    verified = new_challenge(api, methods=["totp"])
    api.post(f"/v1/challenges/{verified['id']}/totp", {"code": totp_code(secret, clock())})
    consumed = new_challenge(api, methods=["totp"])
    clock.advance(30)
    api.post(f"/v1/challenges/{consumed['id']}/totp", {"code": totp_code(secret, clock())})
    api.post(
        f"/v1/challenges/{consumed['id']}/consume", {"transaction_digest": consumed["transaction_digest"]}
    )
    assert api.post("/v1/customers/cust-001/lock", {}).status_code == 200
    for challenge in (pending, verified):
        assert api.get(f"/v1/challenges/{challenge['id']}").get_json()["status"] == "cancelled"
    assert api.get(f"/v1/challenges/{consumed['id']}").get_json()["status"] == "consumed"
    cancelled = of_type(api, "challenge.cancelled")
    assert {e["challenge_id"] for e in cancelled} == {pending["id"], verified["id"]}
    assert {e["reason"] for e in cancelled} == {"customer_locked"}
    # Unlocking does not bring them back: the money they were for never moves.
    api.post("/v1/customers/cust-001/unlock")
    rv = api.post(
        f"/v1/challenges/{verified['id']}/consume", {"transaction_digest": verified["transaction_digest"]}
    )
    assert_problem(rv, 409, "challenge_not_verified")
    # A call on the cancelled challenge's number verifies nothing.
    root = twiml(Phone(api.client).call(PHONE, pending["callback"]["number"], "CA" + "1" * 32))
    assert verbs(root) == ["Reject"]
    assert api.get(f"/v1/challenges/{pending['id']}").get_json()["status"] == "cancelled"
    assert pending["id"] not in {e["challenge_id"] for e in of_type(api, "challenge.verified")}


def test_a_lock_by_failures_cancels_nothing(api, clock, secret):
    pending = new_challenge(api)
    lock_by_failures(api, clock, secret)
    assert api.get(f"/v1/challenges/{pending['id']}").get_json()["status"] == "pending"


# -- lockout modes ------------------------------------------------------------------------


def test_permanent_mode_never_ends_by_itself(api, clock, secret):
    lock_by_failures(api, clock, secret)
    clock.advance(400 * 86400)
    assert customer(api)["locked"] is True
    assert_problem(api.post("/v1/challenges", transfer()), 423, "customer_locked")


def test_temporary_mode_waits_double_up_to_the_cap_and_end_by_themselves(store, clock):
    api = make_api(
        store, clock, lockout_mode="temporary", lockout_wait_seconds=900, lockout_wait_max_seconds=3000
    )
    register(api)
    secret = enrol_totp(api, clock)
    for wait in (900, 1800, 3000, 3000):
        assert lock_by_failures(api, clock, secret)[-1] == 0
        lock = customer(api)["lock"]
        assert lock["reason"] == "failures" and lock["by"] is None
        assert seconds_between(lock["at"], lock["until"]) == wait
        assert of_type(api, "customer.locked")[-1]["until"] == lock["until"]
        clock.advance(wait - 1)
        assert_problem(api.post("/v1/challenges", transfer()), 423, "customer_locked")
        clock.advance(1)
        body = customer(api)
        assert body["locked"] is False and body["lock"] is None and body["failed_attempts"] == 0
        assert len(of_type(api, "customer.unlocked")) == len(of_type(api, "customer.locked")) - 1
        # The next transition that looks records the end.
        assert api.post("/v1/challenges", transfer()).status_code == 201
        unlocked = of_type(api, "customer.unlocked")[-1]
        assert unlocked["by"] is None and unlocked["reason"] == "lock_expired"
        assert unlocked["until"] == lock["until"]
        clock.advance(30)


def test_a_temporary_lock_ends_when_any_call_looks_not_only_a_read(store, clock):
    api = make_api(store, clock, lockout_mode="temporary")
    register(api)
    secret = enrol_totp(api, clock)
    lock_by_failures(api, clock, secret)
    clock.advance(900)
    assert api.post("/v1/challenges", transfer()).status_code == 201
    assert len(of_type(api, "customer.unlocked")) == 1
    assert customer(api)["failed_attempts"] == 0


def test_mixed_mode_turns_permanent_after_the_configured_temporary_locks(store, clock):
    api = make_api(store, clock, lockout_mode="mixed", lockout_max_temporary=2)
    register(api)
    secret = enrol_totp(api, clock)
    for wait in (900, 1800):
        lock_by_failures(api, clock, secret)
        lock = customer(api)["lock"]
        assert seconds_between(lock["at"], lock["until"]) == wait
        clock.advance(wait + 30)
    lock_by_failures(api, clock, secret)
    assert customer(api)["lock"]["until"] is None
    clock.advance(400 * 86400)
    assert customer(api)["locked"] is True
    # Only an operator's unlock resets the count of temporary locks: the next lock is short again.
    api.post("/v1/customers/cust-001/unlock")
    clock.advance(30)
    lock_by_failures(api, clock, secret)
    lock = customer(api)["lock"]
    assert seconds_between(lock["at"], lock["until"]) == 900


def test_an_unlock_during_a_temporary_lock_resets_failures_and_the_count(store, clock):
    api = make_api(store, clock, lockout_mode="temporary")
    register(api)
    secret = enrol_totp(api, clock)
    lock_by_failures(api, clock, secret)
    clock.advance(900 + 30)
    lock_by_failures(api, clock, secret)
    assert seconds_between(customer(api)["lock"]["at"], customer(api)["lock"]["until"]) == 1800
    body = api.post("/v1/customers/cust-001/unlock").get_json()
    assert body["locked"] is False and body["failed_attempts"] == 0
    clock.advance(30)
    lock_by_failures(api, clock, secret)
    assert seconds_between(customer(api)["lock"]["at"], customer(api)["lock"]["until"]) == 900


@pytest.mark.real_redis
@pytest.mark.parametrize("mode", ["permanent", "temporary", "mixed"])
def test_a_burst_of_wrong_codes_gets_no_more_guesses_than_the_mode_allows(real_store, clock, mode):
    app = create_app(
        {
            **settings_for_tests(lockout_mode=mode, challenge_attempts=10),
            "redis_client": real_store,
            "clock": clock,
        }
    )
    api = Api(app.test_client())
    register(api)
    secret = enrol_totp(api, clock)
    for _round in range(3 if mode != "permanent" else 1):
        challenge = new_challenge(api, methods=["totp"])
        code = wrong_code(secret, clock())
        path = f"/v1/challenges/{challenge['id']}/totp"
        clients = [Api(app.test_client()) for _ in range(20)]
        answers = race([lambda c=c, p=path, b={"code": code}: c.post(p, b) for c in clients])
        codes = Counter(rv.get_json()["code"] for rv in answers)
        assert codes == {"invalid_code": 6, "customer_locked": 14}, codes
        assert sorted(rv.get_json()["failures_before_lock"] for rv in answers if rv.status_code == 422) == [
            0,
            1,
            2,
            3,
            4,
            5,
        ]
        attempts = [
            e for e in of_type(api, "challenge.failed_attempt") if e["challenge_id"] == challenge["id"]
        ]
        assert len(attempts) == 6
        clock.advance(86400 + 30)  # past any wait: temporary locks end, permanent ones stay
    assert customer(api)["locked"] is (mode == "permanent")


def test_unlock_of_an_unlocked_customer_writes_no_event(api):
    register(api)
    api.post("/v1/customers/cust-001/unlock")
    assert not of_type(api, "customer.unlocked")
