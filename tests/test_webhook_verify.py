"""``authgw.client.verify_webhook`` against signatures made by a few lines of hmac
(``tests/helpers/delivery_signing.py``), not by the ``standardwebhooks`` package it is built on.

The vector is the one the Standard Webhooks reference libraries test their signing against
(libraries/python/tests/test_webhooks.py, ``test_sign_function``): it pins the hand-written
signer, which then signs every delivery below.
"""

from __future__ import annotations

import json
import time

import pytest

from authgw.client import InvalidWebhook, verify_webhook
from tests.helpers.delivery_signing import new_secret, sign, signed_by, signed_headers

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

EVENT_ID = "ev_" + "0" * 32 + "_1764643200000-0"
BODY = json.dumps(
    {
        "type": "challenge.verified",
        "timestamp": "2026-12-02T03:00:00Z",
        "data": {"id": EVENT_ID, "at": "2026-12-02T03:00:00Z", "type": "challenge.verified", "payee": "ﾔﾏﾀﾞ"},
    },
    ensure_ascii=False,
    separators=(",", ":"),
).encode()


def refusal(headers, body, secret) -> str:
    with pytest.raises(InvalidWebhook) as refused:
        verify_webhook(headers, body, secret)
    return refused.value.reason


def test_the_hand_written_signer_reproduces_the_standard_webhooks_vector():
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_the_vector_is_refused_now_for_its_age_not_its_signature():
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    assert refusal(headers, VECTOR_BODY, VECTOR_SECRET) == "stale_timestamp"


def test_the_vector_body_signed_now_verifies():
    headers = signed_headers([VECTOR_SECRET], VECTOR_ID, VECTOR_BODY)
    assert verify_webhook(headers, VECTOR_BODY, VECTOR_SECRET) == {"test": 2432232314}


def test_a_signed_delivery_verifies_and_gives_the_payload():
    secret = new_secret()
    headers = signed_headers([secret], EVENT_ID, BODY)
    payload = verify_webhook(headers, BODY, secret)
    assert payload["type"] == "challenge.verified" and payload["data"]["id"] == EVENT_ID
    assert verify_webhook(headers, BODY.decode(), secret) == payload  # the body as text too


def test_header_names_are_read_whatever_their_case():
    secret = new_secret()
    headers = {name.title(): value for name, value in signed_headers([secret], EVENT_ID, BODY).items()}
    assert verify_webhook(headers, BODY, secret)["type"] == "challenge.verified"


def test_during_a_rotation_a_header_with_both_signatures_verifies_under_either_secret():
    old, new = new_secret(), new_secret()
    headers = signed_headers([new, old], EVENT_ID, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert signed_by(old, headers, BODY) and signed_by(new, headers, BODY)
    for secrets in (old, new, [old], [new], [old, new], (new, old)):
        assert verify_webhook(headers, BODY, secrets)["data"]["id"] == EVENT_ID


def test_a_receiver_holding_both_secrets_verifies_a_delivery_signed_by_either_alone():
    old, new = new_secret(), new_secret()
    for signer in (old, new):
        assert verify_webhook(signed_headers([signer], EVENT_ID, BODY), BODY, [old, new])


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b.replace(b"challenge.verified", b"challenge.consumed", 1),
        lambda b: b + b" ",
        lambda b: b.replace(b",", b", ", 1),  # re-serialised JSON is not the body that was signed
        lambda b: json.dumps(json.loads(b)).encode(),
    ],
    ids=["changed type", "trailing space", "a space", "re-serialised"],
)
def test_a_tampered_body_is_refused(tamper):
    secret = new_secret()
    headers = signed_headers([secret], EVENT_ID, BODY)
    assert refusal(headers, tamper(BODY), secret) == "bad_signature"


def test_a_changed_id_or_timestamp_is_refused():
    secret = new_secret()
    headers = signed_headers([secret], EVENT_ID, BODY)
    assert refusal({**headers, "webhook-id": EVENT_ID + "x"}, BODY, secret) == "bad_signature"
    later = str(int(headers["webhook-timestamp"]) + 1)
    assert refusal({**headers, "webhook-timestamp": later}, BODY, secret) == "bad_signature"


def test_the_wrong_secret_is_refused():
    headers = signed_headers([new_secret()], EVENT_ID, BODY)
    assert refusal(headers, BODY, new_secret()) == "bad_signature"
    assert refusal(headers, BODY, [new_secret(), new_secret()]) == "bad_signature"


@pytest.mark.parametrize("age", [-301, 301, 3600, -86400])
def test_a_timestamp_more_than_five_minutes_off_is_refused_even_when_signed(age):
    secret = new_secret()
    headers = signed_headers([secret], EVENT_ID, BODY, timestamp=int(time.time()) + age)
    assert signed_by(secret, headers, BODY)
    assert refusal(headers, BODY, secret) == "stale_timestamp"


@pytest.mark.parametrize("age", [-240, 240])
def test_a_timestamp_within_five_minutes_is_accepted(age):
    secret = new_secret()
    headers = signed_headers([secret], EVENT_ID, BODY, timestamp=int(time.time()) + age)
    assert verify_webhook(headers, BODY, secret)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_or_empty_header_is_refused(missing):
    secret = new_secret()
    headers = signed_headers([secret], EVENT_ID, BODY)
    assert refusal({k: v for k, v in headers.items() if k != missing}, BODY, secret) == "missing_header"
    assert refusal({**headers, missing: ""}, BODY, secret) == "missing_header"


@pytest.mark.parametrize("value", ["soon", "nan", "inf", "1e30"])
def test_a_timestamp_that_is_not_a_time_is_refused(value):
    secret = new_secret()
    headers = {**signed_headers([secret], EVENT_ID, BODY), "webhook-timestamp": value}
    assert refusal(headers, BODY, secret) == "stale_timestamp"


@pytest.mark.parametrize("signature", ["", "v1,", "v1,not base64!", "garbage", "v2,AAAA", "v1,AAAA v1"])
def test_a_malformed_signature_is_refused_not_crashed_on(signature):
    secret = new_secret()
    headers = {**signed_headers([secret], EVENT_ID, BODY), "webhook-signature": signature}
    expected = "missing_header" if signature == "" else "bad_signature"
    assert refusal(headers, BODY, secret) == expected


def test_a_body_that_is_not_utf8_is_refused():
    secret = new_secret()
    body = b"\xff\xfe"
    assert refusal(signed_headers([secret], EVENT_ID, body), body, secret) == "bad_signature"


def test_a_signed_body_that_is_not_an_object_is_refused():
    secret = new_secret()
    body = b"[1,2]"
    assert refusal(signed_headers([secret], EVENT_ID, body), body, secret) == "bad_signature"


@pytest.mark.parametrize("secret", [[], "", "whsec_", "whsec_@@@"])
def test_no_usable_secret_is_the_callers_mistake_not_a_refusal(secret):
    headers = signed_headers([new_secret()], EVENT_ID, BODY)
    with pytest.raises(ValueError) as mistake:
        verify_webhook(headers, BODY, secret)
    assert not isinstance(mistake.value, InvalidWebhook)
