"""Code mode: the caller keys in the code on the screen; wrong codes cost attempts and count
towards the same lockout as TOTP."""

from __future__ import annotations

import pytest

from authgw.app import create_app
from tests.helpers.api import Api, enrol_totp, new_challenge, register, totp_code
from tests.helpers.calls import LINE_1, PHONE, Phone, events, other_code, spoken, status_of, types
from tests.helpers.phone import gather_of, twiml, verbs

# Every test here is of code mode.
pytestmark = pytest.mark.parametrize("mode", ["code"])


def test_code_mode_asks_for_the_code_on_the_screen(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    code = challenge["callback"]["code"]
    assert len(code) == 6 and code.isdigit()
    root = twiml(phone.call(PHONE, LINE_1))
    gather = gather_of(root)
    assert gather.attrib["numDigits"] == "6"
    assert "15万円" in spoken(root) and "6桁の番号" in spoken(root)
    assert code not in spoken(root)  # the code travels one way only: screen to phone


def test_code_mode_wrong_code_costs_an_attempt_then_right_code_verifies(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    code = challenge["callback"]["code"]
    wrong = other_code(code)
    gather = gather_of(twiml(phone.call(PHONE, LINE_1)))
    root = twiml(phone.press(gather, wrong))
    assert "正しくありません" in spoken(root)
    body = status_of(api, challenge)
    assert body["status"] == "pending" and body["attempts_left"] == 2
    assert api.get("/v1/customers/cust-001").get_json()["failed_attempts"] == 1
    failed = events(api)[0]
    assert failed["type"] == "challenge.failed_attempt" and failed["method"] == "callback"
    twiml(phone.press(gather_of(root), code))
    body = status_of(api, challenge)
    assert body["status"] == "verified" and body["verified_by"] == "callback"
    assert api.get("/v1/customers/cust-001").get_json()["failed_attempts"] == 0


def test_code_mode_wrong_codes_use_up_the_attempts(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    wrong = other_code(challenge["callback"]["code"])
    root = twiml(phone.call(PHONE, LINE_1))
    for _ in range(3):
        root = twiml(phone.press(gather_of(root), wrong))
    assert verbs(root) == ["Say", "Hangup"]
    assert status_of(api, challenge)["status"] == "failed"
    assert types(api)[-1] == "challenge.failed"


def test_code_mode_counts_failures_with_totp_towards_the_same_lockout(api, phone, mode, clock):
    register(api)
    secret = enrol_totp(api, clock)
    wrong_totp = other_code(totp_code(secret, clock()))
    for _ in range(2):  # two challenges, two wrong TOTP codes each: 4 failures
        ch = new_challenge(api, amount=500)
        for _ in range(2):
            assert api.post(f"/v1/challenges/{ch['id']}/totp", {"code": wrong_totp}).status_code == 422
        api.post(f"/v1/challenges/{ch['id']}/cancel")
    challenge = new_challenge(api)
    wrong = other_code(challenge["callback"]["code"])
    root = twiml(phone.call(PHONE, challenge["callback"]["number"]))
    root = twiml(phone.press(gather_of(root), wrong))  # 5th failure
    root = twiml(phone.press(gather_of(root), wrong))  # 6th: the lockout threshold
    assert "停止" in spoken(root)
    customer = api.get("/v1/customers/cust-001").get_json()
    assert customer["locked"] is True and customer["failed_attempts"] == 6
    assert "customer.locked" in types(api)


def test_code_mode_nine_alone_denies(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    twiml(phone.press(gather_of(twiml(phone.call(PHONE, LINE_1))), "9#"))
    assert status_of(api, challenge)["status"] == "denied"
    assert api.get("/v1/customers/cust-001").get_json()["failed_attempts"] == 0


def test_code_mode_same_wrong_entry_delivered_twice_costs_one_attempt(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    wrong = other_code(challenge["callback"]["code"])
    gather = gather_of(twiml(phone.call(PHONE, LINE_1)))
    twiml(phone.press(gather, wrong))
    twiml(phone.press(gather, wrong))
    assert status_of(api, challenge)["attempts_left"] == 2


def test_code_length_is_the_challenges_own_after_a_configuration_change(store, clock, settings, mode):
    before = create_app(
        {
            **settings,
            "callback_mode": "code",
            "callback_code_digits": 4,
            "redis_client": store,
            "clock": clock,
        }
    )
    after = create_app(
        {
            **settings,
            "callback_mode": "code",
            "callback_code_digits": 6,
            "redis_client": store,
            "clock": clock,
        }
    )
    api, phone = Api(before.test_client()), Phone(after.test_client())
    register(api)
    challenge = new_challenge(api)
    code = challenge["callback"]["code"]
    assert len(code) == 4
    gather = gather_of(twiml(phone.call(PHONE, LINE_1)))
    assert gather.attrib["numDigits"] == "4"
    again = gather_of(twiml(phone.press(gather, "0000" if code != "0000" else "1111")))
    assert again.attrib["numDigits"] == "4" and "4桁" in spoken(twiml(phone.press(gather, "5555")))
    twiml(phone.press(again, code))
    assert status_of(api, challenge)["status"] == "verified"
