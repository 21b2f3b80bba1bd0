"""The Challenges section of API.md: create, read, verify by TOTP, consume, cancel, expiry."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from unittest.mock import ANY

import pytest
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.helpers.api import (
    Api,
    assert_problem,
    enrol_totp,
    new_challenge,
    register,
    totp_code,
    transfer,
    wrong_code,
)
from tests.helpers.settings import CALLBACK_NUMBERS, settings_for_tests

RETENTION_MS = 24 * 3600 * 1000
# Redis counts TTLs in real time: allow for a slow machine between writing and reading one.
SLACK_MS = 60_000
CHALLENGE_FIELDS = {
    "id",
    "status",
    "customer_id",
    "kind",
    "amount",
    "currency",
    "payee",
    "methods",
    "callback",
    "transaction_digest",
    "attempts_left",
    "created_at",
    "expires_at",
    "verified_by",
    "verified_at",
    "new_payee",
    "required",
}


def at(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def status_of(api, challenge_id):
    rv = api.get(f"/v1/challenges/{challenge_id}")
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return rv.get_json()["status"]


def events(api, customer_id="cust-001"):
    return api.get(f"/v1/customers/{customer_id}/events?limit=100").get_json()["events"]


def challenge_key(app, challenge):
    return (
        app.extensions["authgw"].store.keys.for_customer(challenge["customer_id"]).challenge(challenge["id"])
    )


@pytest.fixture
def customer(api, clock):
    """cust-001 with a phone and an active TOTP enrolment; returns the TOTP secret."""
    register(api)
    return enrol_totp(api, clock)


def verify(api, challenge, code):
    return api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": code})


def consume(api, challenge, digest=None):
    return api.post(
        f"/v1/challenges/{challenge['id']}/consume",
        {"transaction_digest": digest or challenge["transaction_digest"]},
    )


# -- create -----------------------------------------------------------------------------------


def test_create_returns_the_challenge(api, customer, clock):
    rv = api.post("/v1/challenges", transfer(ttl_seconds=120))
    assert rv.status_code == 201
    assert rv.mimetype == "application/json"
    body = rv.get_json()
    assert set(body) == CHALLENGE_FIELDS
    assert re.fullmatch(r"ch_[0-9a-z]{58}", body["id"])
    assert body["status"] == "pending"
    assert body["customer_id"] == "cust-001"
    assert (body["kind"], body["amount"], body["currency"]) == ("transfer", 150000, "JPY")
    assert body["payee"] == transfer()["payee"]
    assert body["methods"] == ["callback", "totp"]
    assert body["callback"] == {"number": CALLBACK_NUMBERS[0], "display": "050-3000-0001"}
    assert re.fullmatch(r"[0-9a-f]{64}", body["transaction_digest"])
    assert body["attempts_left"] == 3
    assert body["verified_by"] is None and body["verified_at"] is None
    assert at(body["created_at"]) == pytest.approx(clock(), abs=0.001)
    assert at(body["expires_at"]) - at(body["created_at"]) == pytest.approx(120)


def test_challenge_ids_are_unique_and_unguessable(api, customer):
    ids = {new_challenge(api, methods=["totp"])["id"] for _ in range(20)}
    assert len(ids) == 20
    # The random part after the customer's 32-hex key id: 26 base32 characters, 130 bits.
    assert len({i[35:] for i in ids}) == 20


def test_ttl_defaults_to_300_seconds_and_currency_to_jpy(api, customer):
    body = transfer()
    del body["currency"]
    challenge = api.post("/v1/challenges", body).get_json()
    assert challenge["currency"] == "JPY"
    assert at(challenge["expires_at"]) - at(challenge["created_at"]) == pytest.approx(300)


def test_payeasy_challenge_binds_its_payee(api, customer):
    payee = {
        "biller_number": "12345",
        "customer_number": "1234567890",
        "confirmation_number": "123456",
        "name": "東京都税",
    }
    rv = api.post("/v1/challenges", transfer(kind="payeasy", payee=payee, amount=52000))
    assert rv.status_code == 201, rv.get_data(as_text=True)
    assert rv.get_json()["kind"] == "payeasy"
    assert rv.get_json()["payee"] == payee


@pytest.mark.parametrize(
    "requested, expected",
    [
        (None, ["callback", "totp"]),
        (["totp"], ["totp"]),
        (["callback"], ["callback"]),
        (["totp", "callback"], ["totp", "callback"]),
    ],
)
def test_methods_default_to_every_usable_way_or_are_as_asked(api, customer, requested, expected):
    challenge = new_challenge(api) if requested is None else new_challenge(api, methods=requested)
    assert challenge["methods"] == expected
    assert ("callback" in challenge) == ("callback" in expected)


def test_methods_default_to_callback_alone_without_totp(api):
    register(api)
    assert new_challenge(api)["methods"] == ["callback"]


def test_asking_for_a_usable_and_an_unusable_method_keeps_the_usable_one(api):
    register(api)
    assert new_challenge(api, methods=["callback", "totp"])["methods"] == ["callback"]


def test_asking_only_for_totp_without_enrolment_is_method_unavailable(api):
    register(api)
    assert_problem(api.post("/v1/challenges", transfer(methods=["totp"])), 422, "method_unavailable")


def test_a_pending_enrolment_does_not_make_totp_usable(api):
    register(api)
    api.post("/v1/customers/cust-001/totp")
    assert_problem(api.post("/v1/challenges", transfer(methods=["totp"])), 422, "method_unavailable")


@pytest.mark.parametrize("settings", [settings_for_tests(callback_numbers="")])
def test_without_designated_numbers_callback_is_unavailable(api, settings):
    register(api)
    assert_problem(api.post("/v1/challenges", transfer()), 422, "method_unavailable")
    assert_problem(api.post("/v1/challenges", transfer(methods=["callback"])), 422, "method_unavailable")


def test_create_for_an_unknown_customer_is_404(api):
    assert_problem(api.post("/v1/challenges", transfer("nobody")), 404, "customer_not_found")


def test_create_for_a_locked_customer_is_423(api, customer, clock):
    lock_by_wrong_codes(api, customer, clock)
    assert_problem(api.post("/v1/challenges", transfer()), 423, "customer_locked")


def test_each_challenge_gets_its_own_designated_number(api, customer):
    numbers = [new_challenge(api)["callback"]["number"] for _ in range(3)]
    assert numbers == list(CALLBACK_NUMBERS)


def test_a_fourth_challenge_on_a_full_pool_supersedes_nothing(api, customer):
    # Three designated numbers, each bound to its challenge until that one's expires_at: a
    # fourth challenge that allows TOTP gets no number, and no number changes hands.
    first, second, third = (new_challenge(api) for _ in range(3))
    fourth = new_challenge(api)
    assert "callback" not in fourth and fourth["methods"] == ["totp"]
    assert [status_of(api, c["id"]) for c in (first, second, third)] == ["pending"] * 3
    assert [e for e in events(api) if e["type"] == "challenge.cancelled"] == []


def test_creation_is_recorded_in_the_trail(api, customer):
    challenge = new_challenge(api)
    newest = events(api)[0]
    assert newest["type"] == "challenge.created"
    assert newest["challenge_id"] == challenge["id"]
    assert newest["amount"] == 150000


# -- idempotency ------------------------------------------------------------------------------


def test_same_key_and_same_body_returns_the_first_response(api, customer):
    first = api.post("/v1/challenges", transfer(), headers={"Idempotency-Key": "order-1"})
    again = api.post("/v1/challenges", transfer(), headers={"Idempotency-Key": "order-1"})
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    created = [e for e in events(api) if e["type"] == "challenge.created"]
    assert len(created) == 1


def test_the_replay_is_the_first_response_even_after_the_challenge_moved_on(api, customer, clock):
    first = api.post(
        "/v1/challenges", transfer(methods=["totp"]), headers={"Idempotency-Key": "order-2"}
    ).get_json()
    assert verify(api, first, totp_code(customer, clock())).status_code == 200
    again = api.post("/v1/challenges", transfer(methods=["totp"]), headers={"Idempotency-Key": "order-2"})
    assert again.status_code == 201
    assert again.get_json() == first
    assert status_of(api, first["id"]) == "verified"


def test_same_key_with_a_different_body_is_a_conflict(api, customer):
    api.post("/v1/challenges", transfer(), headers={"Idempotency-Key": "order-3"})
    rv = api.post("/v1/challenges", transfer(amount=150001), headers={"Idempotency-Key": "order-3"})
    assert_problem(rv, 409, "idempotency_conflict")


def test_same_key_for_another_customer_is_a_conflict(api, customer):
    register(api, "cust-002", ("080-1111-2222",))
    api.post("/v1/challenges", transfer(), headers={"Idempotency-Key": "order-4"})
    rv = api.post("/v1/challenges", transfer("cust-002"), headers={"Idempotency-Key": "order-4"})
    assert_problem(rv, 409, "idempotency_conflict")
    assert [e for e in events(api, "cust-002") if e["type"] == "challenge.created"] == []


def test_idempotency_keys_belong_to_their_client(api, other_api, customer):
    mine = api.post("/v1/challenges", transfer(), headers={"Idempotency-Key": "order-5"})
    theirs = other_api.post("/v1/challenges", transfer(amount=9), headers={"Idempotency-Key": "order-5"})
    assert theirs.status_code == 201
    assert theirs.get_json()["id"] != mine.get_json()["id"]


def test_different_keys_create_different_challenges(api, customer):
    a = api.post("/v1/challenges", transfer(), headers={"Idempotency-Key": "a"}).get_json()
    b = api.post("/v1/challenges", transfer(), headers={"Idempotency-Key": "b"}).get_json()
    assert a["id"] != b["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
def test_a_malformed_idempotency_key_is_a_validation_error(api, customer, key):
    rv = api.post("/v1/challenges", transfer(), headers={"Idempotency-Key": key})
    body = assert_problem(rv, 422, "validation_error")
    assert body["errors"][0]["field"] == "Idempotency-Key"


# -- read -------------------------------------------------------------------------------------


def test_get_returns_the_challenge(api, customer):
    challenge = new_challenge(api)
    rv = api.get(f"/v1/challenges/{challenge['id']}")
    assert rv.status_code == 200
    assert rv.get_json() == challenge


def test_another_clients_challenge_is_not_found(api, other_api, customer, clock):
    challenge = new_challenge(api)
    assert_problem(other_api.get(f"/v1/challenges/{challenge['id']}"), 404, "challenge_not_found")
    assert_problem(verify(other_api, challenge, totp_code(customer, clock())), 404, "challenge_not_found")
    assert_problem(consume(other_api, challenge), 404, "challenge_not_found")
    assert_problem(other_api.post(f"/v1/challenges/{challenge['id']}/cancel"), 404, "challenge_not_found")
    # And none of that touched it.
    assert status_of(api, challenge["id"]) == "pending"
    assert api.get(f"/v1/challenges/{challenge['id']}").get_json()["attempts_left"] == 3


@pytest.mark.parametrize("store", ["fake"], indirect=True)  # refused before the store
@pytest.mark.parametrize(
    "challenge_id",
    [
        "garbage",
        "ch_",
        "ch_0123456789abcdef0123456789abcdefaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "ch_" + "z" * 58,
        "%00",
        "ch_0123456789ABCDEF0123456789ABCDEFaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ],
)
@pytest.mark.parametrize("call", ["get", "totp", "consume", "cancel"])
def test_an_unknown_or_garbage_id_is_not_found(api, customer, challenge_id, call):
    path = f"/v1/challenges/{challenge_id}"
    if call == "get":
        rv = api.get(path)
    elif call == "totp":
        rv = api.post(path + "/totp", {"code": "123456"})
    elif call == "consume":
        rv = api.post(path + "/consume", {"transaction_digest": "0" * 64})
    else:
        rv = api.post(path + "/cancel")
    assert_problem(rv, 404, "challenge_not_found")


# -- verify by TOTP ---------------------------------------------------------------------------


def test_the_right_code_verifies_the_challenge(api, customer, clock):
    challenge = new_challenge(api)
    rv = verify(api, challenge, totp_code(customer, clock()))
    assert rv.status_code == 200
    body = rv.get_json()
    assert body["status"] == "verified"
    assert body["verified_by"] == "totp"
    assert at(body["verified_at"]) == pytest.approx(clock(), abs=0.001)
    assert api.get(f"/v1/challenges/{challenge['id']}").get_json() == body
    newest = events(api)[0]
    assert (newest["type"], newest["challenge_id"], newest["method"]) == (
        "challenge.verified",
        challenge["id"],
        "totp",
    )


def test_a_wrong_code_is_invalid_and_reports_attempts_left(api, customer, clock):
    challenge = new_challenge(api)
    for left in (2, 1):
        body = assert_problem(verify(api, challenge, wrong_code(customer, clock())), 422, "invalid_code")
        assert body["attempts_left"] == left
        assert api.get(f"/v1/challenges/{challenge['id']}").get_json()["attempts_left"] == left
    assert status_of(api, challenge["id"]) == "pending"
    assert api.get("/v1/customers/cust-001").get_json()["failed_attempts"] == 2


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "12 345", "１２３４５６", "²²²²²²", "١٢٣٤٥٦"])
def test_a_malformed_code_is_just_a_wrong_code(api, customer, code):
    challenge = new_challenge(api)
    body = assert_problem(verify(api, challenge, code), 422, "invalid_code")
    assert body["attempts_left"] == 2


def test_using_up_the_attempts_fails_the_challenge(api, customer, clock):
    challenge = new_challenge(api)
    for _ in range(3):
        rv = verify(api, challenge, wrong_code(customer, clock()))
    assert assert_problem(rv, 422, "invalid_code")["attempts_left"] == 0
    assert status_of(api, challenge["id"]) == "failed"
    assert "challenge.failed" in [e["type"] for e in events(api)]
    # Even the right code cannot revive it.
    assert_problem(verify(api, challenge, totp_code(customer, clock())), 409, "challenge_not_pending")


def test_a_success_resets_the_consecutive_failures(api, customer, clock):
    challenge = new_challenge(api)
    verify(api, challenge, wrong_code(customer, clock()))
    assert api.get("/v1/customers/cust-001").get_json()["failed_attempts"] == 1
    assert verify(api, challenge, totp_code(customer, clock())).status_code == 200
    assert api.get("/v1/customers/cust-001").get_json()["failed_attempts"] == 0


def test_a_verified_challenge_is_not_pending(api, customer, clock):
    challenge = new_challenge(api)
    verify(api, challenge, totp_code(customer, clock()))
    clock.advance(30)
    assert_problem(verify(api, challenge, totp_code(customer, clock())), 409, "challenge_not_pending")


def test_verify_after_expiry_is_410(api, customer, clock):
    challenge = new_challenge(api, ttl_seconds=60)
    clock.advance(60)
    assert_problem(verify(api, challenge, totp_code(customer, clock())), 410, "challenge_expired")
    assert status_of(api, challenge["id"]) == "expired"


def test_verify_one_step_before_expiry_still_works(api, customer, clock):
    challenge = new_challenge(api, ttl_seconds=60)
    clock.advance(59.999)
    assert verify(api, challenge, totp_code(customer, clock())).status_code == 200


def test_verify_of_a_cancelled_challenge_is_not_pending(api, customer, clock):
    challenge = new_challenge(api)
    api.post(f"/v1/challenges/{challenge['id']}/cancel")
    assert_problem(verify(api, challenge, totp_code(customer, clock())), 409, "challenge_not_pending")


def test_verify_on_a_challenge_without_totp_is_method_unavailable(api, customer, clock):
    challenge = new_challenge(api, methods=["callback"])
    assert_problem(verify(api, challenge, totp_code(customer, clock())), 422, "method_unavailable")
    # It cost nothing.
    assert api.get(f"/v1/challenges/{challenge['id']}").get_json()["attempts_left"] == 3
    assert api.get("/v1/customers/cust-001").get_json()["failed_attempts"] == 0


def test_verify_after_totp_was_removed_is_method_unavailable(api, customer, clock):
    challenge = new_challenge(api)
    api.delete("/v1/customers/cust-001/totp")
    assert_problem(verify(api, challenge, totp_code(customer, clock())), 422, "method_unavailable")


def lock_by_wrong_codes(api, secret, clock):
    """Six wrong codes over two challenges (three attempts each): the customer is locked."""
    for _ in range(2):
        challenge = new_challenge(api, methods=["totp"])
        for _ in range(3):
            assert_problem(verify(api, challenge, wrong_code(secret, clock())), 422, "invalid_code")
        assert status_of(api, challenge["id"]) == "failed"


def test_six_failures_across_challenges_lock_the_customer(api, customer, clock):
    waiting = new_challenge(api, methods=["totp"])
    lock_by_wrong_codes(api, customer, clock)
    record = api.get("/v1/customers/cust-001").get_json()
    assert record["locked"] is True
    assert record["failed_attempts"] == 6
    assert [e["type"] for e in events(api)].count("customer.locked") == 1
    # No verification, even with the right code, and no new challenge.
    assert_problem(verify(api, waiting, totp_code(customer, clock())), 423, "customer_locked")
    assert api.get(f"/v1/challenges/{waiting['id']}").get_json()["attempts_left"] == 3
    assert_problem(api.post("/v1/challenges", transfer()), 423, "customer_locked")
    # Until the bank's reset procedure.
    assert api.post("/v1/customers/cust-001/unlock").status_code == 200
    assert verify(api, waiting, totp_code(customer, clock())).status_code == 200


def test_wrong_confirmations_and_wrong_verifications_add_up_to_one_count(api, customer, clock):
    challenge = new_challenge(api, methods=["totp"])
    for _ in range(2):
        verify(api, challenge, wrong_code(customer, clock()))
    pending = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    for _ in range(3):
        api.post("/v1/customers/cust-001/totp/confirm", {"code": wrong_code(pending, clock())})
    assert api.get("/v1/customers/cust-001").get_json() | {"phones": None} == {
        "customer_id": "cust-001",
        "phones": None,
        "totp": "active",
        "locked": False,
        "failed_attempts": 5,
        "lock": None,
        "phones_added_at": ANY,
    }
    # The sixth wrong code, on the challenge, locks.
    assert_problem(verify(api, challenge, wrong_code(customer, clock())), 422, "invalid_code")
    assert api.get("/v1/customers/cust-001").get_json()["locked"] is True


def test_a_verification_clears_failures_of_confirmations_too(api, customer, clock):
    pending = api.post("/v1/customers/cust-001/totp").get_json()["secret"]
    for _ in range(4):
        api.post("/v1/customers/cust-001/totp/confirm", {"code": wrong_code(pending, clock())})
    challenge = new_challenge(api, methods=["totp"])
    assert verify(api, challenge, totp_code(customer, clock())).status_code == 200
    assert api.get("/v1/customers/cust-001").get_json()["failed_attempts"] == 0


def test_five_failures_do_not_lock(api, customer, clock):
    first = new_challenge(api, methods=["totp"])
    second = new_challenge(api, methods=["totp"])
    for _ in range(3):
        verify(api, first, wrong_code(customer, clock()))
    for _ in range(2):
        verify(api, second, wrong_code(customer, clock()))
    assert api.get("/v1/customers/cust-001").get_json()["locked"] is False
    assert verify(api, second, totp_code(customer, clock())).status_code == 200


@pytest.mark.parametrize("settings", [settings_for_tests(lockout_threshold=2, challenge_attempts=5)])
def test_the_threshold_and_attempts_follow_the_settings(api, customer, clock, settings):
    challenge = new_challenge(api, methods=["totp"])
    assert challenge["attempts_left"] == 5
    assert (
        assert_problem(verify(api, challenge, wrong_code(customer, clock())), 422, "invalid_code")[
            "attempts_left"
        ]
        == 4
    )
    verify(api, challenge, wrong_code(customer, clock()))
    assert api.get("/v1/customers/cust-001").get_json()["locked"] is True


# -- consume ----------------------------------------------------------------------------------


def verified(api, secret, clock, **overrides):
    challenge = new_challenge(api, **overrides)
    assert verify(api, challenge, totp_code(secret, clock())).status_code == 200
    clock.advance(30)  # the next code the test computes is a fresh step
    return challenge


def test_consume_uses_a_verified_challenge_once(api, customer, clock):
    challenge = verified(api, customer, clock)
    rv = consume(api, challenge)
    assert rv.status_code == 200
    assert rv.get_json()["status"] == "consumed"
    assert rv.get_json()["verified_by"] == "totp"
    assert_problem(consume(api, challenge), 409, "already_consumed")
    assert status_of(api, challenge["id"]) == "consumed"
    assert [e["type"] for e in events(api)][0] == "challenge.consumed"


@pytest.mark.parametrize("digest", ["0" * 64, "not-a-digest", "A" * 64])
def test_consume_with_another_digest_is_a_mismatch(api, customer, clock, digest):
    challenge = verified(api, customer, clock)
    assert_problem(consume(api, challenge, digest), 409, "digest_mismatch")
    # The challenge stays verified: the right digest still consumes it.
    assert consume(api, challenge).status_code == 200


def test_consume_with_the_uppercase_digest_is_a_mismatch(api, customer, clock):
    challenge = verified(api, customer, clock)
    assert_problem(consume(api, challenge, challenge["transaction_digest"].upper()), 409, "digest_mismatch")


def test_consume_of_a_pending_challenge_is_not_verified(api, customer):
    challenge = new_challenge(api)
    assert_problem(consume(api, challenge), 409, "challenge_not_verified")


@pytest.mark.parametrize("ending", ["cancelled", "failed"])
def test_consume_of_an_ended_challenge_is_not_verified(api, customer, clock, ending):
    challenge = new_challenge(api)
    if ending == "cancelled":
        api.post(f"/v1/challenges/{challenge['id']}/cancel")
    else:
        for _ in range(3):
            verify(api, challenge, wrong_code(customer, clock()))
    assert status_of(api, challenge["id"]) == ending
    assert_problem(consume(api, challenge), 409, "challenge_not_verified")


def test_a_verified_challenge_can_be_consumed_until_it_expires(api, customer, clock):
    challenge = verified(api, customer, clock, ttl_seconds=120)
    clock.advance(89.999)  # 119.999 s after creation
    assert consume(api, challenge).status_code == 200


def test_a_verified_challenge_that_expired_is_410(api, customer, clock):
    challenge = verified(api, customer, clock, ttl_seconds=120)
    clock.advance(90)  # 120 s after creation
    assert_problem(consume(api, challenge), 410, "challenge_expired")
    assert status_of(api, challenge["id"]) == "expired"


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_ends_a_pending_challenge(api, customer, clock):
    challenge = new_challenge(api)
    rv = api.post(f"/v1/challenges/{challenge['id']}/cancel")
    assert rv.status_code == 200
    assert rv.get_json()["status"] == "cancelled"
    assert status_of(api, challenge["id"]) == "cancelled"
    cancelled = events(api)[0]
    assert cancelled["type"] == "challenge.cancelled"
    # API.md Additions: challenge.cancelled carries its reason; a client's cancel names it.
    assert (cancelled["reason"], cancelled["by"]) == ("client", "corebank")


def test_cancel_twice_is_not_pending(api, customer):
    challenge = new_challenge(api)
    api.post(f"/v1/challenges/{challenge['id']}/cancel")
    assert_problem(api.post(f"/v1/challenges/{challenge['id']}/cancel"), 409, "challenge_not_pending")


def test_cancel_of_a_verified_challenge_is_not_pending(api, customer, clock):
    challenge = verified(api, customer, clock)
    assert_problem(api.post(f"/v1/challenges/{challenge['id']}/cancel"), 409, "challenge_not_pending")
    assert consume(api, challenge).status_code == 200


def test_cancel_keeps_the_designated_number_bound_until_expiry(api, customer):
    first = new_challenge(api)
    api.post(f"/v1/challenges/{first['id']}/cancel")
    assert new_challenge(api)["callback"]["number"] != first["callback"]["number"]


def test_cancel_takes_no_fields(api, customer):
    challenge = new_challenge(api)
    assert_problem(
        api.post(f"/v1/challenges/{challenge['id']}/cancel", {"reason": "x"}), 422, "validation_error"
    )
    assert status_of(api, challenge["id"]) == "pending"


# -- expiry and retention ---------------------------------------------------------------------


def test_a_pending_challenge_expires_at_expires_at_without_any_sweeper(api, customer, clock):
    challenge = new_challenge(api, ttl_seconds=60)
    clock.advance(59.999)
    assert status_of(api, challenge["id"]) == "pending"
    clock.advance(0.001)
    assert status_of(api, challenge["id"]) == "expired"
    assert_problem(api.post(f"/v1/challenges/{challenge['id']}/cancel"), 409, "challenge_not_pending")


def test_expiry_appears_in_the_trail_even_if_nobody_reads_the_challenge(api, customer, clock):
    challenge = new_challenge(api, ttl_seconds=60)
    clock.advance(61)
    trail = events(api)
    expired = [e for e in trail if e["type"] == "challenge.expired"]
    assert len(expired) == 1
    assert expired[0]["challenge_id"] == challenge["id"]
    # Dated when it was recorded, so the trail stays in order; it says when time ran out.
    assert expired[0]["expires_at"] == challenge["expires_at"]
    assert expired[0]["at"] > challenge["expires_at"]
    # Reading it afterwards does not record the expiry twice.
    assert status_of(api, challenge["id"]) == "expired"
    assert [e["type"] for e in events(api)].count("challenge.expired") == 1


def test_expiry_frees_the_designated_number(api, customer, clock):
    first, _, _ = (new_challenge(api, ttl_seconds=60) for _ in range(3))
    clock.advance(60)
    assert new_challenge(api)["callback"]["number"] == first["callback"]["number"]


def test_an_expired_challenge_stays_readable_for_24_hours(api, app, store, customer, clock):
    challenge = new_challenge(api, ttl_seconds=60)
    # Redis keeps the record for its time to expiry plus the retention period.
    ttl_ms = store.pttl(challenge_key(app, challenge))
    assert 60_000 + RETENTION_MS - SLACK_MS <= ttl_ms <= 60_000 + RETENTION_MS
    clock.advance(60 + 24 * 3600 - 1)
    rv = api.get(f"/v1/challenges/{challenge['id']}")
    assert rv.status_code == 200
    assert rv.get_json()["status"] == "expired"


@pytest.mark.parametrize("ending", ["consumed", "cancelled", "failed"])
def test_an_ended_challenge_is_kept_24_hours_from_its_end(api, app, store, customer, clock, ending):
    challenge = new_challenge(api, methods=["totp"])
    if ending == "consumed":
        verify(api, challenge, totp_code(customer, clock()))
        consume(api, challenge)
    elif ending == "cancelled":
        api.post(f"/v1/challenges/{challenge['id']}/cancel")
    else:
        for _ in range(3):
            verify(api, challenge, wrong_code(customer, clock()))
    assert status_of(api, challenge["id"]) == ending
    ttl_ms = store.pttl(challenge_key(app, challenge))
    assert RETENTION_MS - SLACK_MS <= ttl_ms <= RETENTION_MS
    clock.advance(24 * 3600 - 1)
    assert status_of(api, challenge["id"]) == ending


# -- transaction_digest -----------------------------------------------------------------------


def independent_digest(body):
    """API.md's definition, written out here rather than taken from the gateway."""
    doc = {k: body[k] for k in ("amount", "currency", "customer_id", "kind", "payee")}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_transaction_digest_is_sha256_of_the_canonical_json(api, customer):
    body = transfer()
    challenge = new_challenge(api)
    # Keys sorted at every level, no spaces, the katakana as raw UTF-8.
    canonical = (
        '{"amount":150000,"currency":"JPY","customer_id":"cust-001","kind":"transfer",'
        '"payee":{"account_number":"1234567","account_type":"ordinary","bank_code":"0168",'
        '"branch_code":"001","name":"ﾔﾏﾀﾞ ﾀﾛｳ"}}'
    )
    assert challenge["transaction_digest"] == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert challenge["transaction_digest"] == independent_digest(body)


@pytest.mark.parametrize(
    "overrides",
    [
        {"amount": 1},
        {"amount": 99_999_999_999},
        {
            "kind": "payeasy",
            "payee": {
                "name": 'ｺｸｾｲ ﾁｮｳ "税" \\ /',
                "biller_number": "00001",
                "confirmation_number": "1",
                "customer_number": "9",
            },
        },
        {
            "payee": {
                "name": "山田 太郎 😀",
                "account_number": "7",
                "branch_code": "999",
                "bank_code": "9900",
                "account_type": "current",
            }
        },
    ],
)
def test_transaction_digest_matches_an_independent_computation(api, customer, overrides):
    body = transfer(**overrides)
    challenge = new_challenge(api, **overrides)
    assert challenge["transaction_digest"] == independent_digest(body)


def test_a_different_transaction_has_a_different_digest(api, customer):
    a = new_challenge(api)
    b = new_challenge(api, amount=150001)
    c = new_challenge(api, payee={**transfer()["payee"], "account_number": "1234568"})
    assert len({a["transaction_digest"], b["transaction_digest"], c["transaction_digest"]}) == 3


# -- the lifecycle against a model ------------------------------------------------------------


class Model:
    """What API.md says a customer's challenges are, kept by hand alongside the gateway."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.failed = 0
        self.locked = False
        self.last_step = -1
        self.challenges: dict[str, dict] = {}

    def status(self, challenge_id: str) -> str:
        ch = self.challenges[challenge_id]
        if ch["status"] in ("pending", "verified") and self.now >= ch["expires"]:
            ch["status"] = "expired"
        return ch["status"]

    def fail(self, ch: dict) -> int:
        ch["attempts"] -= 1
        self.failed += 1
        if self.failed >= 6:
            self.locked = True
        if ch["attempts"] <= 0:
            ch["status"] = "failed"
        return ch["attempts"]


@pytest.mark.parametrize("store", ["fake", pytest.param("real", marks=pytest.mark.real_redis)], indirect=True)
def test_the_lifecycle_follows_the_contract_in_any_order(app, store, clock):
    """Random sequences of create, verify, consume, cancel, unlock and time passing."""

    class Lifecycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.api = Api(app.test_client())
            # A customer of its own per run: nothing carries over between runs.
            self.cid = f"cust-{uuid.uuid4().hex[:12]}"
            register(self.api, self.cid)
            self.secret = enrol_totp(self.api, clock, self.cid)
            self.model = Model(clock())
            self.model.last_step = int(clock() - 30) // 30
            self.digests: dict[str, str] = {}

        def pick(self, data_index: int) -> str:
            ids = sorted(self.model.challenges)
            return ids[data_index % len(ids)]

        @rule(ttl=st.sampled_from([60, 90, 300]))
        def create(self, ttl: int) -> None:
            rv = self.api.post("/v1/challenges", transfer(self.cid, methods=["totp"], ttl_seconds=ttl))
            if self.model.locked:
                assert_problem(rv, 423, "customer_locked")
                return
            assert rv.status_code == 201, rv.get_data(as_text=True)
            body = rv.get_json()
            self.model.challenges[body["id"]] = {
                "status": "pending",
                "attempts": 3,
                "expires": self.model.now + ttl,
            }
            self.digests[body["id"]] = body["transaction_digest"]

        @rule(seconds=st.sampled_from([1, 29, 30, 31, 61, 300]))
        def time_passes(self, seconds: int) -> None:
            clock.advance(seconds)
            self.model.now += seconds

        @precondition(lambda self: self.model.challenges)
        @rule(i=st.integers(min_value=0, max_value=50), right=st.booleans())
        def verify(self, i: int, right: bool) -> None:
            cid = self.pick(i)
            code = totp_code(self.secret, clock()) if right else wrong_code(self.secret, clock())
            rv = self.api.post(f"/v1/challenges/{cid}/totp", {"code": code})
            model, ch = self.model, self.model.challenges[cid]
            status = model.status(cid)
            if status == "expired":
                assert_problem(rv, 410, "challenge_expired")
            elif status != "pending":
                assert_problem(rv, 409, "challenge_not_pending")
            elif model.locked:
                assert_problem(rv, 423, "customer_locked")
            elif right and int(clock()) // 30 > model.last_step:
                assert rv.status_code == 200, rv.get_data(as_text=True)
                ch["status"] = "verified"
                model.last_step = int(clock()) // 30
                model.failed = 0
            else:  # a wrong code, or a right one already spent (replay)
                left = model.fail(ch)
                assert assert_problem(rv, 422, "invalid_code")["attempts_left"] == left

        @precondition(lambda self: self.model.challenges)
        @rule(i=st.integers(min_value=0, max_value=50), right=st.booleans())
        def consume(self, i: int, right: bool) -> None:
            cid = self.pick(i)
            digest = self.digests[cid] if right else "0" * 64
            rv = self.api.post(f"/v1/challenges/{cid}/consume", {"transaction_digest": digest})
            status = self.model.status(cid)
            if status == "consumed":
                assert_problem(rv, 409, "already_consumed")
            elif status == "expired":
                assert_problem(rv, 410, "challenge_expired")
            elif status != "verified":
                assert_problem(rv, 409, "challenge_not_verified")
            elif not right:
                assert_problem(rv, 409, "digest_mismatch")
            else:
                assert rv.status_code == 200, rv.get_data(as_text=True)
                self.model.challenges[cid]["status"] = "consumed"

        @precondition(lambda self: self.model.challenges)
        @rule(i=st.integers(min_value=0, max_value=50))
        def cancel(self, i: int) -> None:
            cid = self.pick(i)
            rv = self.api.post(f"/v1/challenges/{cid}/cancel")
            if self.model.status(cid) != "pending":
                assert_problem(rv, 409, "challenge_not_pending")
            else:
                assert rv.status_code == 200
                self.model.challenges[cid]["status"] = "cancelled"

        @rule()
        def unlock(self) -> None:
            assert self.api.post(f"/v1/customers/{self.cid}/unlock").status_code == 200
            self.model.failed, self.model.locked = 0, False

        @invariant()
        def the_gateway_agrees_with_the_model(self) -> None:
            customer = self.api.get(f"/v1/customers/{self.cid}").get_json()
            assert (customer["failed_attempts"], customer["locked"]) == (self.model.failed, self.model.locked)
            for cid in self.model.challenges:
                body = self.api.get(f"/v1/challenges/{cid}").get_json()
                assert body["status"] == self.model.status(cid), cid
                assert body["attempts_left"] == max(self.model.challenges[cid]["attempts"], 0)

    run_state_machine_as_test(
        Lifecycle, settings=hsettings(max_examples=15, stateful_step_count=20, deadline=None)
    )


@pytest.mark.parametrize(
    "start",
    [
        0.0,  # 1970-01-01
        951_782_340.123,  # 2000-02-28T23:59:00.123Z, into a leap day of a 400-year
        1_709_164_799.999,  # 2024-02-28T23:59:59.999Z, into a leap day
        4_107_542_340.5,  # 2100-02-28T23:59:00.5Z: no leap day in 2100
        1_767_225_599.0,  # 2025-12-31T23:59:59Z, into a new year
        20_000_000_000.0,  # 2603-10-11, the RFC 6238 vector's time
    ],
)
def test_the_expiry_event_is_dated_in_rfc3339_utc_at_any_date(api, customer, clock, start):
    from authgw.challenges.domain import rfc3339

    clock.now = start
    challenge = new_challenge(api, methods=["totp"], ttl_seconds=60)
    clock.advance(61.001)
    expired = next(e for e in events(api) if e["type"] == "challenge.expired")
    now_ms = int(clock() * 1000)  # as the gateway reads its clock
    # Integer arithmetic only: a float of the time loses milliseconds far from 1970.
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=now_ms)
    assert expired["at"] == f"{expected:%Y-%m-%dT%H:%M:%S}.{now_ms % 1000:03d}Z"
    # The scripts and the Python side write the same form.
    assert expired["at"] == rfc3339(now_ms)
    assert expired["expires_at"] == challenge["expires_at"]
