"""Status callbacks, signed but malformed webhooks, and failing closed when the store is down."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from authgw.app import create_app
from authgw.keys import Keys
from tests.helpers.api import assert_problem, new_challenge, register
from tests.helpers.calls import (
    LINE_1,
    PHONE,
    Phone,
)
from tests.helpers.phone import twiml
from tests.helpers.ports import free_ports
from tests.helpers.settings import PUBLIC_URL
from tests.helpers.stores import every_key
from tests.helpers.webhooks import call_events


def test_status_callback_is_recorded_with_204(api, phone, store, app):
    register(api)
    new_challenge(api)
    twiml(phone.call(PHONE, LINE_1))
    sid = phone.sids[0]
    rv = phone.status(sid, "completed", CallDuration="0", From=PHONE, To=LINE_1)
    assert rv.status_code == 204 and rv.get_data() == b""
    record = store.hgetall(Keys(app.extensions["authgw"].settings.key_prefix).call_status(sid))
    assert record["status"] == "completed"
    assert record["from"] == PHONE
    (status,) = call_events(store, app)
    assert status["type"] == "call.status" and status["status"] == "completed"
    assert status["call_sid"] == sid


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/webhooks/twilio/voice", {"From": PHONE, "To": LINE_1}, "CallSid"),
        ("/webhooks/twilio/voice", {"CallSid": "CA123", "From": PHONE, "To": LINE_1}, "CallSid"),
        ("/webhooks/twilio/voice", {"CallSid": "CA" + "0" * 32, "From": "9" * 300, "To": LINE_1}, "From"),
        ("/webhooks/twilio/status", {"CallSid": "CA" + "0" * 32, "CallStatus": "exploded"}, "CallStatus"),
        ("/webhooks/twilio/confirm?n=1", {"CallSid": "CA" + "0" * 32, "Digits": "12a"}, "Digits"),
        ("/webhooks/twilio/confirm?n=zero", {"CallSid": "CA" + "0" * 32, "Digits": "1"}, "n"),
        ("/webhooks/twilio/confirm", {"CallSid": "CA" + "0" * 32, "Digits": "1"}, "n"),
    ],
)
def test_signed_but_malformed_webhooks_are_validation_errors(phone, store, path, params, field):
    before = every_key(store)
    rv = phone.post(f"{PUBLIC_URL}{path}", params)
    body = assert_problem(rv, 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == [field]
    assert every_key(store) == before


def unreachable_app(settings: dict[str, Any], clock: Any) -> Any:
    """An app whose store refuses connections (a closed loopback port)."""
    (port,) = free_ports(1)
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2, decode_responses=True)
    return create_app({**settings, "redis_client": client, "clock": clock})


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/webhooks/twilio/voice", {"CallSid": "CA" + "1" * 32, "From": PHONE, "To": LINE_1}),
        ("/webhooks/twilio/voice", {"CallSid": "CA" + "1" * 32, "From": "anonymous", "To": LINE_1}),
        ("/webhooks/twilio/confirm?n=1", {"CallSid": "CA" + "1" * 32, "Digits": "1"}),
        ("/webhooks/twilio/status", {"CallSid": "CA" + "1" * 32, "CallStatus": "completed"}),
    ],
)
def test_store_down_fails_closed_with_503(settings, clock, path, params):
    phone = Phone(unreachable_app(settings, clock).test_client())
    rv = phone.post(f"{PUBLIC_URL}{path}", params)
    assert_problem(rv, 503, "store_unavailable")
