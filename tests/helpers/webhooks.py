"""Twilio's signed webhooks one request at a time: a call, a status callback, the TwiML verbs
of the answer, and what the call left on the trail."""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from typing import Any

from twilio.request_validator import RequestValidator

from authgw.keys import Keys
from authgw.webhooks.simulate import call_parameters
from tests.helpers.settings import PUBLIC_URL, TWILIO_TOKEN


def new_sid() -> str:
    return "CA" + secrets.token_hex(16)


def signed_post(client: Any, path: str, params: dict[str, str]) -> Any:
    """POST ``params`` to ``path`` signed as Twilio signs them (over the public URL)."""
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def call(client: Any, from_: str, to: str, sid: str, **extra: str) -> Any:
    """An inbound call's voice webhook, with the parameters Twilio sends."""
    params = {**call_parameters(sid, from_, to), **extra}
    return signed_post(client, "/webhooks/twilio/voice", params)


def status(client: Any, sid: str, call_status: str, **extra: str) -> Any:
    """A call status callback."""
    return signed_post(
        client, "/webhooks/twilio/status", {"CallSid": sid, "CallStatus": call_status, **extra}
    )


def verbs(rv: Any) -> list[str]:
    """The TwiML verbs of a 200 text/xml answer (a parse error fails the test)."""
    assert rv.status_code == 200, rv.get_data(as_text=True)
    assert rv.mimetype == "text/xml"
    root = ET.fromstring(rv.get_data())
    assert root.tag == "Response"
    return [child.tag for child in root]


def call_events(store: Any, app: Any) -> list[dict[str, str]]:
    """The gateway's call stream (calls no customer's trail can hold), oldest first."""
    key = Keys(app.extensions["authgw"].settings.key_prefix).call_events()
    return [fields for _, fields in store.xrange(key)]


def challenge_status(api: Any, challenge: dict[str, Any]) -> str:
    rv = api.get(f"/v1/challenges/{challenge['id']}")
    assert rv.status_code == 200
    return str(rv.get_json()["status"])


def event_types(api: Any, customer_id: str) -> list[str]:
    """The customer's trail, oldest first."""
    rv = api.get(f"/v1/customers/{customer_id}/events?limit=100")
    assert rv.status_code == 200
    return [e["type"] for e in reversed(rv.get_json()["events"])]
