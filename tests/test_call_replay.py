"""A captured signed voice webhook stays useless after the CallSid memory (issue 10, attack 4).

Twilio's signatures carry no timestamp: a request captured once is valid for as long as the
auth token is. The guard is the call's record (``receive_call.lua``): it fixes when the call
was first seen, and a call never approves a challenge created after that. The record is kept
as long as the trail keeps the call's events (``AUTHGW_EVENTS_RETENTION_SECONDS``), and at
least ``AUTHGW_CALL_RETENTION_SECONDS``; the per-customer marker of the dialogue may go
sooner. Time is moved with the injected clock and by expiring, in the store, every key whose
time to live has run out ("time travel"), never by waiting.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from authgw.app import create_app
from authgw.webhooks.simulate import call_parameters
from tests.helpers.api import Api, new_challenge, register
from tests.helpers.settings import PUBLIC_URL, TWILIO_TOKEN, settings_for_tests
from tests.helpers.stores import every_key

PHONE = "+819012345678"
DAY = 86400


@pytest.fixture
def settings() -> dict[str, Any]:
    # The bank keeps its trail longer than the CallSid memory it had: 90 days against 30.
    return settings_for_tests(events_retention_seconds=90 * DAY, call_retention_seconds=30 * DAY)


def travel(store: Any, clock: Any, seconds: int) -> None:
    """Move time on: the clock, and every key's time to live (gone when it runs out)."""
    clock.advance(seconds)
    for key in every_key(store):
        ttl = store.pttl(key)
        if ttl < 0:
            continue
        if ttl <= seconds * 1000:
            store.delete(key)
        else:
            store.pexpire(key, ttl - seconds * 1000)


def capture(to: str, from_: str = PHONE) -> tuple[dict[str, str], str]:
    """A voice webhook as Twilio signs it: the form and its signature, to post now and later."""
    params = call_parameters("CA" + secrets.token_hex(16), from_, to)
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        f"{PUBLIC_URL}/webhooks/twilio/voice", params
    )
    return params, signature


def post(app: Any, params: dict[str, str], signature: str) -> Any:
    rv = app.test_client().post(
        "/webhooks/twilio/voice", data=params, headers={"X-Twilio-Signature": signature}
    )
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return rv


def status(api: Any, challenge: dict[str, Any]) -> str:
    return str(api.get(f"/v1/challenges/{challenge['id']}").get_json()["status"])


@pytest.mark.parametrize("days", [31, 89])
def test_a_replayed_voice_webhook_verifies_nothing_after_the_call_marker_expired(
    app, api, store, clock, days
):
    register(api)
    first = new_challenge(api, methods=["callback"])
    params, signature = capture(first["callback"]["number"])
    post(app, params, signature)
    assert status(api, first) == "verified"

    travel(store, clock, days * DAY)  # the customer's marker of the call is gone after 30 days
    # The attacker, with the online-banking password, starts a transfer until it gets the
    # number the captured call dialled, and plays the captured request back.
    for _ in range(3):
        challenge = new_challenge(api, methods=["callback"])
        if challenge["callback"]["number"] == params["To"]:
            break
        api.post(f"/v1/challenges/{challenge['id']}/cancel")
    assert challenge["callback"]["number"] == params["To"]
    rv = post(app, params, signature)
    assert b"<Reject" in rv.get_data()
    assert status(api, challenge) == "pending"
    trail = api.get("/v1/customers/cust-001/events?limit=100").get_json()["events"]
    assert not [
        e for e in trail if e["type"] == "challenge.verified" and e["challenge_id"] == challenge["id"]
    ]


def test_the_call_record_outlives_the_trails_retention_of_its_events(app, api, store):
    register(api)
    challenge = new_challenge(api, methods=["callback"])
    params, signature = capture(challenge["callback"]["number"])
    post(app, params, signature)
    record = app.extensions["authgw"].store.keys.call_status(params["CallSid"])
    assert store.pttl(record) > 90 * DAY * 1000


def test_with_the_defaults_the_call_record_still_outlives_the_events(store, clock):
    # Both 30 days by default: the record must not go first.
    app = create_app({**settings_for_tests(), "redis_client": store, "clock": clock})
    api = Api(app.test_client())
    register(api)
    challenge = new_challenge(api, methods=["callback"])
    params, signature = capture(challenge["callback"]["number"])
    post(app, params, signature)
    record = app.extensions["authgw"].store.keys.call_status(params["CallSid"])
    events = app.extensions["authgw"].store.keys.for_customer("cust-001").events
    assert store.pttl(record) > store.pttl(events)
