"""New payees and step-up (API.md Additions, "Limits and step-up"), over HTTP and the signed
webhooks, on every store of the ``store`` fixture, with the clock injected."""

from __future__ import annotations

from typing import Any

import pytest

from authgw.webhooks.speech import yen
from tests.helpers.api import (
    TRANSFER_PAYEE,
    Api,
    assert_problem,
    enrol_totp,
    register,
    totp_code,
    transfer,
    wrong_code,
)
from tests.helpers.phone import PHONE, Phone, gather_of, new_sid, of_type, spoken, twiml, verbs
from tests.helpers.settings import Clock, settings_for_tests

DUAL = 10_000_000
OTHER_PAYEE = {**TRANSFER_PAYEE, "account_number": "7654321"}


@pytest.fixture
def settings() -> dict[str, Any]:
    return settings_for_tests()


@pytest.fixture
def phone(app: Any) -> Phone:
    return Phone(app.test_client())


@pytest.fixture
def secret(api: Api, clock: Clock) -> str:
    register(api)
    return enrol_totp(api, clock)


def create(api: Api, **overrides: Any) -> Any:
    return api.post("/v1/challenges", transfer(**overrides))


def created(api: Api, **overrides: Any) -> dict[str, Any]:
    rv = create(api, **overrides)
    assert rv.status_code == 201, rv.get_data(as_text=True)
    return rv.get_json()


def read(api: Api, challenge: dict[str, Any]) -> dict[str, Any]:
    return api.get(f"/v1/challenges/{challenge['id']}").get_json()


def totp(api: Api, challenge: dict[str, Any], code: str) -> Any:
    return api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": code})


def consume(api: Api, challenge: dict[str, Any]) -> Any:
    return api.post(
        f"/v1/challenges/{challenge['id']}/consume", {"transaction_digest": challenge["transaction_digest"]}
    )


def verified_and_consumed(api: Api, clock: Clock, secret: str, **overrides: Any) -> None:
    challenge = created(api, methods=["totp"], **overrides)
    assert totp(api, challenge, totp_code(secret, clock())).status_code == 200
    assert consume(api, challenge).status_code == 200
    clock.advance(30)  # the next code is of a fresh step


# -- new payee ----------------------------------------------------------------------------


def test_a_payee_is_new_until_a_challenge_paying_it_is_consumed(api: Api, clock: Clock, secret: str) -> None:
    first = created(api, methods=["totp"])
    assert first["new_payee"] is True and first["required"] is None
    # Verified is not enough: only consumption (the money moved) makes a payee known.
    assert totp(api, first, totp_code(secret, clock())).status_code == 200
    clock.advance(30)
    assert created(api, methods=["totp"])["new_payee"] is True
    assert consume(api, first).status_code == 200
    # The same payee with another amount is known; another account is new.
    assert created(api, methods=["totp"], amount=999)["new_payee"] is False
    assert created(api, methods=["totp"], payee=OTHER_PAYEE)["new_payee"] is True
    assert read(api, first)["new_payee"] is True  # as it was when created


def test_payees_are_per_customer(api: Api, clock: Clock, secret: str) -> None:
    verified_and_consumed(api, clock, secret)
    register(api, "cust-002")
    enrol_totp(api, clock, "cust-002")
    assert created(api, customer_id="cust-002", methods=["totp"])["new_payee"] is True


@pytest.fixture
def new_payee_by_call(settings: dict[str, Any]) -> None:
    settings["new_payee_methods"] = "callback"


@pytest.mark.usefixtures("new_payee_by_call")
def test_a_new_payee_is_restricted_to_the_policys_methods(
    api: Api, phone: Phone, clock: Clock, secret: str
) -> None:
    challenge = created(api)
    assert challenge["methods"] == ["callback"] and challenge["new_payee"] is True
    assert challenge["required"] is None
    # A TOTP code cannot verify it; the call can.
    assert_problem(totp(api, challenge, totp_code(secret, clock())), 422, "method_unavailable")
    assert verbs(call(phone, challenge, new_sid())) == ["Reject"]
    assert consume(api, challenge).status_code == 200
    # Now a known payee: any method may verify.
    known = created(api, amount=1)
    assert known["methods"] == ["callback", "totp"] and known["new_payee"] is False


@pytest.mark.usefixtures("new_payee_by_call")
def test_a_customer_who_cannot_call_is_refused_naming_the_new_payee_policy(api: Api, clock: Clock) -> None:
    register(api)
    enrol_totp(api, clock)
    body = assert_problem(create(api, methods=["totp"]), 422, "method_unavailable")
    assert body["policy"] == "new_payee"
    assert "AUTHGW_NEW_PAYEE_METHODS" in body["detail"]


@pytest.fixture
def step_up_by_totp(settings: dict[str, Any]) -> None:
    settings["step_up_amount"] = 5_000_000
    settings["step_up_methods"] = "totp"


@pytest.mark.usefixtures("step_up_by_totp")
def test_from_the_step_up_amount_only_its_methods_verify(api: Api, secret: str) -> None:
    assert created(api, amount=4_999_999)["methods"] == ["callback", "totp"]
    assert created(api, amount=5_000_000)["methods"] == ["totp"]
    body = assert_problem(create(api, amount=5_000_000, methods=["callback"]), 422, "method_unavailable")
    assert body["policy"] == "step_up"


# -- dual factor ----------------------------------------------------------------------------


@pytest.fixture
def dual(settings: dict[str, Any]) -> None:
    settings["dual_factor_amount"] = DUAL


def call(phone: Phone, challenge: dict[str, Any], sid: str) -> Any:
    return twiml(phone.call(PHONE, challenge["callback"]["number"], sid))


def approve_by_call(phone: Phone, challenge: dict[str, Any], key: str = "1") -> Any:
    sid = new_sid()
    root = call(phone, challenge, sid)
    # Reject mode, yet the call is answered and reads the transaction back.
    assert "Reject" not in verbs(root)
    assert yen(challenge["amount"]) in spoken(root)
    return twiml(phone.press(gather_of(root), key, sid))


@pytest.mark.usefixtures("dual")
def test_below_the_dual_amount_one_factor_is_enough(api: Api, secret: str) -> None:
    assert created(api, amount=DUAL - 1)["required"] is None


@pytest.mark.usefixtures("dual")
def test_dual_factor_totp_then_call(api: Api, phone: Phone, clock: Clock, secret: str) -> None:
    challenge = created(api, amount=DUAL)
    assert challenge["required"] == ["callback", "totp"]
    rv = totp(api, challenge, totp_code(secret, clock()))
    assert rv.status_code == 200 and rv.get_json()["status"] == "pending"
    assert_problem(consume(api, challenge), 409, "challenge_not_verified")
    # The same factor again verifies nothing more.
    clock.advance(30)
    assert_problem(totp(api, challenge, totp_code(secret, clock())), 409, "challenge_not_pending")
    approve_by_call(phone, challenge)
    out = read(api, challenge)
    assert out["status"] == "verified" and out["verified_by"] == "callback+totp"
    assert consume(api, challenge).status_code == 200
    assert [e["method"] for e in of_type(api, "challenge.verified")] == ["callback+totp"]
    assert [e["method"] for e in of_type(api, "challenge.factor_verified")] == ["totp"]


@pytest.mark.usefixtures("dual")
def test_dual_factor_call_then_totp(api: Api, phone: Phone, clock: Clock, secret: str) -> None:
    challenge = created(api, amount=DUAL)
    approve_by_call(phone, challenge)
    assert read(api, challenge)["status"] == "pending"
    # A second call on it verifies nothing.
    assert verbs(call(phone, challenge, new_sid())) == ["Reject"]
    rv = totp(api, challenge, totp_code(secret, clock()))
    assert rv.status_code == 200
    assert rv.get_json()["status"] == "verified" and rv.get_json()["verified_by"] == "callback+totp"


@pytest.mark.usefixtures("dual")
def test_a_wrong_totp_after_the_call_costs_an_attempt_and_verifies_nothing(
    api: Api, phone: Phone, clock: Clock, secret: str
) -> None:
    challenge = created(api, amount=DUAL)
    approve_by_call(phone, challenge)
    body = assert_problem(totp(api, challenge, wrong_code(secret, clock())), 422, "invalid_code")
    assert body["attempts_left"] == 2
    assert read(api, challenge)["status"] == "pending"
    rv = totp(api, challenge, totp_code(secret, clock()))
    assert rv.get_json()["status"] == "verified"


@pytest.mark.usefixtures("dual")
def test_a_denial_on_the_call_after_the_totp_denies(
    api: Api, phone: Phone, clock: Clock, secret: str
) -> None:
    challenge = created(api, amount=DUAL)
    assert totp(api, challenge, totp_code(secret, clock())).status_code == 200
    approve_by_call(phone, challenge, "9")
    out = read(api, challenge)
    assert out["status"] == "denied" and out["verified_by"] is None
    assert_problem(consume(api, challenge), 409, "challenge_not_verified")


@pytest.mark.usefixtures("dual")
def test_dual_factor_needs_both_methods(api: Api, clock: Clock) -> None:
    register(api)  # no TOTP
    body = assert_problem(create(api, amount=DUAL), 422, "method_unavailable")
    assert body["policy"] == "dual_factor"
    enrol_totp(api, clock)
    body = assert_problem(create(api, amount=DUAL, methods=["totp"]), 422, "method_unavailable")
    assert body["policy"] == "dual_factor"


@pytest.fixture
def code_mode(settings: dict[str, Any]) -> None:
    settings["dual_factor_amount"] = DUAL
    settings["callback_mode"] = "code"


@pytest.mark.usefixtures("code_mode")
def test_dual_factor_in_code_mode_keys_in_the_code(api: Api, phone: Phone, clock: Clock, secret: str) -> None:
    challenge = created(api, amount=DUAL)
    sid = new_sid()
    root = call(phone, challenge, sid)
    gather = gather_of(root)
    assert gather.attrib.get("numDigits") == str(len(challenge["callback"]["code"]))
    twiml(phone.press(gather, challenge["callback"]["code"], sid))
    assert read(api, challenge)["status"] == "pending"
    assert totp(api, challenge, totp_code(secret, clock())).get_json()["verified_by"] == "callback+totp"
