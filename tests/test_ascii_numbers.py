"""Every number read from a query or a form is ASCII digits, bounded in length, or it is refused.

``str.isdigit()`` admits ``²``, ``٣`` and ``０``; ``int()`` then raises on the first (a 500) and
quietly reads the others as numbers. Signs, spaces and 5,000-digit values are no numbers
either. Each is a 422 ``validation_error`` naming the parameter, never a 500 and never a
number the caller did not write in ASCII.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from twilio.request_validator import RequestValidator

from authgw.http import whole_number
from tests.helpers.api import assert_problem, field_errors, register
from tests.helpers.settings import PUBLIC_URL, TWILIO_TOKEN

FAKE_ONLY = pytest.mark.parametrize("store", ["fake"], indirect=True)

NOT_NUMBERS = [
    "²",
    "¹",
    "٣",
    "۳",
    "३",
    "０",
    "１",
    "𝟙",
    "½",
    "Ⅻ",
    "+1",
    "-1",
    " 1",
    "1 ",
    "1\n",
    "\t1",
    "1_0",
    "0x1",
    "1e1",
    "1.0",
    "",
    "9" * 20,
    "9" * 5000,
]


def signed_post(app: Any, path: str, params: dict[str, str]) -> Any:
    """A webhook as Twilio signs it: over the public URL with its query, and the form."""
    url = PUBLIC_URL + path
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    return app.test_client().post(path, data=params, headers={"X-Twilio-Signature": signature})


SID = "CA" + "0" * 32


def short(value: str) -> str:
    return ascii(value)[:16] + (f"..{len(value)}" if len(value) > 12 else "")


@FAKE_ONLY
@pytest.mark.parametrize("n", NOT_NUMBERS, ids=short)
def test_a_confirm_webhook_with_a_non_ascii_or_unbounded_n_is_refused(app, n):
    rv = signed_post(app, f"/webhooks/twilio/confirm?n={quote(n)}", {"CallSid": SID, "Digits": "1"})
    assert_problem(rv, 422, "validation_error")
    assert field_errors(rv) == ["n"]


@FAKE_ONLY
@pytest.mark.parametrize("digits", ["²", "٣", "０", "+1", "-9", " 1", "1 ", "9" * 13], ids=short)
def test_keys_pressed_that_are_not_keypad_keys_are_refused(app, digits):
    rv = signed_post(app, "/webhooks/twilio/confirm?n=1", {"CallSid": SID, "Digits": digits})
    assert_problem(rv, 422, "validation_error")
    assert field_errors(rv) == ["Digits"]


@FAKE_ONLY
@pytest.mark.parametrize("duration", [d for d in NOT_NUMBERS if d and len(d) <= 10], ids=short)
def test_a_status_callback_with_a_non_ascii_duration_is_refused(app, duration):
    rv = signed_post(
        app, "/webhooks/twilio/status", {"CallSid": SID, "CallStatus": "completed", "CallDuration": duration}
    )
    assert_problem(rv, 422, "validation_error")
    assert field_errors(rv) == ["CallDuration"]


@FAKE_ONLY
def test_a_status_callback_with_a_whole_duration_is_recorded(app):
    rv = signed_post(
        app, "/webhooks/twilio/status", {"CallSid": SID, "CallStatus": "completed", "CallDuration": "42"}
    )
    assert rv.status_code == 204


@FAKE_ONLY
@pytest.mark.parametrize("limit", NOT_NUMBERS, ids=short)
def test_an_events_limit_that_is_not_ascii_digits_is_refused(api, limit):
    register(api)
    rv = api.get("/v1/customers/cust-001/events", query_string={"limit": limit})
    assert_problem(rv, 422, "validation_error")
    assert field_errors(rv) == ["limit"]


@FAKE_ONLY
@pytest.mark.parametrize("limit", ["1", "20", "100", "007"])
def test_an_events_limit_of_ascii_digits_in_range_is_read(api, limit):
    register(api)
    assert api.get("/v1/customers/cust-001/events", query_string={"limit": limit}).status_code == 200


@pytest.mark.parametrize("raw", NOT_NUMBERS, ids=short)
def test_whole_number_reads_no_unicode_digit_sign_space_or_huge_value(raw):
    assert whole_number(raw, 0, 10**9) is None


@pytest.mark.parametrize("raw, value", [("0", 0), ("7", 7), ("0042", 42), ("999999999", 999999999)])
def test_whole_number_reads_ascii_digits_within_bounds(raw, value):
    assert whole_number(raw, 0, 10**9) == value
    assert whole_number(raw, value + 1, 10**9) is None
