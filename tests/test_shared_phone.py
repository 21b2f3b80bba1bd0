"""A phone registered to several customers: a call may approve only the transaction its
caller was shown. When more than one of them holds the dialled number for a live challenge,
the call is ambiguous: it verifies nothing, reads nothing out, and is answered <Reject>."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
import redis

from authgw.app import create_app
from tests.helpers.api import Api, new_challenge, register
from tests.helpers.calls import LINE_1, Phone, approve, events, status_of
from tests.helpers.phone import twiml
from tests.helpers.settings import settings_for_tests
from tests.helpers.stores import CountingConnection
from tests.helpers.webhooks import call_events

SHARED = "090-7777-0001"
SHARED_E164 = "+819077770001"
FIRST, SECOND, THIRD = "aa-x", "zz-v", "mm-w"  # FIRST sorts first: the old code gave it the call


@pytest.fixture(params=("reject", "confirm"))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(mode: str) -> dict[str, Any]:
    return settings_for_tests(callback_mode=mode)


@pytest.fixture
def phone(app: Any) -> Phone:
    return Phone(app.test_client())


def _answer(rv: Any) -> ET.Element:
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return ET.fromstring(rv.get_data())


def test_a_call_two_customers_could_mean_verifies_neither(
    api: Api, phone: Phone, store: Any, app: Any
) -> None:
    register(api, SECOND, (SHARED,))
    register(api, FIRST, (SHARED,))
    meant = new_challenge(api, SECOND)
    other = new_challenge(api, FIRST)
    assert meant["callback"]["number"] == other["callback"]["number"] == LINE_1

    root = _answer(phone.call(SHARED_E164, LINE_1))

    assert [child.tag for child in root] == ["Reject"]  # no dialogue: nothing read out
    body = ET.tostring(root, encoding="unicode")
    assert meant["id"] not in body and other["id"] not in body
    assert "150" not in body  # neither amount
    assert status_of(api, meant)["status"] == "pending"
    assert status_of(api, other)["status"] == "pending"
    stream = call_events(store, app)
    assert [(e["type"], e.get("reason")) for e in stream] == [("call.unmatched", "ambiguous_caller")]
    assert stream[0]["call_sid"] == phone.sids[0]
    for customer, challenge in ((FIRST, other), (SECOND, meant)):
        trail = events(api, customer)
        assert "challenge.verified" not in [e["type"] for e in trail]
        unmatched = [e for e in trail if e["type"] == "call.unmatched"]
        assert [e["reason"] for e in unmatched] == ["ambiguous_caller"]
        assert unmatched[0]["call_sid"] == phone.sids[0]
        assert unmatched[0]["challenge_id"] == challenge["id"]

    # Twilio delivers the same call again: still nothing verified, nothing recorded twice.
    again = _answer(phone.call(SHARED_E164, LINE_1, phone.sids[0]))
    assert [child.tag for child in again] == ["Reject"]
    assert status_of(api, meant)["status"] == "pending"
    assert status_of(api, other)["status"] == "pending"
    assert len(call_events(store, app)) == 1
    for customer in (FIRST, SECOND):
        assert [e["type"] for e in events(api, customer)].count("call.unmatched") == 1


def test_with_one_holder_the_call_verifies_that_customers_challenge(
    api: Api, phone: Phone, mode: str, store: Any, app: Any
) -> None:
    register(api, SECOND, (SHARED,))
    register(api, FIRST, (SHARED,))
    meant = new_challenge(api, SECOND)

    approve(phone, mode, meant, from_=SHARED_E164)

    assert status_of(api, meant)["status"] == "verified"
    assert status_of(api, meant)["verified_by"] == "callback"
    assert call_events(store, app) == []
    # Only the holder is judged: the sharer who holds nothing does not hear of the call.
    assert [e["type"] for e in events(api, FIRST) if e["type"].startswith("call.")] == []


def test_a_sharer_without_a_live_binding_does_not_make_the_call_ambiguous(
    api: Api, phone: Phone, mode: str, clock: Any, store: Any, app: Any
) -> None:
    register(api, SECOND, (SHARED,))
    register(api, FIRST, (SHARED,))
    register(api, THIRD, (SHARED,))
    lapsed = new_challenge(api, THIRD)
    assert lapsed["callback"]["number"] == LINE_1
    clock.advance(301)  # past its expiry: THIRD's binding of LINE_1 has run out
    meant = new_challenge(api, SECOND)
    assert meant["callback"]["number"] == LINE_1

    approve(phone, mode, meant, from_=SHARED_E164)

    assert status_of(api, meant)["status"] == "verified"
    assert call_events(store, app) == []


@pytest.mark.real_redis
def test_the_sharers_holders_are_read_in_one_round_trip(
    redis_server: Any, real_store: Any, clock: Any
) -> None:
    pool = redis.ConnectionPool.from_url(
        redis_server.url, decode_responses=True, connection_class=CountingConnection
    )
    client = redis.Redis(connection_pool=pool)  # real_store: the same server, emptied
    try:
        _count_shared_calls(client, clock)
    finally:
        client.close()
        pool.disconnect()


def _count_shared_calls(client: Any, clock: Any) -> None:
    app = create_app({**settings_for_tests(), "redis_client": client, "clock": clock})
    api, phone = Api(app.test_client()), Phone(app.test_client())
    sharers = [f"share-{n:02d}" for n in range(8)]
    for customer in sharers:
        register(api, customer, (SHARED,))
    # Each script is loaded (SCRIPT LOAD) before its first use: one of each first.
    twiml(phone.call(SHARED_E164, LINE_1))
    approve(phone, "reject", new_challenge(api, sharers[0]), from_=SHARED_E164)
    clock.advance(301)  # that challenge's binding runs out

    def cost() -> int:
        before = CountingConnection.sent
        twiml(phone.call(SHARED_E164, LINE_1))
        return CountingConnection.sent - before

    # One holder among eight sharers: index, call record, the holders (one pipeline), judgement.
    meant = new_challenge(api, sharers[5])
    assert cost() == 4
    assert status_of(api, meant)["status"] == "verified"
    # Two holders: index, call record, the holders, then each holder's trail.
    clock.advance(301)
    first, second = new_challenge(api, sharers[2]), new_challenge(api, sharers[6])
    assert cost() == 3 + 1 + 2
    assert status_of(api, first)["status"] == status_of(api, second)["status"] == "pending"
