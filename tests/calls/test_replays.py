"""Replays and idempotency: a CallSid delivered again has the effect of one call, never approves
a later challenge, and concurrent deliveries of one CallSid verify once."""

from __future__ import annotations

from functools import partial

import pytest

from authgw.app import create_app
from tests.helpers.api import Api, new_challenge, register
from tests.helpers.calls import (
    LINE_1,
    LINE_2,
    PHONE,
    Phone,
    approve,
    events,
    status_of,
    types,
)
from tests.helpers.phone import race, twiml, verbs
from tests.helpers.settings import PUBLIC_URL
from tests.helpers.webhooks import new_sid


def test_same_call_sid_twice_has_the_effect_of_one_call(api, phone):
    register(api)
    challenge = new_challenge(api)
    sid = new_sid()
    assert verbs(twiml(phone.call(PHONE, LINE_1, sid))) == ["Reject"]
    assert verbs(twiml(phone.call(PHONE, LINE_1, sid))) == ["Reject"]
    assert types(api).count("challenge.verified") == 1
    assert types(api).count("call.received") == 1
    assert status_of(api, challenge)["status"] == "verified"


def test_replayed_call_sid_never_approves_a_later_challenge(api, phone, mode, clock):
    register(api)
    first = new_challenge(api)
    sid = new_sid()
    approve(phone, mode, first, sid=sid)
    assert status_of(api, first)["status"] == "verified"
    # 0001 stays bound to the first challenge until its expires_at; after that the pool gives
    # it out again, last (the numbers never bound come first), and the replay must still fail.
    clock.advance(300)
    *_, later = (new_challenge(api, amount=2000 + i) for i in range(3))
    assert later["callback"]["number"] == LINE_1
    twiml(phone.call(PHONE, LINE_1, sid))
    if mode != "reject":
        rv = phone.post(
            f"{PUBLIC_URL}/webhooks/twilio/confirm?n=2",
            {"CallSid": sid, "Digits": "1" if mode == "confirm" else later["callback"]["code"]},
        )
        twiml(rv)
    assert status_of(api, later)["status"] == "pending"


def test_call_sid_first_seen_unmatched_stays_unmatched(api, phone, mode, clock):
    register(api)
    sid = new_sid()
    assert verbs(twiml(phone.call(PHONE, LINE_1, sid))) == ["Reject"]  # nothing pending yet
    clock.advance(1)
    challenge = new_challenge(api)
    assert verbs(twiml(phone.call(PHONE, LINE_1, sid))) == ["Reject"]
    assert status_of(api, challenge)["status"] == "pending"


def test_stranger_call_sid_replayed_after_registration_approves_nothing(api, phone, clock):
    sid = new_sid()
    assert verbs(twiml(phone.call(PHONE, LINE_1, sid))) == ["Reject"]
    clock.advance(1)
    register(api)
    challenge = new_challenge(api)
    assert verbs(twiml(phone.call(PHONE, LINE_1, sid))) == ["Reject"]
    assert status_of(api, challenge)["status"] == "pending"


def test_call_sid_delivered_again_with_other_numbers_is_refused(api, phone):
    register(api, phones=("090-1234-5678", "090-8765-4321"))
    sid = new_sid()
    twiml(phone.call("+819087654321", LINE_2, sid))  # matches nothing
    challenge = new_challenge(api)
    assert verbs(twiml(phone.call(PHONE, LINE_1, sid))) == ["Reject"]
    assert status_of(api, challenge)["status"] == "pending"


# -- concurrent deliveries (real threads, real redis-server) ------------------------------------


@pytest.mark.real_redis
def test_concurrent_deliveries_of_one_call_sid_verify_once(real_store, clock, settings):
    app = create_app({**settings, "rate_limit_caller": 0, "redis_client": real_store, "clock": clock})
    api = Api(app.test_client())
    register(api)
    for _ in range(10):
        # A number stays bound until its challenge's expires_at: each round lets the last
        # one's time run out, so the pool never runs dry.
        challenge = new_challenge(api, ttl_seconds=60)
        line = challenge["callback"]["number"]
        sid = new_sid()
        answers = race([partial(Phone(app.test_client()).call, PHONE, line, sid) for _ in range(4)])
        assert [verbs(twiml(rv)) for rv in answers] == [["Reject"]] * 4
        assert status_of(api, challenge)["status"] == "verified"
        received = [e for e in events(api) if e["type"] == "call.received" and e["call_sid"] == sid]
        assert len(received) == 1
        api.post(
            f"/v1/challenges/{challenge['id']}/consume",
            {"transaction_digest": challenge["transaction_digest"]},
        )
        clock.advance(60)
