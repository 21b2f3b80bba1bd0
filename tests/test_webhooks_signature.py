"""Twilio request signatures: the published vectors, and the gateway's door (403, nothing changed).

The vectors are twilio-python's own (tests/unit/test_request_validator.py), as listed in the
project's references: token ``12345``, URL ``https://mycompany.com/myapp.php?foo=1&bar=2`` and
the parameters below, signed over the URL as written, with the default port added, and with
another port.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from authgw.app import create_app
from tests.helpers.api import assert_problem, new_challenge, register
from tests.helpers.calls import LINE_1, PHONE, Phone
from tests.helpers.phone import twiml, verbs
from tests.helpers.settings import PUBLIC_URL, TWILIO_TOKEN
from tests.helpers.stores import every_key
from tests.helpers.webhooks import new_sid

VECTOR_TOKEN = "12345"
VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
VECTORS = [
    (VECTOR_URL, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
    ("https://mycompany.com:443/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="),
    ("http://mycompany.com:80/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),
    ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
]
VOICE = "/webhooks/twilio/voice"


@pytest.mark.parametrize(("url", "signature"), VECTORS)
def test_published_vectors(url, signature):
    validator = RequestValidator(VECTOR_TOKEN)
    assert validator.compute_signature(url, VECTOR_PARAMS) == signature
    assert validator.validate(url, VECTOR_PARAMS, signature)


def test_published_vector_with_the_default_port_validates_against_the_url_without_it():
    validator = RequestValidator(VECTOR_TOKEN)
    assert validator.validate(VECTOR_URL, VECTOR_PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w=")
    assert validator.validate(
        "https://mycompany.com:443/myapp.php?foo=1&bar=2", VECTOR_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )


def test_published_vector_is_refused_for_another_token_url_or_parameters():
    validator = RequestValidator(VECTOR_TOKEN)
    good = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert not RequestValidator("54321").validate(VECTOR_URL, VECTOR_PARAMS, good)
    assert not validator.validate("https://mycompany.com/myapp.php?foo=1&bar=3", VECTOR_PARAMS, good)
    assert not validator.validate(VECTOR_URL, {**VECTOR_PARAMS, "Digits": "1235"}, good)
    assert not validator.validate(VECTOR_URL, VECTOR_PARAMS, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=")


# -- the gateway's door -----------------------------------------------------------------------


def call_params(sid: str | None = None, **overrides: str) -> dict[str, str]:
    params = {
        "CallSid": sid or new_sid(),
        "AccountSid": "AC" + "0" * 32,
        "From": PHONE,
        "To": LINE_1,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    params.update(overrides)
    return params


def sign(url: str, params: dict[str, str], token: str = TWILIO_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


@pytest.fixture
def pending(api: Any) -> dict[str, Any]:
    register(api)
    return new_challenge(api)


@pytest.fixture
def refused(app: Any, api: Any, store: Any, pending: dict[str, Any]) -> Callable[..., None]:
    """``refused(path, signature=None, data=..., json=...)``: post to a webhook and assert it is
    refused and nothing changed."""
    client = app.test_client()

    def send(path: str, signature: str | None = None, **body: Any) -> None:
        headers = {} if signature is None else {"X-Twilio-Signature": signature}
        assert_refused_and_nothing_changed(
            api, store, pending, lambda: client.post(path, headers=headers, **body)
        )

    return send


def assert_refused_and_nothing_changed(api: Any, store: Any, pending: dict[str, Any], send: Any) -> None:
    before = every_key(store)
    events_before = api.get("/v1/customers/cust-001/events").get_json()
    rv = send()
    assert_problem(rv, 403, "forbidden")
    assert TWILIO_TOKEN not in rv.get_data(as_text=True)
    assert every_key(store) == before
    assert api.get("/v1/customers/cust-001/events").get_json() == events_before
    assert api.get(f"/v1/challenges/{pending['id']}").get_json()["status"] == "pending"


def test_a_correctly_signed_call_is_accepted(app, api, pending):
    params = call_params()
    rv = app.test_client().post(
        VOICE, data=params, headers={"X-Twilio-Signature": sign(PUBLIC_URL + VOICE, params)}
    )
    assert verbs(twiml(rv)) == ["Reject"]
    assert api.get(f"/v1/challenges/{pending['id']}").get_json()["status"] == "verified"


def test_missing_signature_is_refused(refused):
    refused(VOICE, data=call_params())


def test_empty_signature_is_refused(refused):
    refused(VOICE, data=call_params(), signature="")


@pytest.mark.parametrize(
    "tamper",
    [
        {"From": "+819011112222"},
        {"To": "+815030000002"},
        {"CallSid": "CA" + "f" * 32},
        {"Digits": "1"},
        {"StirVerstat": "TN-Validation-Passed-A"},
    ],
)
def test_tampered_parameters_are_refused(refused, tamper):
    signed_params = call_params(From="+819087654321")
    signature = sign(PUBLIC_URL + VOICE, signed_params)
    sent = {**signed_params, **tamper}
    refused(VOICE, data=sent, signature=signature)


@pytest.mark.parametrize(
    "signed_url",
    [
        "http://localhost" + VOICE,  # what the Host header says: never trusted
        "http://gw.example.jp" + VOICE,  # the scheme a TLS-terminating proxy leaves
        "https://gw.example.org" + VOICE,
        PUBLIC_URL + "/webhooks/twilio/status",
        PUBLIC_URL + VOICE + "?n=1",
        "https://gw.example.jp:8443" + VOICE,
    ],
)
def test_signature_over_another_url_is_refused(refused, signed_url):
    params = call_params()
    signature = sign(signed_url, params)
    refused(VOICE, data=params, signature=signature)


def test_signature_with_another_token_is_refused(refused):
    params = call_params()
    signature = sign(PUBLIC_URL + VOICE, params, token="another-accounts-token")
    refused(VOICE, data=params, signature=signature)


def test_signed_query_string_is_part_of_the_url(refused):
    params = {"CallSid": new_sid(), "Digits": "1"}
    signature = sign(PUBLIC_URL + "/webhooks/twilio/confirm?n=1", params)
    refused("/webhooks/twilio/confirm?n=2", data=params, signature=signature)


def test_json_body_is_refused_even_with_a_signature(refused):
    params = call_params()
    signature = sign(PUBLIC_URL + VOICE, {})
    refused(VOICE, json=params, signature=signature)


@pytest.mark.parametrize(
    "path", ["/webhooks/twilio/voice", "/webhooks/twilio/confirm?n=1", "/webhooks/twilio/status"]
)
def test_every_webhook_checks_the_signature(refused, path):
    params = call_params(Digits="1", CallStatus="completed")
    signature = sign(PUBLIC_URL + path, params, token="wrong-token")
    refused(path, data=params, signature=signature)


def test_host_and_forwarded_headers_do_not_change_the_url_checked(app, api, pending):
    params = call_params()
    rv = app.test_client().post(
        VOICE,
        data=params,
        base_url="http://internal-lb:8080",
        headers={
            "X-Twilio-Signature": sign(PUBLIC_URL + VOICE, params),
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "http",
        },
    )
    assert verbs(twiml(rv)) == ["Reject"]


@pytest.mark.parametrize(
    ("public_url", "twilio_signed"),
    [
        ("https://gw.example.jp", "https://gw.example.jp"),
        ("https://gw.example.jp", "https://gw.example.jp:443"),
        ("https://gw.example.jp:443", "https://gw.example.jp"),
        ("https://gw.example.jp:443", "https://gw.example.jp:443"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://gw.example.jp/authgw", "https://gw.example.jp/authgw"),
    ],
)
def test_public_url_with_and_without_an_explicit_port(settings, store, clock, public_url, twilio_signed):
    app = create_app({**settings, "public_url": public_url, "redis_client": store, "clock": clock})
    phone = Phone(app.test_client(), public_url=twilio_signed)
    assert verbs(twiml(phone.call("+819087654321", LINE_1))) == ["Reject"]


@pytest.mark.parametrize(
    ("public_url", "twilio_signed"),
    [
        ("https://gw.example.jp", "https://gw.example.jp:8443"),
        ("https://gw.example.jp:443", "http://gw.example.jp:80"),
        ("https://gw.example.jp/authgw", "https://gw.example.jp"),
    ],
)
def test_public_url_with_another_port_scheme_or_prefix_is_refused(
    settings, store, clock, public_url, twilio_signed
):
    app = create_app({**settings, "public_url": public_url, "redis_client": store, "clock": clock})
    phone = Phone(app.test_client(), public_url=twilio_signed)
    assert_problem(phone.call("+819087654321", LINE_1), 403, "forbidden")


def test_without_a_token_every_webhook_is_refused(store, clock, settings):
    settings = {**settings, "twilio_auth_token": "", "callback_numbers": ""}
    app = create_app({**settings, "redis_client": store, "clock": clock})
    phone = Phone(app.test_client(), token="")
    assert_problem(phone.call(), 403, "forbidden")
