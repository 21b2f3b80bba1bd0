"""The new-phone hold (API.md Additions, "Limits and step-up"): a phone registered less than
``AUTHGW_NEW_PHONE_HOLD_SECONDS`` ago verifies no callback, and the caller hears why in Japanese.
Over HTTP and the signed webhooks, on every store of the ``store`` fixture, with the clock
injected."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.api import Api, new_challenge, register
from tests.helpers.phone import PHONE, Phone, new_sid, of_type, spoken, twiml, verbs
from tests.helpers.settings import Clock, settings_for_tests

HOLD = 3600
OTHER_PHONE = "+819087654321"


@pytest.fixture
def settings() -> dict[str, Any]:
    return settings_for_tests(new_phone_hold_seconds=HOLD)


@pytest.fixture
def phone(app: Any) -> Phone:
    return Phone(app.test_client())


def status(api: Api, challenge: dict[str, Any]) -> str:
    return str(api.get(f"/v1/challenges/{challenge['id']}").get_json()["status"])


def call(phone: Phone, challenge: dict[str, Any], from_: str = PHONE) -> Any:
    return phone.call(from_, challenge["callback"]["number"], new_sid())


def test_the_customer_object_says_when_each_phone_was_added(api: Api, clock: Clock) -> None:
    from authgw.challenges.domain import rfc3339

    first = rfc3339(int(clock() * 1000))
    customer = register(api, phones=("090-1234-5678",))
    assert customer["phones_added_at"] == {PHONE: first}
    clock.advance(100)
    # Registering it again keeps its time; the new one gets its own.
    customer = register(api, phones=("090-1234-5678", "090-8765-4321"))
    assert customer["phones_added_at"] == {PHONE: first, OTHER_PHONE: rfc3339(int(clock() * 1000))}
    assert api.get("/v1/customers/cust-001").get_json()["phones_added_at"] == customer["phones_added_at"]


def test_a_call_from_a_new_phone_verifies_nothing_and_is_told_why(
    api: Api, phone: Phone, clock: Clock
) -> None:
    register(api)
    clock.advance(HOLD - 1)
    challenge = new_challenge(api, methods=["callback"])
    root = twiml(call(phone, challenge))
    assert "Reject" not in verbs(root)
    said = spoken(root)
    assert "登録されてから間もない" in said and "承認されていません" in said
    assert status(api, challenge) == "pending"
    (unmatched,) = of_type(api, "call.unmatched")
    assert unmatched["reason"] == "new_phone_hold"
    assert of_type(api, "challenge.verified") == []


def test_once_the_hold_has_passed_the_call_verifies(api: Api, phone: Phone, clock: Clock) -> None:
    register(api)
    clock.advance(HOLD)
    challenge = new_challenge(api, methods=["callback"])
    assert verbs(twiml(call(phone, challenge))) == ["Reject"]
    assert status(api, challenge) == "verified"


def test_registering_a_phone_again_keeps_its_hold_from_the_first_time(
    api: Api, phone: Phone, clock: Clock
) -> None:
    register(api)
    clock.advance(HOLD / 2)
    register(api)
    clock.advance(HOLD / 2)
    challenge = new_challenge(api, methods=["callback"])
    assert verbs(twiml(call(phone, challenge))) == ["Reject"]
    assert status(api, challenge) == "verified"


def test_removing_a_phone_and_adding_it_again_restarts_the_hold(api: Api, phone: Phone, clock: Clock) -> None:
    register(api, phones=("090-1234-5678", "090-8765-4321"))
    clock.advance(HOLD)
    register(api, phones=("090-8765-4321",))
    register(api, phones=("090-8765-4321", "090-1234-5678"))
    challenge = new_challenge(api, methods=["callback"])
    assert "承認されていません" in spoken(twiml(call(phone, challenge)))
    assert status(api, challenge) == "pending"
    # The phone that stayed registered is past its hold.
    assert verbs(twiml(call(phone, challenge, OTHER_PHONE))) == ["Reject"]
    assert status(api, challenge) == "verified"


def test_the_same_call_delivered_again_is_told_the_same(api: Api, phone: Phone) -> None:
    register(api)
    challenge = new_challenge(api, methods=["callback"])
    sid = new_sid()
    first = spoken(twiml(phone.call(PHONE, challenge["callback"]["number"], sid)))
    again = spoken(twiml(phone.call(PHONE, challenge["callback"]["number"], sid)))
    assert first == again
    assert status(api, challenge) == "pending"
    assert len(of_type(api, "call.unmatched")) == 1


@pytest.fixture
def no_hold(settings: dict[str, Any]) -> None:
    settings["new_phone_hold_seconds"] = 0


@pytest.mark.usefixtures("no_hold")
def test_without_a_hold_a_new_phone_verifies_at_once(api: Api, phone: Phone) -> None:
    register(api)
    challenge = new_challenge(api, methods=["callback"])
    assert verbs(twiml(call(phone, challenge))) == ["Reject"]
    assert status(api, challenge) == "verified"
