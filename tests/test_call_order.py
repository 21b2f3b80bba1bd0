"""Twilio does not promise order: a status callback may arrive before the call's voice webhook.

A status for a CallSid the gateway has not seen is recorded (on the call stream and the call's
record), but nothing it writes can refuse the voice webhook that follows.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from authgw.app import create_app
from authgw.keys import Keys
from tests.helpers.api import Api, new_challenge, register
from tests.helpers.settings import CALLBACK_NUMBERS, PUBLIC_URL, settings_for_tests
from tests.helpers.webhooks import (
    call,
    call_events,
    challenge_status,
    event_types,
    new_sid,
    signed_post,
    status,
    verbs,
)

PHONE = "+819011113333"
LINE = CALLBACK_NUMBERS[0]


@pytest.mark.parametrize("call_status", ["ringing", "in-progress", "completed", "no-answer"])
def test_a_status_before_the_voice_webhook_does_not_block_the_call(api, app, store, call_status):
    register(api, phones=(PHONE,))
    challenge = new_challenge(api)
    twilio = app.test_client()
    sid = new_sid()
    rv = status(twilio, sid, call_status, From=PHONE, To=LINE)
    assert rv.status_code == 204
    assert verbs(call(twilio, PHONE, LINE, sid)) == ["Reject"]
    assert challenge_status(api, challenge) == "verified"
    # The status is not lost: it is on the call stream and on the call's record.
    assert [(e["type"], e.get("status")) for e in call_events(store, app)] == [("call.status", call_status)]
    record = store.hgetall(Keys(app.extensions["authgw"].settings.key_prefix).call_status(sid))
    assert record["status"] == call_status and record["status_count"] == "1"
    assert record["from"] == PHONE and record["to"] == LINE


def test_a_status_before_the_voice_webhook_leaves_the_dialogue_working(store, clock):
    app = create_app({**settings_for_tests(callback_mode="confirm"), "redis_client": store, "clock": clock})
    api, twilio = Api(app.test_client()), app.test_client()
    register(api, phones=(PHONE,))
    challenge = new_challenge(api)
    sid = new_sid()
    assert status(twilio, sid, "ringing").status_code == 204
    rv = call(twilio, PHONE, LINE, sid)
    assert "Gather" in verbs(rv)
    gather = ET.fromstring(rv.get_data()).find("Gather")
    assert gather is not None
    assert status(twilio, sid, "in-progress").status_code == 204
    action = gather.attrib["action"].removeprefix(PUBLIC_URL)
    assert "Say" in verbs(signed_post(twilio, action, {"CallSid": sid, "Digits": "1"}))
    assert challenge_status(api, challenge) == "verified"


def test_the_call_after_an_early_status_is_still_one_call(api, app):
    register(api, phones=(PHONE,))
    new_challenge(api)
    twilio = app.test_client()
    sid = new_sid()
    assert status(twilio, sid, "ringing").status_code == 204
    assert verbs(call(twilio, PHONE, LINE, sid)) == ["Reject"]
    second = new_challenge(api)  # created after the call was first seen
    assert verbs(call(twilio, PHONE, second["callback"]["number"], sid)) == ["Reject"]
    assert verbs(call(twilio, PHONE, LINE, sid)) == ["Reject"]
    assert challenge_status(api, second) == "pending"
    assert event_types(api, "cust-001").count("challenge.verified") == 1
