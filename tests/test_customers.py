"""The Customers table of API.md, row by row: registration, TOTP enrolment, unlock, events."""

from __future__ import annotations

import json
import re
from unittest.mock import ANY
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers.api import (
    assert_problem,
    enrol_totp,
    new_challenge,
    register,
    totp_code,
    transfer,
    wrong_code,
)

CUSTOMER_FIELDS = {"customer_id", "phones", "totp", "locked", "failed_attempts", "lock", "phones_added_at"}


def customer_of(api, customer_id="cust-001"):
    rv = api.get(f"/v1/customers/{customer_id}")
    assert rv.status_code == 200
    return rv.get_json()


def event_types(api, customer_id="cust-001", limit=None):
    path = f"/v1/customers/{customer_id}/events" + (f"?limit={limit}" if limit else "")
    rv = api.get(path)
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return [e["type"] for e in rv.get_json()["events"]]


# -- PUT / GET / DELETE -----------------------------------------------------------------------


def test_put_registers_a_customer_with_phones_in_e164(api):
    rv = api.put("/v1/customers/cust-001", {"phones": ["090-1234-5678", "03-1234-5678"]})
    assert rv.status_code == 200
    assert rv.mimetype == "application/json"
    assert rv.get_json() == {
        "customer_id": "cust-001",
        "phones": ["+819012345678", "+81312345678"],
        "totp": "none",
        "locked": False,
        "failed_attempts": 0,
        "lock": None,
        "phones_added_at": ANY,
    }


def test_get_returns_the_customer_as_registered(api):
    register(api, phones=("090-1234-5678",))
    assert customer_of(api) == {
        "customer_id": "cust-001",
        "phones": ["+819012345678"],
        "totp": "none",
        "locked": False,
        "failed_attempts": 0,
        "lock": None,
        "phones_added_at": ANY,
    }


def test_put_again_replaces_the_phones_and_keeps_the_rest(api, clock):
    register(api)
    enrol_totp(api, clock)
    rv = api.put("/v1/customers/cust-001", {"phones": ["080-9999-0000"]})
    assert rv.status_code == 200
    assert rv.get_json()["phones"] == ["+818099990000"]
    assert rv.get_json()["totp"] == "active"


def test_put_with_a_region_reads_national_numbers_of_that_region(api):
    rv = api.put("/v1/customers/cust-us", {"phones": ["(415) 555-2671"], "region": "US"})
    assert rv.status_code == 200, rv.get_data(as_text=True)
    assert rv.get_json()["phones"] == ["+14155552671"]


def test_the_same_phone_in_two_spellings_is_registered_once(api):
    rv = api.put("/v1/customers/cust-001", {"phones": ["090-1234-5678", "+81 90 1234 5678"]})
    assert rv.get_json()["phones"] == ["+819012345678"]


@pytest.mark.parametrize(
    "path", ["/v1/customers/nobody", "/v1/customers/no%20such%20id", "/v1/customers/" + "x" * 65]
)
def test_get_of_an_unknown_customer_is_404(api, path):
    assert_problem(api.get(path), 404, "customer_not_found")


def test_delete_removes_the_customer(api):
    register(api)
    rv = api.delete("/v1/customers/cust-001")
    assert rv.status_code == 204
    assert rv.get_data() == b""
    assert_problem(api.get("/v1/customers/cust-001"), 404, "customer_not_found")


def test_delete_of_an_unknown_customer_is_404(api):
    assert_problem(api.delete("/v1/customers/nobody"), 404, "customer_not_found")


def test_delete_cancels_the_customers_pending_challenges(api, clock):
    register(api)
    secret = enrol_totp(api, clock)
    pending = [new_challenge(api)["id"] for _ in range(2)]
    verified = new_challenge(api, methods=["totp"])["id"]
    assert (
        api.post(f"/v1/challenges/{verified}/totp", {"code": totp_code(secret, clock())}).status_code == 200
    )
    assert api.delete("/v1/customers/cust-001").status_code == 204
    for challenge_id in [*pending, verified]:
        rv = api.get(f"/v1/challenges/{challenge_id}")
        assert rv.status_code == 200
        assert rv.get_json()["status"] == "cancelled"
    # Ended for good: neither cancelled again nor consumed.
    assert_problem(api.post(f"/v1/challenges/{pending[0]}/cancel"), 409, "challenge_not_pending")
    digest = api.get(f"/v1/challenges/{verified}").get_json()["transaction_digest"]
    rv = api.post(f"/v1/challenges/{verified}/consume", {"transaction_digest": digest})
    assert_problem(rv, 409, "challenge_not_verified")


def test_delete_erases_the_totp_secret(api, clock, store, app):
    register(api)
    enrol_totp(api, clock)
    customer_key = app.extensions["authgw"].store.keys.for_customer("cust-001").customer
    assert store.hget(customer_key, "totp")
    assert api.delete("/v1/customers/cust-001").status_code == 204
    assert not store.exists(customer_key)
    # Registering again starts without TOTP: the old secret is gone, not dormant.
    assert register(api)["totp"] == "none"
    rv = api.post("/v1/challenges", transfer(methods=["totp"]))
    assert_problem(rv, 422, "method_unavailable")


def test_delete_keeps_the_event_trail(api, clock):
    register(api)
    enrol_totp(api, clock)
    challenge = new_challenge(api)
    api.delete("/v1/customers/cust-001")
    register(api)
    events = api.get("/v1/customers/cust-001/events").get_json()["events"]
    cancelled = [e for e in events if e["type"] == "challenge.cancelled"]
    assert [e["challenge_id"] for e in cancelled] == [challenge["id"]]
    assert "totp.removed" in [e["type"] for e in events]


# -- TOTP enrolment ---------------------------------------------------------------------------


def test_enrol_returns_secret_uri_and_qr_code_and_leaves_it_pending(api):
    register(api)
    rv = api.post("/v1/customers/cust-001/totp")
    assert rv.status_code == 201
    body = rv.get_json()
    assert set(body) == {"secret", "otpauth_uri", "qr_svg"}
    assert re.fullmatch(r"[A-Z2-7]{32}", body["secret"])
    uri = urlsplit(body["otpauth_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert uri.path == "/authgw:cust-001"
    query = parse_qs(uri.query)
    assert query["secret"] == [body["secret"]]
    assert query["issuer"] == ["authgw"]
    assert body["qr_svg"].lstrip().startswith("<svg")
    assert customer_of(api)["totp"] == "pending"


def test_the_secret_is_never_returned_again(api, clock):
    register(api)
    secret = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    responses = [
        api.get("/v1/customers/cust-001"),
        api.post("/v1/customers/cust-001/totp/confirm", {"code": totp_code(secret, clock())}),
        api.get("/v1/customers/cust-001/events"),
        api.post("/v1/challenges", transfer()),
    ]
    for rv in responses:
        assert rv.status_code < 300
        assert secret not in rv.get_data(as_text=True)


def test_enrol_for_an_unknown_customer_is_404(api):
    assert_problem(api.post("/v1/customers/nobody/totp"), 404, "customer_not_found")


def test_enrol_takes_no_fields(api):
    register(api)
    assert_problem(api.post("/v1/customers/cust-001/totp", {"secret": "A" * 32}), 422, "validation_error")


def test_confirm_with_the_right_code_activates_totp(api, clock):
    register(api)
    secret = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    rv = api.post("/v1/customers/cust-001/totp/confirm", {"code": totp_code(secret, clock())})
    assert rv.status_code == 200
    assert rv.get_json() == {
        "customer_id": "cust-001",
        "phones": ["+819012345678"],
        "totp": "active",
        "locked": False,
        "failed_attempts": 0,
        "lock": None,
        "phones_added_at": ANY,
    }
    assert "totp.enrolled" in event_types(api)


def test_confirm_with_a_wrong_code_is_invalid_and_counts_as_a_failure(api, clock):
    register(api)
    secret = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    wrong = wrong_code(secret, clock())
    assert_problem(api.post("/v1/customers/cust-001/totp/confirm", {"code": wrong}), 422, "invalid_code")
    customer = customer_of(api)
    assert customer["failed_attempts"] == 1
    assert customer["totp"] == "pending"


def test_confirm_without_a_pending_enrolment_is_409(api, clock):
    register(api)
    assert_problem(
        api.post("/v1/customers/cust-001/totp/confirm", {"code": "123456"}), 409, "no_pending_enrolment"
    )
    enrol_totp(api, clock)
    # Once confirmed, nothing is pending any more.
    assert_problem(
        api.post("/v1/customers/cust-001/totp/confirm", {"code": "123456"}), 409, "no_pending_enrolment"
    )


def test_confirm_for_an_unknown_customer_is_404(api):
    assert_problem(
        api.post("/v1/customers/nobody/totp/confirm", {"code": "123456"}), 404, "customer_not_found"
    )


def test_a_new_enrolment_replaces_a_pending_one(api, clock):
    register(api)
    first = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    second = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    assert first != second
    assert_problem(
        api.post("/v1/customers/cust-001/totp/confirm", {"code": totp_code(first, clock())}),
        422,
        "invalid_code",
    )
    rv = api.post("/v1/customers/cust-001/totp/confirm", {"code": totp_code(second, clock())})
    assert rv.status_code == 200
    assert rv.get_json()["totp"] == "active"


def test_re_enrolling_never_resets_the_failure_count(api, clock):
    register(api)
    first = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    for _ in range(2):
        api.post("/v1/customers/cust-001/totp/confirm", {"code": wrong_code(first, clock())})
    assert customer_of(api)["failed_attempts"] == 2
    secret = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    assert customer_of(api)["failed_attempts"] == 2
    rv = api.post("/v1/customers/cust-001/totp/confirm", {"code": totp_code(secret, clock())})
    assert rv.status_code == 200
    # Neither the new secret nor its confirmation clears earlier failures (NIST SP 800-63B-4).
    assert rv.get_json()["failed_attempts"] == 2


def test_wrong_confirmation_codes_lock_the_customer_at_the_threshold(api, clock):
    register(api)
    secret = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    for _ in range(5):
        assert_problem(
            api.post("/v1/customers/cust-001/totp/confirm", {"code": wrong_code(secret, clock())}),
            422,
            "invalid_code",
        )
    assert customer_of(api)["locked"] is False
    # Re-enrolling in between does not help.
    secret = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    assert_problem(
        api.post("/v1/customers/cust-001/totp/confirm", {"code": wrong_code(secret, clock())}),
        422,
        "invalid_code",
    )
    customer = customer_of(api)
    assert customer["locked"] is True
    assert customer["failed_attempts"] == 6
    assert "customer.locked" in event_types(api)


def test_an_active_secret_stays_active_while_a_new_one_is_pending(api, clock):
    register(api)
    old = enrol_totp(api, clock)
    api.post("/v1/customers/cust-001/totp")
    assert customer_of(api)["totp"] == "active"
    challenge = new_challenge(api, methods=["totp"])
    rv = api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": totp_code(old, clock())})
    assert rv.status_code == 200


def test_delete_totp_erases_it(api, clock):
    register(api)
    enrol_totp(api, clock)
    rv = api.delete("/v1/customers/cust-001/totp")
    assert rv.status_code == 204
    assert customer_of(api)["totp"] == "none"
    assert "totp.removed" in event_types(api)
    assert_problem(api.post("/v1/challenges", transfer(methods=["totp"])), 422, "method_unavailable")


def test_delete_totp_erases_a_pending_enrolment_too(api):
    register(api)
    api.post("/v1/customers/cust-001/totp")
    assert api.delete("/v1/customers/cust-001/totp").status_code == 204
    assert customer_of(api)["totp"] == "none"
    assert_problem(
        api.post("/v1/customers/cust-001/totp/confirm", {"code": "123456"}), 409, "no_pending_enrolment"
    )


def test_delete_totp_of_an_unknown_customer_is_404(api):
    assert_problem(api.delete("/v1/customers/nobody/totp"), 404, "customer_not_found")


# -- unlock -----------------------------------------------------------------------------------


def lock(api, clock, customer_id="cust-001"):
    secret = api.post(f"/v1/customers/{customer_id}/totp").get_json()["secret"]
    for _ in range(6):
        api.post(f"/v1/customers/{customer_id}/totp/confirm", {"code": wrong_code(secret, clock())})
    assert customer_of(api, customer_id)["locked"] is True


def test_unlock_clears_the_lock_and_the_failure_count(api, clock):
    register(api)
    lock(api, clock)
    assert_problem(api.post("/v1/challenges", transfer()), 423, "customer_locked")
    rv = api.post("/v1/customers/cust-001/unlock")
    assert rv.status_code == 200
    assert rv.get_json() == {
        "customer_id": "cust-001",
        "phones": ["+819012345678"],
        "totp": "pending",
        "locked": False,
        "failed_attempts": 0,
        "lock": None,
        "phones_added_at": ANY,
    }
    assert api.post("/v1/challenges", transfer()).status_code == 201


def test_unlock_records_an_event_naming_the_client(api, clock):
    register(api)
    lock(api, clock)
    api.post("/v1/customers/cust-001/unlock")
    newest = api.get("/v1/customers/cust-001/events?limit=1").get_json()["events"][0]
    assert newest["type"] == "customer.unlocked"
    assert newest["customer_id"] == "cust-001"
    assert newest["by"] == "corebank"


def test_unlock_of_a_customer_who_is_not_locked_resets_the_count(api, clock):
    register(api)
    secret = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    api.post("/v1/customers/cust-001/totp/confirm", {"code": wrong_code(secret, clock())})
    assert customer_of(api)["failed_attempts"] == 1
    rv = api.post("/v1/customers/cust-001/unlock")
    assert rv.status_code == 200
    assert rv.get_json()["failed_attempts"] == 0


def test_unlock_of_an_unknown_customer_is_404(api):
    assert_problem(api.post("/v1/customers/nobody/unlock"), 404, "customer_not_found")


# -- events -----------------------------------------------------------------------------------


def test_events_are_newest_first_with_their_fields(api, clock):
    register(api)
    challenge = new_challenge(api)
    clock.advance(1)
    api.post(f"/v1/challenges/{challenge['id']}/cancel")
    events = api.get("/v1/customers/cust-001/events").get_json()["events"]
    assert [e["type"] for e in events] == [
        "challenge.cancelled",
        "challenge.created",
        "customer.phones_changed",
    ]
    for event in events[:2]:
        assert event["customer_id"] == "cust-001"
        assert event["challenge_id"] == challenge["id"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", event["at"])
    assert events[0]["at"] > events[1]["at"]


def test_events_default_to_20_and_cap_at_100(api, clock):
    register(api)
    for _ in range(55):
        challenge = new_challenge(api, ttl_seconds=60)
        api.post(f"/v1/challenges/{challenge['id']}/cancel")
        clock.advance(60)  # its number stays bound until its expires_at
    assert len(event_types(api)) == 20
    assert len(event_types(api, limit=5)) == 5
    assert len(event_types(api, limit=100)) == 100
    everything = api.get("/v1/customers/cust-001/events?limit=100").get_json()["events"]
    assert everything[0]["type"] == "challenge.cancelled"
    assert everything[-1]["type"] == "challenge.created"


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", "", "1e2", "²", " 5"])
def test_events_limit_outside_1_to_100_is_a_validation_error(api, limit):
    register(api)
    rv = api.get("/v1/customers/cust-001/events", query_string={"limit": limit})
    body = assert_problem(rv, 422, "validation_error")
    assert body["errors"][0]["field"] == "limit"


def test_events_of_an_unknown_customer_is_404(api):
    assert_problem(api.get("/v1/customers/nobody/events"), 404, "customer_not_found")


def test_customer_object_has_exactly_the_contract_fields(api, clock):
    register(api)
    enrol_totp(api, clock)
    assert set(customer_of(api)) == CUSTOMER_FIELDS


def test_the_trail_of_a_whole_flow(api, clock):
    register(api)
    secret = enrol_totp(api, clock)
    challenge = new_challenge(api, methods=["totp"])
    api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": wrong_code(secret, clock())})
    api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": totp_code(secret, clock())})
    api.post(
        f"/v1/challenges/{challenge['id']}/consume", {"transaction_digest": challenge["transaction_digest"]}
    )
    api.delete("/v1/customers/cust-001/totp")
    events = api.get("/v1/customers/cust-001/events").get_json()["events"]
    assert [e["type"] for e in events] == [
        "totp.removed",
        "challenge.consumed",
        "challenge.verified",
        "challenge.failed_attempt",
        "challenge.created",
        "totp.enrolled",
        "totp.enrolment_started",
        "customer.phones_changed",
    ]
    for event in events[1:5]:
        assert event["challenge_id"] == challenge["id"]
    assert events[2]["method"] == events[3]["method"] == "totp"
    # The trail names what happened, never a secret.
    assert secret not in json.dumps(events)


def test_events_stay_newest_first_when_an_expiry_is_noticed_late(api, clock):
    register(api)
    new_challenge(api, ttl_seconds=60)
    clock.advance(61)
    new_challenge(api)  # another event on the trail before anyone looks at the first challenge
    events = api.get("/v1/customers/cust-001/events").get_json()["events"]
    assert [e["type"] for e in events].count("challenge.expired") == 1
    times = [e["at"] for e in events]
    assert times == sorted(times, reverse=True)
    expired = next(e for e in events if e["type"] == "challenge.expired")
    # Recorded when noticed; the moment the time ran out travels with it.
    assert expired["expires_at"] < expired["at"]
