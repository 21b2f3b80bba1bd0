"""Caller ID is accepted only as Twilio sends a PSTN caller: E.164, nothing around it.

``+[1-9][0-9]{1,14}`` after stripping surrounding whitespace, and a valid number that
libphonenumber formats back to exactly that. Anything else (a ``client:`` or ``sip:`` caller, a
``tel:`` URI, an extension, a national or prefix-less number, full-width digits) is not a
registered phone: the call is rejected like a stranger's, and nothing changes but what an
unmatched call records. Withheld spellings are still asked to redial with 186.
"""

from __future__ import annotations

import pytest

from authgw.webhooks.callerid import caller_id
from tests.helpers.api import new_challenge, register
from tests.helpers.settings import CALLBACK_NUMBERS
from tests.helpers.stores import every_key
from tests.helpers.webhooks import call, call_events, challenge_status, event_types, new_sid, verbs

PHONE = "+819011113333"
LINE = CALLBACK_NUMBERS[0]

NOT_A_PHONE = [
    "client:+819011113333",
    "client:alice",
    "sip:+819011113333@example.jp",
    "tel:+819011113333",
    "tel:+81-90-1111-3333",
    "+819011113333;ext=1",
    "+819011113333x9",
    "+819011113333#",
    "anonymous+819011113333",
    "+8109011113333",  # the national prefix kept after the country code
    "09011113333",
    "090-1111-3333",
    "819011113333",
    "+81 90 1111 3333",
    "+81-90-1111-3333",
    "+81(90)11113333",
    "++819011113333",
    "＋８１９０１１１１３３３３",  # full-width plus and digits
    "+８１９０１１１１３３３３",  # full-width digits
    "＋819011113333",  # full-width plus
    "+٨١٩٠١١١١٣٣٣٣",  # Arabic-Indic digits
    "+81901111333³",  # a superscript digit
    "+0819011113333",
    "+81901111333",  # one digit short: not a valid number
    "+8190111133331234",  # longer than E.164 allows
    "not-a-number",
]


@pytest.mark.parametrize("raw", NOT_A_PHONE)
def test_a_caller_id_that_is_not_e164_verifies_nothing(api, app, store, raw):
    register(api, phones=(PHONE,))
    challenge = new_challenge(api)
    before_trail = event_types(api, "cust-001")
    before_keys = every_key(store)
    sid = new_sid()
    assert verbs(call(app.test_client(), raw, LINE, sid)) == ["Reject"]
    assert challenge_status(api, challenge) == "pending"
    assert event_types(api, "cust-001") == before_trail
    # As for a stranger: the call's own record and one event on the gateway's call stream.
    (unmatched,) = call_events(store, app)
    assert unmatched["type"] == "call.unmatched"
    assert unmatched["reason"] == "not_a_phone"
    assert unmatched["call_sid"] == sid and unmatched["to"] == LINE
    assert len(every_key(store) - before_keys) == 2
    # Delivered again: the same answer, nothing more recorded.
    assert verbs(call(app.test_client(), raw, LINE, sid)) == ["Reject"]
    assert len(call_events(store, app)) == 1
    assert challenge_status(api, challenge) == "pending"


@pytest.mark.parametrize("raw", [PHONE, f" {PHONE}", f"{PHONE}  "])
def test_e164_with_nothing_but_surrounding_whitespace_verifies(api, app, raw):
    register(api, phones=(PHONE,))
    challenge = new_challenge(api)
    assert verbs(call(app.test_client(), raw, LINE, new_sid())) == ["Reject"]
    assert challenge_status(api, challenge) == "verified"


@pytest.mark.parametrize(
    "raw", ["anonymous", "Anonymous", "+266696687", "restricted", "Unavailable", "unknown", ""]
)
def test_withheld_spellings_are_still_asked_to_redial_with_186(api, app, raw):
    register(api, phones=(PHONE,))
    challenge = new_challenge(api)
    assert verbs(call(app.test_client(), raw, LINE, new_sid())) == ["Say", "Hangup"]
    assert challenge_status(api, challenge) == "pending"


def test_caller_id_table():
    assert caller_id(PHONE).e164 == PHONE
    assert caller_id("+14155552671").e164 == "+14155552671"
    for raw in NOT_A_PHONE:
        assert caller_id(raw).e164 is None and not caller_id(raw).withheld, raw
    assert caller_id("anonymous").withheld and caller_id("+266696687").withheld
