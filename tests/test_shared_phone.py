"""A phone registered to several customers: a call may approve only the transaction its
caller was shown. When more than one of them holds the dialled number for a live challenge,
the call is ambiguous: it verifies nothing, reads nothing out, and is answered <Reject>."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from tests.helpers.api import Api, new_challenge, register
from tests.helpers.calls import LINE_1, Phone, approve, events, status_of
from tests.helpers.settings import settings_for_tests
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
