"""Fraud report (API.md Additions, "Locks and fraud response"): a "9" on the phone denies the
challenge, writes `customer.fraud_reported`, locks the customer (unless turned off) and cancels
every open challenge of theirs in the same step; the caller hears so in Japanese.

Over HTTP on each store of the ``store`` fixture; the races run real threads against the real
redis-server.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from authgw.app import create_app
from tests.helpers.api import Api, assert_problem, enrol_totp, new_challenge, register, totp_code, transfer
from tests.helpers.phone import PHONE, Phone, gather_of, new_sid, of_type, race, spoken, twiml, verbs
from tests.helpers.settings import Clock, settings_for_tests

BANK = "0120-123-456"
BANK_READ = "ぜろ、いち、に、ぜろ、の、いち、に、さん、の、よん、ご、ろく"
MASKED = "+********5678"


@pytest.fixture(params=["confirm", "code"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(mode: str) -> dict[str, Any]:
    return settings_for_tests(callback_mode=mode, bank_contact_number=BANK)


@pytest.fixture
def phone(app: Any) -> Phone:
    return Phone(app.test_client())


def report_fraud(phone: Phone, challenge: dict[str, Any], sid: str | None = None) -> Any:
    """Call the challenge's number and press 9 ("not me")."""
    sid = sid or new_sid()
    gather = gather_of(twiml(phone.call(PHONE, challenge["callback"]["number"], sid)))
    return phone.press(gather, "9", sid)


def status(api: Api, challenge: dict[str, Any]) -> str:
    return str(api.get(f"/v1/challenges/{challenge['id']}").get_json()["status"])


def verified_by_totp(api: Api, clock: Clock, secret: str) -> dict[str, Any]:
    challenge = new_challenge(api, methods=["totp"])
    rv = api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": totp_code(secret, clock())})
    assert rv.get_json()["status"] == "verified"
    clock.advance(30)
    return challenge


def served(store: Any, clock: Any, **settings: Any) -> tuple[Api, Phone]:
    """An app on ``store`` with the suite's settings and ``settings``: its API and its phone."""
    app = create_app({**settings_for_tests(**settings), "redis_client": store, "clock": clock})
    return Api(app.test_client()), Phone(app.test_client())


def test_nine_denies_reports_locks_and_cancels_every_open_challenge(api, phone, clock):
    register(api)
    secret = enrol_totp(api, clock)
    verified = verified_by_totp(api, clock, secret)
    other = new_challenge(api, methods=["totp"])
    called = new_challenge(api)
    sid = new_sid()
    root = twiml(report_fraud(phone, called, sid))
    assert status(api, called) == "denied"
    assert status(api, verified) == "cancelled" and status(api, other) == "cancelled"
    reported = of_type(api, "customer.fraud_reported")
    assert len(reported) == 1
    assert reported[0]["challenge_id"] == called["id"]
    assert reported[0]["from"] == PHONE and reported[0]["call_sid"] == sid
    locked = of_type(api, "customer.locked")
    assert len(locked) == 1
    assert locked[0]["reason"] == "fraud_report" and locked[0]["by"] == MASKED and locked[0]["until"] is None
    cancelled = of_type(api, "challenge.cancelled")
    assert {e["challenge_id"] for e in cancelled} == {verified["id"], other["id"]}
    assert {e["reason"] for e in cancelled} == {"customer_locked"}
    body = api.get("/v1/customers/cust-001").get_json()
    assert body["locked"] is True
    assert body["lock"] == {"reason": "fraud_report", "at": body["lock"]["at"], "until": None, "by": MASKED}
    # Nothing moves any more: no consumption, no new challenge, no verification.
    rv = api.post(
        f"/v1/challenges/{verified['id']}/consume", {"transaction_digest": verified["transaction_digest"]}
    )
    assert rv.status_code in (409, 423)
    assert_problem(api.post("/v1/challenges", transfer()), 423, "customer_locked")
    # What the caller heard: valid TwiML, ja-JP, nothing approved, IB stopped, the bank's number.
    assert verbs(root) == ["Say", "Hangup"]
    text = spoken(root)
    assert "承認されていません" in text and "インターネットバンキングのご利用を停止しました" in text
    assert BANK_READ in text


def test_a_cancelled_challenges_number_verifies_nothing(api, phone, clock):
    register(api)
    first = new_challenge(api)
    second = new_challenge(api)
    report_fraud(phone, first)
    assert status(api, second) == "cancelled"
    api.post("/v1/customers/cust-001/unlock")
    root = twiml(phone.call(PHONE, second["callback"]["number"], new_sid()))
    assert verbs(root) == ["Reject"]
    assert status(api, second) == "cancelled"


def test_the_same_entry_delivered_twice_reports_once(api, phone):
    register(api)
    challenge = new_challenge(api)
    sid = new_sid()
    gather = gather_of(twiml(phone.call(PHONE, challenge["callback"]["number"], sid)))
    first = twiml(phone.press(gather, "9", sid))
    again = twiml(phone.press(gather, "9", sid))
    assert spoken(first) == spoken(again)
    assert len(of_type(api, "customer.fraud_reported")) == 1
    assert len(of_type(api, "customer.locked")) == 1


def test_code_mode_reports_only_on_nine_alone(store, clock):
    api, phone = served(store, clock, callback_mode="code", callback_code_digits=4)
    register(api)
    challenge = new_challenge(api)
    sid = new_sid()
    gather = gather_of(twiml(phone.call(PHONE, challenge["callback"]["number"], sid)))
    wrong = "99" if challenge["callback"]["code"] != "99" else "98"
    rv = twiml(phone.press(gather, wrong, sid))
    assert not of_type(api, "customer.fraud_reported")
    rv = twiml(phone.press(gather_of(rv), "9", sid))
    assert status(api, challenge) == "denied"
    assert len(of_type(api, "customer.fraud_reported")) == 1
    assert api.get("/v1/customers/cust-001").get_json()["lock"]["reason"] == "fraud_report"
    # Without a configured number the caller is told to call the bank.
    assert "銀行にご連絡ください" in spoken(rv)


@pytest.mark.parametrize("mode", ["confirm"])
def test_with_fraud_report_locks_off_nine_reports_but_locks_nothing(store, clock, mode):
    api, phone = served(store, clock, callback_mode=mode, fraud_report_locks="0", bank_contact_number=BANK)
    register(api)
    called = new_challenge(api)
    other = new_challenge(api)
    root = twiml(report_fraud(phone, called))
    assert status(api, called) == "denied" and status(api, other) == "pending"
    assert len(of_type(api, "customer.fraud_reported")) == 1
    assert not of_type(api, "customer.locked")
    assert api.get("/v1/customers/cust-001").get_json()["lock"] is None
    text = spoken(root)
    assert "承認されていません" in text and "停止しました" not in text and BANK_READ in text


# -- races: a fraud report or an operator lock against 20 consumes -------------------------


def race_lock_against_consumes(real_app: Any, clock: Clock, lock: str) -> None:
    api, phone = Api(real_app.test_client()), Phone(real_app.test_client())
    register(api)
    secret = enrol_totp(api, clock)
    called = new_challenge(api)
    sid = new_sid()
    gather = gather_of(twiml(phone.call(PHONE, called["callback"]["number"], sid)))
    verified = verified_by_totp(api, clock, secret)
    path = f"/v1/challenges/{verified['id']}/consume"
    digest = {"transaction_digest": verified["transaction_digest"]}
    consumers = [Api(real_app.test_client()) for _ in range(20)]
    calls: list[Any] = [lambda c=c: c.post(path, digest) for c in consumers]
    if lock == "fraud_report":
        reporter = Phone(real_app.test_client())
        calls.append(lambda: reporter.press(gather, "9", sid))
    else:
        operator = Api(real_app.test_client())
        calls.append(lambda: operator.post("/v1/customers/cust-001/lock", {}))
    answers = race(calls)
    assert all(rv.status_code < 500 for rv in answers), [rv.status_code for rv in answers]
    assert answers[-1].status_code == 200
    consumes = Counter(rv.status_code for rv in answers[:-1])
    final = status(api, verified)
    if consumes[200]:
        assert consumes[200] == 1 and final == "consumed"
    else:
        assert final == "cancelled"
    assert set(consumes) <= {200, 409, 423}
    assert api.get("/v1/customers/cust-001").get_json()["lock"]["reason"] == lock
    consumed = of_type(api, "challenge.consumed")
    cancelled = [e for e in of_type(api, "challenge.cancelled") if e["challenge_id"] == verified["id"]]
    assert len(consumed) + len(cancelled) == 1


@pytest.mark.real_redis
@pytest.mark.parametrize("mode", ["confirm"])
@pytest.mark.parametrize("round_", range(3))
def test_a_fraud_report_racing_consumes_never_lets_both_win(real_app, clock, mode, round_):
    race_lock_against_consumes(real_app, clock, "fraud_report")


@pytest.mark.real_redis
@pytest.mark.parametrize("mode", ["confirm"])
@pytest.mark.parametrize("round_", range(3))
def test_an_operator_lock_racing_consumes_never_lets_both_win(real_app, clock, mode, round_):
    race_lock_against_consumes(real_app, clock, "operator")
