"""A "9" of a dialogue this call opened is a fraud report whatever happened in between
(API.md Additions, "Locks and fraud response"): the challenge being read out was cancelled or
verified by TOTP meanwhile, or the customer is under a failures lock. In each case the report
is written, the customer is locked for `fraud_report` (replacing a failures lock), every
pending and verified challenge is cancelled, and the caller hears the fraud-report answer.

The attack: a fraudster verifies a second challenge with a phished TOTP code, then ends the
first one (cancel, or a TOTP verification) while the customer is on the phone about it, so
the customer's "9" must still stop the verified second challenge from being consumed.
"""

from __future__ import annotations

from typing import Any

import pytest

from authgw.app import create_app
from tests.helpers.api import Api, enrol_totp, new_challenge, register, totp_code
from tests.helpers.phone import PHONE, Phone, gather_of, new_sid, of_type, spoken, twiml
from tests.helpers.settings import Clock, settings_for_tests

BANK = "0120-123-456"
BANK_READ = "ぜろ、いち、に、ぜろ、の、いち、に、さん、の、よん、ご、ろく"
MASKED = "+********5678"
THRESHOLD = 2


def gateway(store: Any, clock: Clock, mode: str, **settings: Any) -> tuple[Api, Phone]:
    app = create_app(
        {
            **settings_for_tests(
                callback_mode=mode,
                bank_contact_number=BANK,
                lockout_threshold=THRESHOLD,
                **settings,
            ),
            "redis_client": store,
            "clock": clock,
        }
    )
    return Api(app.test_client()), Phone(app.test_client())


def status(api: Api, challenge: dict[str, Any]) -> str:
    return str(api.get(f"/v1/challenges/{challenge['id']}").get_json()["status"])


def verify_by_totp(api: Api, clock: Clock, secret: str, challenge: dict[str, Any]) -> None:
    rv = api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": totp_code(secret, clock())})
    assert rv.get_json()["status"] == "verified", rv.get_data(as_text=True)
    clock.advance(30)


def consume(api: Api, challenge: dict[str, Any]) -> Any:
    return api.post(
        f"/v1/challenges/{challenge['id']}/consume",
        {"transaction_digest": challenge["transaction_digest"]},
    )


def lock_by_failures(api: Api) -> None:
    """Wrong TOTP codes on a challenge of their own until the customer is locked for failures."""
    victim = new_challenge(api, methods=["totp"])
    for _ in range(THRESHOLD):
        api.post(f"/v1/challenges/{victim['id']}/totp", {"code": "000000"})
    lock = api.get("/v1/customers/cust-001").get_json()["lock"]
    assert lock is not None and lock["reason"] == "failures"


# What happens between the dialogue opening and the "9".
def cancel_it(api: Api, clock: Clock, secret: str, called: dict[str, Any]) -> None:
    assert api.post(f"/v1/challenges/{called['id']}/cancel").status_code == 200
    assert status(api, called) == "cancelled"


def verify_it(api: Api, clock: Clock, secret: str, called: dict[str, Any]) -> None:
    verify_by_totp(api, clock, secret, called)


def failures_lock(api: Api, clock: Clock, secret: str, called: dict[str, Any]) -> None:
    lock_by_failures(api)


MEANWHILE = {"cancelled": cancel_it, "verified_by_totp": verify_it, "failures_lock": failures_lock}


@pytest.mark.parametrize("mode", ["confirm", "code"])
@pytest.mark.parametrize("meanwhile", sorted(MEANWHILE))
def test_nine_reports_locks_and_cancels_whatever_happened_meanwhile(store, clock, mode, meanwhile):
    api, phone = gateway(store, clock, mode)
    register(api)
    secret = enrol_totp(api, clock)
    called = new_challenge(api, methods=["callback", "totp"])
    phished = new_challenge(api, methods=["totp"])
    verify_by_totp(api, clock, secret, phished)
    sid = new_sid()
    gather = gather_of(twiml(phone.call(PHONE, called["callback"]["number"], sid)))
    before = status(api, called)
    MEANWHILE[meanwhile](api, clock, secret, called)
    ended = status(api, called)
    root = twiml(phone.press(gather, "9", sid))

    reported = of_type(api, "customer.fraud_reported")
    assert len(reported) == 1
    assert reported[0]["challenge_id"] == called["id"]
    assert reported[0]["from"] == PHONE and reported[0]["call_sid"] == sid
    lock = api.get("/v1/customers/cust-001").get_json()["lock"]
    assert lock is not None
    assert lock["reason"] == "fraud_report" and lock["by"] == MASKED and lock["until"] is None
    assert of_type(api, "customer.locked")[-1]["reason"] == "fraud_report"
    # The phished, verified challenge is cancelled and can never be consumed.
    assert status(api, phished) == "cancelled"
    assert consume(api, phished).status_code in (409, 423)
    cancelled = {e["challenge_id"] for e in of_type(api, "challenge.cancelled")}
    assert phished["id"] in cancelled
    # The dialogue's challenge is denied only if it was still pending at the "9".
    denied = of_type(api, "challenge.denied")
    if ended == "pending":
        assert before == "pending" and status(api, called) == "denied"
        assert [e["challenge_id"] for e in denied] == [called["id"]]
    else:
        assert not denied
        assert status(api, called) in ("cancelled",)
    # The caller hears the fraud-report answer, not "already ended".
    text = spoken(root)
    assert "承認されていません" in text and "インターネットバンキングのご利用を停止しました" in text
    assert BANK_READ in text
    assert "すでに終了しています" not in text


@pytest.mark.parametrize("mode", ["confirm", "code"])
def test_a_replayed_nine_after_the_challenge_ended_reports_once(store, clock, mode):
    api, phone = gateway(store, clock, mode)
    register(api)
    secret = enrol_totp(api, clock)
    called = new_challenge(api)
    phished = new_challenge(api, methods=["totp"])
    verify_by_totp(api, clock, secret, phished)
    sid = new_sid()
    gather = gather_of(twiml(phone.call(PHONE, called["callback"]["number"], sid)))
    cancel_it(api, clock, secret, called)
    first = twiml(phone.press(gather, "9", sid))
    again = twiml(phone.press(gather, "9", sid))
    assert spoken(first) == spoken(again)
    assert len(of_type(api, "customer.fraud_reported")) == 1
    assert len(of_type(api, "customer.locked")) == 1
    assert status(api, phished) == "cancelled"


def test_an_operator_lock_is_kept_and_the_report_still_written(store, clock):
    api, phone = gateway(store, clock, "confirm")
    register(api)
    called = new_challenge(api)
    sid = new_sid()
    gather = gather_of(twiml(phone.call(PHONE, called["callback"]["number"], sid)))
    assert api.post("/v1/customers/cust-001/lock", {"note": "card stolen"}).status_code == 200
    root = twiml(phone.press(gather, "9", sid))
    assert len(of_type(api, "customer.fraud_reported")) == 1
    assert api.get("/v1/customers/cust-001").get_json()["lock"]["reason"] == "operator"
    assert len(of_type(api, "customer.locked")) == 1
    assert "インターネットバンキングのご利用を停止しました" in spoken(root)


def test_with_fraud_report_locks_off_a_late_nine_still_reports(store, clock):
    api, phone = gateway(store, clock, "confirm", fraud_report_locks="0")
    register(api)
    called = new_challenge(api)
    other = new_challenge(api)
    sid = new_sid()
    gather = gather_of(twiml(phone.call(PHONE, called["callback"]["number"], sid)))
    assert api.post(f"/v1/challenges/{called['id']}/cancel").status_code == 200
    root = twiml(phone.press(gather, "9", sid))
    assert len(of_type(api, "customer.fraud_reported")) == 1
    assert api.get("/v1/customers/cust-001").get_json()["lock"] is None
    assert status(api, other) == "pending"
    text = spoken(root)
    assert "承認されていません" in text and "停止しました" not in text and BANK_READ in text
