"""Confirm mode: what the call reads out (amount, kind, payee, account, in Japanese) and the keys
that answer it, and the amount policy that asks for confirmation from a threshold."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authgw.app import create_app
from authgw.keys import Keys
from authgw.webhooks.speech import yen
from tests.helpers.api import Api, assert_problem, new_challenge, register
from tests.helpers.calls import LINE_1, PHONE, Phone, events, spoken, status_of, types
from tests.helpers.phone import gather_of, twiml, verbs
from tests.helpers.settings import PUBLIC_URL
from tests.helpers.webhooks import new_sid


@pytest.mark.parametrize("mode", ["confirm"])
def test_confirm_mode_reads_amount_kind_payee_and_account_in_japanese(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    root = twiml(phone.call(PHONE, LINE_1))
    assert verbs(root) == ["Gather", "Gather", "Say", "Hangup"]
    gather = gather_of(root)
    assert gather.attrib["numDigits"] == "1"
    assert gather.attrib["action"] == f"{PUBLIC_URL}/webhooks/twilio/confirm?n=1"
    say = gather.find("Say")
    assert say is not None
    assert say.attrib == {"language": "ja-JP", "voice": "Polly.Mizuki"}
    text = say.text or ""
    assert "お振込み" in text
    assert "15万円" in text
    assert "お受取人は、ヤマダ タロウ様" in text  # half-width katakana widened for the voice
    assert "5、6、7" in text  # last digits of the account, one by one
    assert "1を" in text and "9を" in text
    # No input: the question is asked once more, then the call ends with the challenge pending.
    second = root.findall("Gather")[1].find("Say")
    assert second is not None and "もう一度" in (second.text or "") and "15万円" in (second.text or "")
    assert "完了していません" in (root.findall("Say")[-1].text or "")
    assert status_of(api, challenge)["status"] == "pending"


@pytest.mark.parametrize("mode", ["confirm"])
@pytest.mark.parametrize(
    ("amount", "said"),
    [
        (1, "1円"),
        (150000, "15万円"),
        (1234567, "123万4567円"),
        (10000, "1万円"),
        (100000000, "1億円"),
        (99999999999, "999億9999万9999円"),
        (120005, "12万5円"),
    ],
)
def test_confirm_mode_says_the_amount_as_an_amount(api, phone, mode, amount, said):
    register(api)
    new_challenge(api, amount=amount)
    text = spoken(twiml(phone.call(PHONE, LINE_1)))
    assert f"、{said}の確認です" in text


@pytest.mark.parametrize("mode", ["confirm"])
def test_confirm_mode_names_a_payeasy_payment(api, phone, mode):
    register(api)
    new_challenge(
        api,
        kind="payeasy",
        amount=32000,
        payee={
            "biller_number": "12345",
            "customer_number": "987654321012",
            "confirmation_number": "555555",
            "name": "ｺｸｾﾞｲﾁｮｳ",
        },
    )
    text = spoken(twiml(phone.call(PHONE, LINE_1)))
    assert "ペイジー" in text and "3万2000円" in text and "お支払い先は、コクゼイチョウ。" in text
    assert "1、0、1、2" in text


@pytest.mark.parametrize("mode", ["confirm"])
def test_confirm_mode_names_another_currency_by_its_code(api, phone, mode):
    register(api)
    new_challenge(api, amount=12345, currency="USD")
    assert "USD建て、最小単位で12,345の確認です" in spoken(twiml(phone.call(PHONE, LINE_1)))


@given(st.integers(min_value=1, max_value=99_999_999_999))
def test_every_amount_is_said_as_the_same_amount(amount):
    said = yen(amount)
    match = re.fullmatch(r"(?:(\d{1,3})億)?(?:(\d{1,4})万)?(\d{1,4})?円", said)
    assert match is not None, said
    oku, man, rest = (int(part or 0) for part in match.groups())
    assert oku * 10**8 + man * 10**4 + rest == amount
    assert all(part is None or not part.startswith("0") for part in match.groups())


@pytest.mark.parametrize("mode", ["confirm"])
def test_confirm_mode_nine_denies_and_reports_fraud(api, phone, mode, store, app):
    register(api)
    challenge = new_challenge(api)
    gather = gather_of(twiml(phone.call(PHONE, LINE_1)))
    root = twiml(phone.press(gather, "9"))
    assert verbs(root) == ["Say", "Hangup"]
    assert "中止しました" in spoken(root)
    body = status_of(api, challenge)
    assert body["status"] == "denied"
    # The denial is followed by the fraud report and its lock (test_fraud_report.py).
    denied = next(e for e in events(api) if e["type"] == "challenge.denied")
    assert denied["from"] == PHONE and denied["call_sid"] == phone.sids[0]
    assert denied["method"] == "callback" and denied["reason"] == "fraud_report"
    keys = Keys(app.extensions["authgw"].settings.key_prefix).for_customer("cust-001")
    assert store.hget(keys.customer, "fraud_reports") == "1"
    # A denied challenge cannot be verified any more, by phone or otherwise.
    assert verbs(twiml(phone.call(PHONE, LINE_1))) == ["Reject"]
    rv = api.post(
        f"/v1/challenges/{challenge['id']}/consume", {"transaction_digest": challenge["transaction_digest"]}
    )
    assert_problem(rv, 409, "challenge_not_verified")


@pytest.mark.parametrize("mode", ["confirm"])
def test_confirm_mode_other_keys_ask_again_and_change_nothing(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    gather = gather_of(twiml(phone.call(PHONE, LINE_1)))
    root = twiml(phone.press(gather, "5"))
    again = gather_of(root)
    assert again.attrib["action"].endswith("/confirm?n=2")
    assert status_of(api, challenge)["status"] == "pending"
    twiml(phone.press(again, "1"))
    assert status_of(api, challenge)["status"] == "verified"


@pytest.mark.parametrize("mode", ["confirm"])
def test_confirm_mode_same_keys_delivered_twice_are_judged_once(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    gather = gather_of(twiml(phone.call(PHONE, LINE_1)))
    first = phone.press(gather, "1").get_data()
    assert phone.press(gather, "1").get_data() == first
    assert types(api).count("challenge.verified") == 1
    assert status_of(api, challenge)["status"] == "verified"


@pytest.mark.parametrize("mode", ["confirm"])
def test_keys_on_a_call_that_opened_no_dialogue_change_nothing(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    rv = phone.post(f"{PUBLIC_URL}/webhooks/twilio/confirm?n=1", {"CallSid": new_sid(), "Digits": "1"})
    assert "確認できませんでした" in spoken(twiml(rv))
    assert status_of(api, challenge)["status"] == "pending"


@pytest.mark.parametrize("mode", ["confirm"])
def test_confirm_mode_answer_after_expiry_is_refused(api, phone, mode, clock):
    register(api)
    challenge = new_challenge(api, ttl_seconds=60)
    gather = gather_of(twiml(phone.call(PHONE, LINE_1)))
    clock.advance(61)
    assert "有効期限" in spoken(twiml(phone.press(gather, "1")))
    assert status_of(api, challenge)["status"] == "expired"


def test_amount_policy_asks_for_confirmation_from_a_threshold(app, store, clock, settings):
    settings = {**settings, "callback_confirm_above": 100000}
    app = create_app({**settings, "redis_client": store, "clock": clock})
    api, phone = Api(app.test_client()), Phone(app.test_client())
    register(api)
    small = new_challenge(api, amount=99999)
    assert verbs(twiml(phone.call(PHONE, LINE_1))) == ["Reject"]
    assert status_of(api, small)["status"] == "verified"
    large = new_challenge(api, amount=100000)
    root = twiml(phone.call(PHONE, large["callback"]["number"]))
    assert "10万円" in spoken(root)
    assert status_of(api, large)["status"] == "pending"
    twiml(phone.press(gather_of(root), "1"))
    assert status_of(api, large)["status"] == "verified"
