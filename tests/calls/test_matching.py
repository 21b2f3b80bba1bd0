"""Which call verifies which challenge: the matched call, calls that approve nothing,
withheld caller ID, several challenges at once, caller-ID attestation, the per-caller limit,
and a call racing a TOTP verification (every row of API.md's webhook table, in every mode)."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from authgw.app import create_app
from authgw.keys import Keys
from tests.helpers.api import Api, assert_problem, enrol_totp, new_challenge, register, totp_code, transfer
from tests.helpers.calls import (
    LINE_1,
    LINE_2,
    LINE_3,
    PHONE,
    Phone,
    approve,
    events,
    spoken,
    status_of,
    types,
)
from tests.helpers.phone import race, twiml, verbs
from tests.helpers.settings import CALLBACK_NUMBERS
from tests.helpers.stores import every_key
from tests.helpers.webhooks import call_events


def test_registered_phone_calling_its_number_verifies_the_challenge(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    root = approve(phone, mode, challenge)
    if mode == "reject":
        assert verbs(root) == ["Reject"]
    else:
        assert "確認ができました" in spoken(root)
    body = status_of(api, challenge)
    assert body["status"] == "verified"
    assert body["verified_by"] == "callback"
    verified = [e for e in events(api) if e["type"] == "challenge.verified"]
    assert len(verified) == 1
    assert verified[0]["method"] == "callback"
    assert verified[0]["from"] == PHONE
    assert verified[0]["call_sid"] == phone.sids[0]
    assert verified[0]["challenge_id"] == challenge["id"]
    rv = api.post(
        f"/v1/challenges/{challenge['id']}/consume", {"transaction_digest": challenge["transaction_digest"]}
    )
    assert rv.get_json()["status"] == "consumed"


def test_reject_mode_answers_with_reject_so_the_call_is_free(api, phone):
    register(api)
    challenge = new_challenge(api)
    root = twiml(phone.call(PHONE, LINE_1))
    assert verbs(root) == ["Reject"]
    assert status_of(api, challenge)["status"] == "verified"
    assert types(api)[-3:] == ["challenge.created", "call.received", "challenge.verified"]


@pytest.mark.parametrize(
    "to", ["050-3000-0001", "05030000001", "+81 50 3000 0001", "０５０－３０００－０００１", "+815030000001"]
)
def test_designated_number_in_any_format_is_matched(api, phone, to):
    register(api)
    challenge = new_challenge(api)
    assert verbs(twiml(phone.call(PHONE, to))) == ["Reject"]
    assert status_of(api, challenge)["status"] == "verified"


# -- calls that approve nothing -----------------------------------------------------------------


def test_stranger_calling_is_rejected_and_changes_nothing(api, phone, mode, store):
    register(api)
    challenge = new_challenge(api)
    before = types(api)
    assert verbs(twiml(phone.call("+819087654321", LINE_1))) == ["Reject"]
    assert status_of(api, challenge)["status"] == "pending"
    assert types(api) == before


def test_stranger_call_is_an_event_on_the_gateways_call_stream(api, phone, store, app):
    register(api)
    twiml(phone.call("+819087654321", LINE_1))
    twiml(phone.call("+819087654321", LINE_1, phone.sids[0]))  # delivered again: one event
    assert call_events(store, app) == [
        {
            "at": call_events(store, app)[0]["at"],
            "type": "call.unmatched",
            "call_sid": phone.sids[0],
            "from": "+819087654321",
            "to": LINE_1,
            "reason": "unknown_caller",
        }
    ]


def test_registered_phone_calling_another_designated_number_is_unmatched(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    assert challenge["callback"]["number"] == LINE_1
    assert verbs(twiml(phone.call(PHONE, LINE_2))) == ["Reject"]
    assert status_of(api, challenge)["status"] == "pending"
    unmatched = events(api)[0]
    assert unmatched["type"] == "call.unmatched"
    assert unmatched["reason"] == "no_challenge"
    assert unmatched["call_sid"] == phone.sids[0]
    assert unmatched["from"] == PHONE


def test_number_outside_the_pool_is_unmatched(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    assert verbs(twiml(phone.call(PHONE, "+81312345678"))) == ["Reject"]
    assert verbs(twiml(phone.call(PHONE, "not a number"))) == ["Reject"]
    assert status_of(api, challenge)["status"] == "pending"


def test_expired_challenge_is_not_verified_by_a_call(api, phone, mode, clock):
    register(api)
    challenge = new_challenge(api, ttl_seconds=60)
    clock.advance(60)
    assert verbs(twiml(phone.call(PHONE, LINE_1))) == ["Reject"]
    assert status_of(api, challenge)["status"] == "expired"
    assert types(api)[-2:] == ["challenge.expired", "call.unmatched"]


def test_call_from_a_locked_customer_verifies_nothing(api, phone, mode, store, app):
    register(api)
    challenge = new_challenge(api)
    keys = Keys(app.extensions["authgw"].settings.key_prefix).for_customer("cust-001")
    store.hset(keys.customer, "locked", "1")
    assert verbs(twiml(phone.call(PHONE, LINE_1))) == ["Reject"]
    assert status_of(api, challenge)["status"] == "pending"
    assert events(api)[0]["reason"] == "customer_locked"


def test_challenge_without_the_callback_method_is_not_verified_by_a_call(api, phone, clock):
    register(api)
    enrol_totp(api, clock)
    challenge = new_challenge(api, methods=["totp"])
    assert "callback" not in challenge
    assert verbs(twiml(phone.call(PHONE, LINE_1))) == ["Reject"]
    assert status_of(api, challenge)["status"] == "pending"


@pytest.mark.parametrize(
    "caller",
    [
        "anonymous",
        "Anonymous",
        "+266696687",
        "+7378742833",
        "+86282452253",
        "+8656696",
        "+2562533",
        "restricted",
        "Restricted",
        "unavailable",
        "Unavailable",
        "unknown",
        "",
    ],
)
def test_withheld_caller_id_is_asked_to_redial_with_186(api, phone, mode, store, app, caller):
    register(api)
    challenge = new_challenge(api)
    before_events = types(api)
    before_keys = every_key(store)
    root = twiml(phone.call(caller, LINE_1))
    assert verbs(root) == ["Say", "Hangup"]
    say = root.find("Say")
    assert say is not None and say.attrib["language"] == "ja-JP"
    assert "非通知" in spoken(root) and "いち、はち、ろく" in spoken(root)
    assert status_of(api, challenge)["status"] == "pending"
    assert types(api) == before_events
    # Only the call's own record and the gateway's call stream were written.
    assert len(every_key(store) - before_keys) == 2
    (withheld,) = call_events(store, app)
    assert withheld["type"] == "call.withheld"
    assert withheld["call_sid"] == phone.sids[0] and withheld["to"] == LINE_1


# -- several challenges -------------------------------------------------------------------------


def test_two_pending_challenges_on_distinct_numbers_map_one_call_each(api, phone, mode):
    register(api)
    first = new_challenge(api, amount=1000)
    second = new_challenge(api, amount=2000)
    assert {first["callback"]["number"], second["callback"]["number"]} == {LINE_1, LINE_2}
    approve(phone, mode, second)
    assert status_of(api, second)["status"] == "verified"
    assert status_of(api, first)["status"] == "pending"
    approve(phone, mode, first)
    assert status_of(api, first)["status"] == "verified"


def test_exhausted_pool_supersedes_no_challenge(api, phone, mode):
    # No live number is taken from a pending challenge: the pool used up, a callback-only
    # creation is refused and each number still reaches the challenge it was shown with.
    register(api)
    old = [new_challenge(api, amount=1000 + i) for i in range(len(CALLBACK_NUMBERS))]
    assert [c["callback"]["number"] for c in old] == [LINE_1, LINE_2, LINE_3]
    assert_problem(api.post("/v1/challenges", transfer(amount=9999)), 422, "method_unavailable")
    assert "challenge.cancelled" not in types(api)
    approve(phone, mode, old[0])
    assert status_of(api, old[0])["status"] == "verified"
    assert [status_of(api, c)["status"] for c in old[1:]] == ["pending", "pending"]


def test_customers_calling_the_same_number_each_reach_their_own_challenge(api, phone, mode):
    register(api, "alice", ("090-1111-2222",))
    register(api, "bob", ("090-3333-4444",))
    alice = new_challenge(api, "alice")
    bob = new_challenge(api, "bob")
    assert alice["callback"]["number"] == bob["callback"]["number"] == LINE_1
    approve(phone, mode, bob, from_="+819033334444")
    assert status_of(api, bob)["status"] == "verified"
    assert status_of(api, alice)["status"] == "pending"


# -- caller-ID attestation ----------------------------------------------------------------------


def test_failed_attestation_is_refused_and_recorded(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    root = twiml(phone.call(PHONE, LINE_1, StirVerstat="TN-Validation-Failed-A"))
    assert verbs(root) == ["Reject"]
    assert status_of(api, challenge)["status"] == "pending"
    unmatched = events(api)[0]
    assert unmatched["type"] == "call.unmatched"
    assert unmatched["reason"] == "attestation_failed"
    assert unmatched["stir_verstat"] == "TN-Validation-Failed-A"


def test_passed_attestation_is_recorded_on_the_call_event(api, phone):
    register(api)
    challenge = new_challenge(api)
    twiml(phone.call(PHONE, LINE_1, StirVerstat="TN-Validation-Passed-A"))
    assert status_of(api, challenge)["status"] == "verified"
    received = [e for e in events(api) if e["type"] == "call.received"][0]
    assert received["stir_verstat"] == "TN-Validation-Passed-A"


# -- the per-caller limit -----------------------------------------------------------------------


def test_a_number_calling_over_the_rate_limit_is_rejected_unjudged(store, clock, settings):
    app = create_app({**settings, "rate_limit_caller": 2, "redis_client": store, "clock": clock})
    if "authgw.ratelimit" not in app.extensions:
        pytest.skip("this build has no rate limiter")
    api, phone = Api(app.test_client()), Phone(app.test_client())
    register(api)
    twiml(phone.call(PHONE, LINE_2))
    twiml(phone.call(PHONE, LINE_3))
    challenge = new_challenge(api)
    assert verbs(twiml(phone.call(PHONE, LINE_1))) == ["Reject"]
    assert status_of(api, challenge)["status"] == "pending"
    assert types(api).count("call.unmatched") == 2
    # Other numbers are not limited by it.
    twiml(phone.call("+819087654321", LINE_1))


def test_a_spoofed_flood_of_the_customers_number_does_not_silence_their_attested_call(store, clock, settings):
    """Someone spoofing the customer's caller ID calls in a loop to use up the per-caller limit.
    Their calls cannot carry the carrier's full attestation for that number, so they are
    counted apart from the customer's own A-attested call, which still verifies. The limit
    itself still holds for each class: attested calls in a loop are rejected too."""
    app = create_app({**settings, "rate_limit_caller": 2, "redis_client": store, "clock": clock})
    api, phone = Api(app.test_client()), Phone(app.test_client())
    register(api)
    for stir in ("", "No-TN-Validation", "TN-Validation-Passed-C", "TN-Validation-Failed-A"):
        for line in (LINE_2, LINE_3):
            phone.call(PHONE, line, **({"StirVerstat": stir} if stir else {}))
    assert verbs(twiml(phone.call(PHONE, LINE_2))) == ["Reject"]  # the unattested class is spent
    challenge = new_challenge(api)
    twiml(phone.call(PHONE, LINE_1, StirVerstat="TN-Validation-Passed-A"))
    assert status_of(api, challenge)["status"] == "verified"
    twiml(phone.call(PHONE, LINE_2, StirVerstat="TN-Validation-Passed-A"))
    assert verbs(twiml(phone.call(PHONE, LINE_3, StirVerstat="TN-Validation-Passed-A"))) == ["Reject"]


# -- a call racing a TOTP verification (real threads, real redis-server) ------------------------


def totp_after_reads(api: Api, challenge_id: str, code: str, reads: int) -> Any:
    for _ in range(reads):
        api.get(f"/v1/challenges/{challenge_id}")
    return api.post(f"/v1/challenges/{challenge_id}/totp", {"code": code})


@pytest.mark.real_redis
def test_call_racing_a_totp_verification_exactly_one_wins(real_store, clock, settings):
    # One number calls 30 times in a row here: no per-caller rate limit.
    app = create_app({**settings, "rate_limit_caller": 0, "redis_client": real_store, "clock": clock})
    api = Api(app.test_client())
    register(api)
    secret = enrol_totp(api, clock)
    winners: dict[str, int] = {"callback": 0, "totp": 0}
    for round_ in range(30):
        clock.advance(30)  # a fresh TOTP step each round
        # A number stays bound until its challenge's expires_at: with 60 s challenges and 30 s
        # rounds, at most two of the three are bound at once.
        challenge = new_challenge(api, amount=1000 + round_, ttl_seconds=60)
        code = totp_code(secret, clock())
        # The TOTP side reads the challenge 0 to 5 times first, so that across the rounds the
        # two requests meet at every point of the call's path and each side wins sometimes.
        call, totp = race(
            [
                partial(Phone(app.test_client()).call, PHONE, challenge["callback"]["number"]),
                partial(totp_after_reads, Api(app.test_client()), challenge["id"], code, round_ % 6),
            ]
        )
        answers = {"call": call, "totp": totp}
        assert verbs(twiml(answers["call"])) == ["Reject"]
        body = status_of(api, challenge)
        assert body["status"] == "verified"
        winners[body["verified_by"]] += 1
        totp_won = answers["totp"].status_code == 200
        assert totp_won == (body["verified_by"] == "totp")
        if not totp_won:
            assert_problem(answers["totp"], 409, "challenge_not_pending")
        verified = [
            e
            for e in events(api)
            if e["type"] == "challenge.verified" and e["challenge_id"] == challenge["id"]
        ]
        assert len(verified) == 1
    assert sum(winners.values()) == 30, winners
