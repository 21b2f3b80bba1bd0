"""Self-lock numbers (IBロック, API.md Additions "Locks and fraud response"): a registered phone
calling one of ``AUTHGW_LOCK_NUMBERS`` and pressing 1 locks its customers; withheld, unknown
callers and other keys change nothing.

Over HTTP on each store of the ``store`` fixture, calls signed as Twilio signs them.
"""

from __future__ import annotations

from typing import Any

import pytest

from authgw.errors import ConfigError
from authgw.settings import load_settings
from tests.helpers.api import assert_problem, enrol_totp, new_challenge, register, totp_code, transfer
from tests.helpers.phone import PHONE, Phone, events, gather_of, new_sid, of_type, spoken, twiml, verbs
from tests.helpers.settings import CALLBACK_NUMBERS, Clock, settings_for_tests

LOCK_LINE = "+815030000009"
BANK = "03-1234-5678"
BANK_READ = "ぜろ、さん、の、いち、に、さん、よん、の、ご、ろく、なな、はち"
MASKED = "+********5678"


@pytest.fixture
def settings() -> dict[str, Any]:
    return settings_for_tests(lock_numbers="050-3000-0009", bank_contact_number=BANK)


@pytest.fixture
def phone(app: Any) -> Phone:
    return Phone(app.test_client())


def customer(api: Any, customer_id: str = "cust-001") -> dict[str, Any]:
    return api.get(f"/v1/customers/{customer_id}").get_json()


def call_lock_line(phone: Phone, from_: str = PHONE, sid: str | None = None) -> tuple[Any, str]:
    sid = sid or new_sid()
    return twiml(phone.call(from_, LOCK_LINE, sid)), sid


def test_a_registered_phone_is_asked_to_press_one_and_nothing_changes_yet(api, phone):
    register(api)
    registered = events(api)
    root, _sid = call_lock_line(phone)
    gather = gather_of(root)
    assert gather.attrib["action"].endswith("/webhooks/twilio/lock?n=1")
    assert gather.attrib["numDigits"] == "1"
    assert "1を押してください" in spoken(root)
    assert customer(api)["locked"] is False
    assert events(api) == registered


def test_pressing_one_locks_and_cancels_every_open_challenge(api, phone, clock):
    register(api)
    secret = enrol_totp(api, clock)
    pending = new_challenge(api)
    verified = new_challenge(api, methods=["totp"])
    api.post(f"/v1/challenges/{verified['id']}/totp", {"code": totp_code(secret, clock())})
    root, sid = call_lock_line(phone)
    answer = twiml(phone.press(gather_of(root), "1", sid))
    assert verbs(answer) == ["Say", "Hangup"]
    text = spoken(answer)
    assert "インターネットバンキングのご利用を停止しました" in text and BANK_READ in text
    body = customer(api)
    assert body["locked"] is True
    assert body["lock"] == {"reason": "self_lock", "at": body["lock"]["at"], "until": None, "by": MASKED}
    self_locked = of_type(api, "customer.self_locked")
    assert len(self_locked) == 1
    assert self_locked[0]["from"] == PHONE and self_locked[0]["call_sid"] == sid
    locked = of_type(api, "customer.locked")
    assert len(locked) == 1 and locked[0]["reason"] == "self_lock" and locked[0]["by"] == MASKED
    for challenge in (pending, verified):
        assert api.get(f"/v1/challenges/{challenge['id']}").get_json()["status"] == "cancelled"
    cancelled = of_type(api, "challenge.cancelled")
    assert {e["challenge_id"] for e in cancelled} == {pending["id"], verified["id"]}
    assert {e["reason"] for e in cancelled} == {"customer_locked"}
    assert_problem(api.post("/v1/challenges", transfer()), 423, "customer_locked")
    # A call on the cancelled challenge's number verifies nothing.
    assert verbs(twiml(phone.call(PHONE, pending["callback"]["number"], new_sid()))) == ["Reject"]


def test_only_an_operator_unlocks_a_self_lock(api, phone, clock: Clock):
    register(api)
    root, sid = call_lock_line(phone)
    phone.press(gather_of(root), "1", sid)
    clock.advance(400 * 86400)
    assert customer(api)["locked"] is True
    assert api.post("/v1/customers/cust-001/unlock").get_json()["lock"] is None
    assert api.post("/v1/challenges", transfer()).status_code == 201


def test_a_phone_registered_to_several_customers_locks_each(api, phone):
    register(api, "cust-001")
    register(api, "cust-002")
    register(api, "cust-003", phones=("090-1111-2222",))
    root, sid = call_lock_line(phone)
    phone.press(gather_of(root), "1", sid)
    assert customer(api, "cust-001")["lock"]["reason"] == "self_lock"
    assert customer(api, "cust-002")["lock"]["reason"] == "self_lock"
    assert customer(api, "cust-003")["locked"] is False
    assert len(of_type(api, "customer.self_locked", "cust-002")) == 1


def test_the_same_key_delivered_twice_locks_once(api, phone):
    register(api)
    root, sid = call_lock_line(phone)
    gather = gather_of(root)
    first = spoken(twiml(phone.press(gather, "1", sid)))
    assert spoken(twiml(phone.press(gather, "1", sid))) == first
    assert len(of_type(api, "customer.self_locked")) == 1
    assert len(of_type(api, "customer.locked")) == 1


@pytest.mark.parametrize("keys", ["2", "9", "0", "11", "*", ""])
def test_other_keys_change_nothing(api, phone, keys):
    register(api)
    challenge = new_challenge(api)
    root, sid = call_lock_line(phone)
    answer = twiml(phone.press(gather_of(root), keys, sid))
    assert "停止は行いませんでした" in spoken(answer)
    assert customer(api)["locked"] is False
    assert api.get(f"/v1/challenges/{challenge['id']}").get_json()["status"] == "pending"
    assert [e["type"] for e in events(api)] == ["customer.phones_changed", "challenge.created"]


@pytest.mark.parametrize("withheld", ["anonymous", "+266696687", "Restricted", ""])
def test_a_withheld_caller_hears_the_186_advice_and_nothing_changes(api, phone, withheld):
    register(api)
    registered = events(api)
    root, _sid = call_lock_line(phone, withheld)
    assert root.find("Gather") is None
    assert "いち、はち、ろく" in spoken(root)
    assert customer(api)["locked"] is False
    assert events(api) == registered


def test_an_unknown_caller_is_told_the_number_is_not_registered_and_nothing_else(api, phone):
    register(api)
    registered = events(api)
    root, sid = call_lock_line(phone, "+819099998888")
    other, _ = call_lock_line(phone, "+81312345678")
    assert root.find("Gather") is None
    text = spoken(root)
    assert "ご登録がありません" in text
    # The same words whoever calls: no hint of whose number it could be.
    assert spoken(other) == text
    assert "cust" not in text and "5678" not in text
    # Keys pressed anyway lock nothing.
    lock_path = "https://gw.example.jp/webhooks/twilio/lock?n=1"
    twiml(phone.post(lock_path, {"CallSid": sid, "Digits": "1", "From": "+819099998888"}))
    assert customer(api)["locked"] is False
    assert events(api) == registered


def test_a_phone_removed_before_the_key_locks_nothing(api, phone):
    register(api)
    root, sid = call_lock_line(phone)
    register(api, phones=("090-1111-2222",))
    answer = twiml(phone.press(gather_of(root), "1", sid))
    assert "ご登録がありません" in spoken(answer)
    assert customer(api)["locked"] is False
    assert not of_type(api, "customer.self_locked")


def test_a_call_on_the_lock_line_verifies_no_challenge(api, phone):
    register(api)
    challenge = new_challenge(api)
    root, sid = call_lock_line(phone)
    phone.press(gather_of(root), "2", sid)
    assert api.get(f"/v1/challenges/{challenge['id']}").get_json()["status"] == "pending"


def test_keys_on_the_lock_path_for_a_challenge_call_change_nothing(api, phone):
    register(api)
    challenge = new_challenge(api)
    sid = new_sid()
    phone.call(PHONE, challenge["callback"]["number"], sid)
    answer = twiml(
        phone.post("https://gw.example.jp/webhooks/twilio/lock?n=1", {"CallSid": sid, "Digits": "1"})
    )
    assert "ご利用の停止" not in spoken(answer)
    assert customer(api)["locked"] is False


def test_a_lock_number_cannot_also_be_a_designated_number():
    with pytest.raises(ConfigError, match="AUTHGW_LOCK_NUMBERS"):
        load_settings(settings_for_tests(lock_numbers=CALLBACK_NUMBERS[0]), environ={})
