"""``/metrics``: open by default, behind a bearer token with ``AUTHGW_METRICS_TOKEN``; and no
customer id, phone number or amount in any label, whatever traffic it counted."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twilio.request_validator import RequestValidator

from authgw.app import create_app
from authgw.errors import ConfigError
from authgw.settings import load_settings
from tests.helpers.api import Api, assert_problem, enrol_totp, register, totp_code, transfer, wrong_code
from tests.helpers.settings import API_KEY, PUBLIC_URL, TWILIO_TOKEN, settings_for_tests

METRICS_TOKEN = "scrape-token-for-prometheus-0001"


@pytest.fixture
def token_app(store: Any, clock: Any) -> Any:
    return create_app(
        {**settings_for_tests(metrics_token=METRICS_TOKEN), "redis_client": store, "clock": clock}
    )


def label_values(text: str) -> set[str]:
    return {
        value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for value in sample.labels.values()
    }


def test_metrics_are_open_when_no_token_is_set(app):
    rv = app.test_client().get("/metrics")
    assert rv.status_code == 200 and rv.mimetype == "text/plain"
    assert "authgw_requests_total" in rv.get_data(as_text=True)


def test_metrics_answer_the_token(token_app):
    rv = token_app.test_client().get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert rv.status_code == 200 and rv.mimetype == "text/plain"
    assert "authgw_requests_total" in rv.get_data(as_text=True)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {METRICS_TOKEN}",
        f"Bearer {METRICS_TOKEN}x",
        f"Bearer {METRICS_TOKEN[:-1]}",
        f"Bearer {METRICS_TOKEN.upper()}",
        f"Bearer {API_KEY}",  # an API client's key is not the scrape token
        "Bearer " + secrets.token_urlsafe(24),
    ],
)
def test_with_a_token_metrics_refuse_anything_else_with_401(token_app, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    rv = token_app.test_client().get("/metrics", headers=headers)
    body = assert_problem(rv, 401, "unauthorized")
    assert rv.headers["WWW-Authenticate"].startswith("Bearer")
    text = rv.get_data(as_text=True)
    assert "authgw_requests_total" not in text and METRICS_TOKEN not in text
    assert "metrics" in body["detail"].lower()


def test_the_token_protects_metrics_only(token_app):
    client = token_app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert Api(client).get("/v1/customers/nobody").status_code == 404
    # ... and is not an API key.
    rv = client.get("/v1/customers/nobody", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert_problem(rv, 401, "unauthorized")


def test_the_token_is_read_from_the_environment():
    environ = {
        "AUTHGW_API_KEYS": f"corebank={API_KEY}",
        "AUTHGW_SECRET_KEY": "k" * 32,
        "AUTHGW_METRICS_TOKEN": f"  {METRICS_TOKEN}  ",
    }
    token = load_settings(environ=environ).metrics_token
    assert token is not None and token.digest == hashlib.sha256(METRICS_TOKEN.encode()).digest()
    assert load_settings(environ={**environ, "AUTHGW_METRICS_TOKEN": ""}).metrics_token is None
    assert METRICS_TOKEN not in repr(load_settings(environ=environ))


@pytest.mark.parametrize(
    "token", ["short", "fifteen-chars-x", "with a space in it!", "comma,separated-token"]
)
def test_a_weak_or_malformed_token_stops_start_up_naming_it(token):
    with pytest.raises(ConfigError) as caught:
        load_settings(settings_for_tests(metrics_token=token))
    assert caught.value.name == "AUTHGW_METRICS_TOKEN"


# -- no customer data in labels ----------------------------------------------------------------

CUSTOMERS = ("cust-label-4711", "acct.0815.label")
PHONES = {"090-4711-0815": "+819047110815", "080-2468-1357": "+818024681357"}
AMOUNTS = (123457, 7654321)
PAYEE_ACCOUNT = "8642097"


def signed_post(client: Any, path: str, params: dict[str, str]) -> Any:
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def call(sid: str, from_: str, to: str) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": from_, "To": to, "CallStatus": "ringing"}


def test_no_customer_id_phone_number_or_amount_appears_in_any_label(app, api, clock):
    client = app.test_client()
    sensitive: set[str] = {*CUSTOMERS, PAYEE_ACCOUNT, *(str(a) for a in AMOUNTS)}
    for raw, e164 in PHONES.items():
        sensitive |= {raw, e164, e164[1:], e164[-8:], raw.replace("-", "")}
    challenge_ids = []
    for customer, (raw, _), amount in zip(CUSTOMERS, PHONES.items(), AMOUNTS, strict=True):
        register(api, customer, (raw,))
        secret = enrol_totp(api, clock, customer)
        payee = {**transfer()["payee"], "account_number": PAYEE_ACCOUNT}
        rv = api.post("/v1/challenges", transfer(customer, amount=amount, payee=payee))
        assert rv.status_code == 201, rv.get_data(as_text=True)
        challenge = rv.get_json()
        challenge_ids.append(challenge["id"])
        api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": wrong_code(secret, clock())})
        api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": totp_code(secret, clock())})
        api.post(f"/v1/challenges/{challenge['id']}/consume", {"transaction_digest": "0" * 64})
        api.get(f"/v1/challenges/{challenge['id']}")
        api.get(f"/v1/customers/{customer}/events?limit=5")
        # Refusals and paths no route matches carry the same data.
        api.post("/v1/challenges", transfer(customer, amount=amount * 10**9))
        api.get(f"/v1/customers/{customer}/no-such-thing/{amount}")
        api.get(f"/v1/challenges/{challenge['id']}x")
        second = api.post("/v1/challenges", transfer(customer, amount=amount)).get_json()
        challenge_ids.append(second["id"])
        signed_post(
            client, "/webhooks/twilio/voice", call("CA" + secrets.token_hex(16), raw, "+815030000009")
        )
        number = second["callback"]["number"]
        sid = "CA" + secrets.token_hex(16)
        signed_post(client, "/webhooks/twilio/voice", call(sid, PHONES[raw], number))
        signed_post(
            client, "/webhooks/twilio/status", {**call(sid, PHONES[raw], number), "CallStatus": "completed"}
        )
        signed_post(client, "/webhooks/twilio/confirm?n=1", {**call(sid, PHONES[raw], number), "Digits": "1"})
    sensitive |= set(challenge_ids)

    text = client.get("/metrics").get_data(as_text=True)
    values = label_values(text)
    assert {"create_challenge", "verify_totp", "/v1/challenges/<challenge_id>/totp"} <= values
    leaked = {(s, v) for s in sensitive for v in values if s in v}
    assert not leaked
    for s in sensitive - {str(a) for a in AMOUNTS}:
        assert s not in text
