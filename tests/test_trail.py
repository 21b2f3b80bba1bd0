"""The events trail is kept by age, not by count (issue 10, "a trail that traffic cannot erase").

Every event stays at least ``AUTHGW_EVENTS_RETENTION_SECONDS``, whatever traffic follows it:
a flood of creations and cancellations for a customer cannot push a verification with its
caller's number and CallSid out of the trail. Events older than the retention do go. The
stream ids are the store's clock, so "older" is judged by the store's time; the tests plant
events with old ids instead of waiting for any clock.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from authgw.errors import ConfigError
from authgw.settings import load_settings
from tests.helpers.api import new_challenge, register
from tests.helpers.settings import PUBLIC_URL, TWILIO_TOKEN, settings_for_tests

PHONE = "+819012345678"
DAY_MS = 86400 * 1000


@pytest.fixture
def settings() -> dict[str, Any]:
    # The flood is the point here: no rate limit stands in for the trail's own guarantee.
    return settings_for_tests(rate_limit_customer=0, rate_limit_client=0)


def signed_call(client: Any, to: str, from_: str = PHONE) -> str:
    """A voice webhook signed as Twilio signs it; returns its CallSid."""
    sid = "CA" + secrets.token_hex(16)
    params = {"CallSid": sid, "From": from_, "To": to, "CallStatus": "ringing", "Direction": "inbound"}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        f"{PUBLIC_URL}/webhooks/twilio/voice", params
    )
    rv = client.post("/webhooks/twilio/voice", data=params, headers={"X-Twilio-Signature": signature})
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return sid


def trail(app: Any, store: Any, customer_id: str = "cust-001") -> list[dict[str, str]]:
    """The whole retained stream, oldest first (the events API pages 100 at a time)."""
    key = app.extensions["authgw"].store.keys.for_customer(customer_id).events
    return [fields for _id, fields in store.xrange(key)]


def test_a_flood_of_creations_does_not_push_the_verification_out(app, api, store, clock):
    register(api)
    verified = new_challenge(api, methods=["callback"])
    sid = signed_call(app.test_client(), verified["callback"]["number"])
    assert api.get(f"/v1/challenges/{verified['id']}").get_json()["status"] == "verified"
    # 600 creations and cancellations: 1,200 events, more than the old count cap of 1,000.
    for _ in range(600):
        challenge = new_challenge(api, methods=["callback"], ttl_seconds=60)
        assert api.post(f"/v1/challenges/{challenge['id']}/cancel").status_code == 200
        clock.advance(60)  # its number is bound to it until its expires_at; then it is free again
    events = trail(app, store)
    assert len(events) >= 1201
    proof = [e for e in events if e["type"] == "challenge.verified"]
    assert len(proof) == 1
    assert proof[0]["challenge_id"] == verified["id"]
    assert proof[0]["call_sid"] == sid
    assert proof[0]["from"] == PHONE


def test_events_older_than_the_retention_go(app, api, store):
    key = app.extensions["authgw"].store.keys.for_customer("cust-001").events
    retention_ms = app.extensions["authgw"].settings.events_retention_seconds * 1000
    (now_s, now_us) = store.time() if not hasattr(store, "get_primaries") else _cluster_time(store, key)
    now_ms = int(now_s) * 1000 + int(now_us) // 1000
    # 300 events written more than the retention ago, then 50 written just inside it.
    for i in range(300):
        store.xadd(
            key, {"type": "challenge.created", "n": str(i)}, id=f"{now_ms - retention_ms - 5000 + i}-0"
        )
    for i in range(50):
        store.xadd(
            key,
            {"type": "challenge.created", "n": f"young-{i}"},
            id=f"{now_ms - retention_ms + 60_000 + i}-0",
        )
    register(api)  # its event is the first one written by the gateway: it trims
    kept = [e.get("n", "") for e in trail(app, store)]
    old = [n for n in kept if n and not n.startswith("young")]
    # MINID ~ drops whole stream nodes (100 entries each): at most one node's worth of the old
    # ones may linger until the next event; everything younger than the retention stays.
    assert len(old) < 100
    assert [n for n in kept if n.startswith("young")] == [f"young-{i}" for i in range(50)]
    # The stream itself outlives its newest event by the retention, and no longer.
    assert retention_ms - 60_000 <= store.pttl(key) <= retention_ms


def _cluster_time(store: Any, key: str) -> Any:
    return store.time(target_nodes=store.get_node_from_key(key))


def test_the_retention_is_a_setting_with_a_thirty_day_default():
    base = settings_for_tests()
    assert load_settings(base, environ={}).events_retention_seconds == 2592000
    two_years = 2 * 365 * 86400
    env = {"AUTHGW_EVENTS_RETENTION_SECONDS": str(two_years)}
    assert load_settings(base, environ=env).events_retention_seconds == two_years
    with pytest.raises(ConfigError, match="AUTHGW_EVENTS_RETENTION_SECONDS"):
        load_settings(base, environ={"AUTHGW_EVENTS_RETENTION_SECONDS": "60"})


def test_the_removed_count_cap_stops_start_up_rather_than_being_ignored():
    # A bank that set it expected a cap; it is gone (events are kept by age), so say so.
    with pytest.raises(ConfigError, match="AUTHGW_EVENTS_MAX_PER_CUSTOMER"):
        load_settings(settings_for_tests(), environ={"AUTHGW_EVENTS_MAX_PER_CUSTOMER": "1000"})
