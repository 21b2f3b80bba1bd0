"""A payee's strings carry no control or format characters, and TwiML is always well-formed XML.

A ``\\x00`` or ``\\x07`` in ``payee.name`` once made the confirm-mode TwiML malformed, so the
customer's call failed. Two defences, each tested on its own: the API refuses such strings
(422 ``validation_error`` naming the field), and the TwiML builder cannot emit invalid XML
whatever a stored record holds (records written before the validation existed still reach it).
"""

from __future__ import annotations

import json
import secrets
import xml.dom.minidom
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from authgw.app import create_app
from authgw.keys import Keys
from authgw.webhooks.speech import Voice
from tests.helpers.api import Api, assert_problem, field_errors, register, transfer
from tests.helpers.settings import CALLBACK_NUMBERS, PUBLIC_URL, TWILIO_TOKEN, settings_for_tests

FAKE_ONLY = pytest.mark.parametrize("store", ["fake"], indirect=True)

PAYEES = {
    "transfer": {
        "bank_code": "0168",
        "branch_code": "001",
        "account_type": "ordinary",
        "account_number": "1234567",
        "name": "ﾔﾏﾀﾞ ﾀﾛｳ",
    },
    "payeasy": {
        "biller_number": "12345",
        "customer_number": "1234567890",
        "confirmation_number": "123456",
        "name": "ﾄｳｷｮｳﾄ",
    },
}
# Cc (C0, DEL, C1), Cf (zero-width, bidi overrides, BOM, soft hyphen) and a lone surrogate.
BAD_CHARACTERS = [
    "\x00",
    "\x07",
    "\t",
    "\n",
    "\x1b",
    "\x7f",
    "\x85",
    "\x9f",
    "\u200b",
    "\u200d",
    "\u202e",
    "\u2066",
    "\ufeff",
    "\u00ad",
    "\ud800",
    "\udfff",
    "\u2028",  # line separator (Zl)
    "\u2029",  # paragraph separator (Zp)
]
FIELDS = [(kind, name) for kind, payee in PAYEES.items() for name in payee if name != "account_type"]


def post_raw(api: Any, body: dict[str, Any]) -> Any:
    # ensure_ascii: a lone surrogate travels as a \\u escape, as a JSON client would send it.
    return api.client.post(
        "/v1/challenges",
        data=json.dumps(body, ensure_ascii=True),
        headers=api.headers({"Content-Type": "application/json"}),
    )


@FAKE_ONLY
@pytest.mark.parametrize("kind, name", FIELDS, ids=[f"{k}.{n}" for k, n in FIELDS])
@pytest.mark.parametrize("char", BAD_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
def test_a_control_or_format_character_in_any_payee_string_is_refused(api, kind, name, char):
    register(api)
    payee = dict(PAYEES[kind])
    for value in (f"{payee[name]}{char}", f"{char}{payee[name]}", char):
        payee[name] = value
        rv = post_raw(api, transfer(kind=kind, payee=payee))
        assert_problem(rv, 422, "validation_error")
        assert f"payee.{name}" in field_errors(rv)
    events = api.get("/v1/customers/cust-001/events").get_json()["events"]
    assert "challenge.created" not in [e["type"] for e in events]


@FAKE_ONLY
@pytest.mark.parametrize(
    "name",
    ["ﾔﾏﾀﾞ ﾀﾛｳ", "ヤマダ　タロウ", "山田太郎", "カ）ヤマダショウジ", "ABC-1.2/(3)", "Ｔｏｋｙｏ"],
)
def test_ordinary_payee_names_are_accepted(api, name):
    register(api)
    rv = post_raw(api, transfer(payee={**PAYEES["transfer"], "name": name}))
    assert rv.status_code == 201, rv.get_data(as_text=True)
    assert rv.get_json()["payee"]["name"] == name


# -- the TwiML builder, whatever the data ---------------------------------------------------


def assert_well_formed(text: str) -> None:
    """Parsed by expat as the bytes Twilio receives: any invalid character fails here."""
    xml.dom.minidom.parseString(text.encode("utf-8"))


# Every code point, lone surrogates included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["transfer", "payeasy"]) | ANY_TEXT,
    name=ANY_TEXT,
    number=ANY_TEXT,
    currency=st.just("JPY") | ANY_TEXT,
    amount=st.integers(min_value=0, max_value=10**15),
    mode=st.sampled_from(["confirm", "code"]),
)
def test_the_twiml_builder_emits_well_formed_xml_for_any_stored_text(
    kind, name, number, currency, amount, mode
):
    field = "account_number" if kind == "transfer" else "customer_number"
    doc = {"kind": kind, "amount": amount, "currency": currency, "payee": {"name": name, field: number}}
    voice = Voice("Polly.Mizuki")
    assert_well_formed(voice.ask(doc, mode, f"{PUBLIC_URL}/webhooks/twilio/confirm?n=1", 6))


@pytest.mark.parametrize("char", BAD_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
def test_a_stored_payee_name_with_a_control_character_still_makes_valid_twiml(char):
    doc = {"kind": "transfer", "amount": 150000, "currency": "JPY", "payee": {"name": f"ﾔﾏ{char}ﾀﾞ"}}
    text = Voice("Polly.Mizuki").ask(doc, "confirm", f"{PUBLIC_URL}/webhooks/twilio/confirm?n=1", 6)
    assert_well_formed(text)
    assert "ヤマダ" in text or "ヤマ ダ" in text


@pytest.fixture
def confirm_app(store: Any, clock: Any) -> Any:
    return create_app({**settings_for_tests(callback_mode="confirm"), "redis_client": store, "clock": clock})


def test_a_record_stored_before_the_validation_is_read_out_as_valid_twiml(confirm_app, store):
    """A challenge whose stored payee holds a BEL (written before names were checked): the
    customer's confirm-mode call is answered with TwiML Twilio can parse."""
    app = confirm_app
    api = Api(app.test_client())
    register(api)
    challenge = api.post("/v1/challenges", transfer()).get_json()
    key = (
        Keys(app.extensions["authgw"].settings.key_prefix).for_customer("cust-001").challenge(challenge["id"])
    )
    doc = json.loads(store.hget(key, "doc"))
    doc["payee"]["name"] = "ﾔﾏﾀﾞ\x07\x00ﾀﾛｳ\ufeff"
    store.hset(key, "doc", json.dumps(doc, ensure_ascii=False))
    url = f"{PUBLIC_URL}/webhooks/twilio/voice"
    params = {
        "CallSid": "CA" + secrets.token_hex(16),
        "From": "+819012345678",
        "To": challenge["callback"]["number"],
        "CallStatus": "ringing",
    }
    rv = app.test_client().post(
        "/webhooks/twilio/voice",
        data=params,
        headers={"X-Twilio-Signature": RequestValidator(TWILIO_TOKEN).compute_signature(url, params)},
    )
    assert rv.status_code == 200, rv.get_data(as_text=True)
    assert_well_formed(rv.get_data(as_text=True))
    assert "<Gather" in rv.get_data(as_text=True)
    assert challenge["callback"]["number"] in CALLBACK_NUMBERS
