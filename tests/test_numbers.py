"""Designated numbers cannot be redirected (API.md Additions, "Designated numbers").

A number shown to a customer's challenge stays bound to that challenge until its
``expires_at``, however the challenge ended: no other challenge of that customer gets it, and a
call on it verifies nothing else. These are the attacks of a fraudster who holds the customer's
online-banking password and starts transfers in the same session, over HTTP and signed
webhooks, on every store of the ``store`` fixture (fakeredis, redis-server, Cluster).
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

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
from tests.helpers.settings import CALLBACK_NUMBERS, PUBLIC_URL, TWILIO_TOKEN, settings_for_tests

PHONE = "+819012345678"  # the victim's registered phone (conftest's register default)
LINE_1, LINE_2, LINE_3 = CALLBACK_NUMBERS
MULE = {
    "bank_code": "0009",
    "branch_code": "999",
    "account_type": "ordinary",
    "account_number": "7654321",
    "name": "ﾐｭｰﾙ ｺｳｻﾞ",
}


def signed_post(client: Any, path: str, params: dict[str, str]) -> Any:
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"{PUBLIC_URL}{path}", params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def call(app: Any, to: str, from_: str = PHONE, digits: str | None = None) -> ET.Element:
    """One inbound call, as Twilio posts it; with ``digits`` the caller answers the dialogue."""
    client = app.test_client()
    sid = "CA" + secrets.token_hex(16)
    rv = signed_post(client, "/webhooks/twilio/voice", {"CallSid": sid, "From": from_, "To": to})
    assert rv.status_code == 200, rv.get_data(as_text=True)
    root = ET.fromstring(rv.get_data())
    gather = root.find("Gather")
    if digits is not None and gather is not None:
        action = gather.attrib["action"]
        assert action.startswith(PUBLIC_URL)
        rv = signed_post(client, action[len(PUBLIC_URL) :], {"CallSid": sid, "Digits": digits})
        assert rv.status_code == 200, rv.get_data(as_text=True)
        root = ET.fromstring(rv.get_data())
    return root


def create(
    api: Api, customer_id: str = "cust-001", headers: dict[str, str] | None = None, **fields: Any
) -> Any:
    return api.post("/v1/challenges", transfer(customer_id, **fields), headers=headers)


def status(api: Api, challenge: dict[str, Any]) -> str:
    rv = api.get(f"/v1/challenges/{challenge['id']}")
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return str(rv.get_json()["status"])


def number(challenge: dict[str, Any]) -> str | None:
    return (challenge.get("callback") or {}).get("number")


def events(api: Api, customer_id: str = "cust-001") -> list[dict[str, Any]]:
    return api.get(f"/v1/customers/{customer_id}/events?limit=100").get_json()["events"]


def by_mode(*modes: str) -> Any:
    return pytest.mark.parametrize(
        "settings", [settings_for_tests(callback_mode=m) for m in modes], ids=list(modes)
    )


# -- the three-transfer hijack ----------------------------------------------------------------


@by_mode("reject", "confirm")
@pytest.mark.parametrize("with_totp", [False, True], ids=["callback-only", "with-totp"])
def test_three_transfers_cannot_take_the_victims_number(app, api, clock, with_totp):
    register(api)
    if with_totp:
        enrol_totp(api, clock)
    victim = new_challenge(api, amount=10_000)
    assert number(victim) == LINE_1
    # The attacker, in the same online-banking session: three ¥9,000,000 transfers to a mule.
    attacks = [create(api, amount=9_000_000, payee=MULE) for _ in range(3)]

    # The victim calls the number they were shown, from the registered phone (and, in confirm
    # mode, hears their own ¥10,000 and presses 1).
    call(app, LINE_1, digits="1")

    made = [rv.get_json() for rv in attacks if rv.status_code == 201]
    assert [status(api, c) for c in made] == ["pending"] * len(made), "the call verified the attacker's"
    assert status(api, victim) == "verified"
    # No attacker challenge was ever given 0001, and the victim's was never superseded.
    assert [number(c) for c in made[:2]] == [LINE_2, LINE_3]
    assert LINE_1 not in [number(c) for c in made]
    assert "challenge.cancelled" not in [e["type"] for e in events(api)]
    # The third found no number left: with TOTP allowed it is a TOTP-only challenge, without
    # TOTP it is refused.
    third = attacks[2]
    if with_totp:
        assert third.status_code == 201
        assert third.get_json()["methods"] == ["totp"] and "callback" not in third.get_json()
    else:
        body = assert_problem(third, 422, "method_unavailable")
        assert "designated number" in body["detail"]


# -- immediate re-use after an ending ---------------------------------------------------------


def end(app: Any, api: Api, challenge: dict[str, Any], secret: str, clock: Any, how: str) -> str:
    """End the challenge ``how``; returns its final status."""
    cid = challenge["id"]
    if how in ("call", "consume"):
        assert [c.tag for c in call(app, number(challenge) or "")] == ["Reject"]
        if how == "consume":
            rv = api.post(
                f"/v1/challenges/{cid}/consume", {"transaction_digest": challenge["transaction_digest"]}
            )
            assert rv.status_code == 200, rv.get_data(as_text=True)
    elif how == "totp":
        rv = api.post(f"/v1/challenges/{cid}/totp", {"code": totp_code(secret, clock())})
        assert rv.status_code == 200, rv.get_data(as_text=True)
    elif how == "cancel":
        assert api.post(f"/v1/challenges/{cid}/cancel").status_code == 200
    elif how == "failed":
        for _ in range(3):
            api.post(f"/v1/challenges/{cid}/totp", {"code": wrong_code(secret, clock())})
    return status(api, challenge)


@pytest.mark.parametrize(
    ("how", "final"),
    [
        ("call", "verified"),
        ("totp", "verified"),
        ("consume", "consumed"),
        ("cancel", "cancelled"),
        ("failed", "failed"),
    ],
)
def test_a_number_is_not_reused_the_moment_its_challenge_ends(app, api, clock, how, final):
    register(api)
    secret = enrol_totp(api, clock)
    first = new_challenge(api, amount=10_000)
    assert number(first) == LINE_1
    assert end(app, api, first, secret, clock, how) == final

    later = [new_challenge(api, amount=8_000_000 + i, payee=MULE) for i in range(3)]
    # A second call on 0001 verifies nothing.
    assert [c.tag for c in call(app, LINE_1)] == ["Reject"]
    assert [status(api, c) for c in later] == ["pending"] * 3
    assert status(api, first) == final
    # The customer's next challenges got the other numbers, then none: never 0001 again.
    assert [number(c) for c in later] == [LINE_2, LINE_3, None]
    assert later[2]["methods"] == ["totp"]


@pytest.mark.parametrize(
    "settings", [settings_for_tests(callback_mode="confirm", fraud_report_locks=False)], ids=["confirm"]
)
def test_a_denied_challenge_keeps_its_number(app, api):
    # With fraud reports locking (the default) nothing could be created after the "9"; the
    # number rule is what is judged here.
    register(api)
    first = new_challenge(api, amount=10_000)
    call(app, LINE_1, digits="9")
    assert status(api, first) == "denied"
    later = [create(api, amount=9_000_000, payee=MULE) for _ in range(3)]
    assert [number(rv.get_json()) for rv in later[:2]] == [LINE_2, LINE_3]
    assert_problem(later[2], 422, "method_unavailable")
    call(app, LINE_1, digits="1")
    assert [status(api, rv.get_json()) for rv in later[:2]] == ["pending", "pending"]


# -- the idempotent replay --------------------------------------------------------------------


def test_a_replayed_creation_names_a_number_bound_to_that_challenge_alone(app, api):
    register(api)
    key = {"Idempotency-Key": "order-1"}
    first = create(api, headers=key, amount=10_000)
    assert first.status_code == 201
    shown = first.get_json()
    assert number(shown) == LINE_1
    call(app, LINE_1)
    assert status(api, shown) == "verified"
    # Another challenge of the customer meanwhile: ¥8,000,000.
    other = new_challenge(api, amount=8_000_000, payee=MULE)

    again = create(api, headers=key, amount=10_000)
    assert again.status_code == 201
    assert again.get_json() == shown
    # 0001, as the replay says, still points at the first challenge alone.
    call(app, LINE_1)
    assert status(api, other) == "pending"
    assert number(other) == LINE_2


def test_a_replay_after_expires_at_names_no_number(app, api, clock):
    # The number is the challenge's only until its expires_at; after that it may be bound to a
    # new challenge, so a replay of the creation must not send the customer to call it.
    register(api)
    key = {"Idempotency-Key": "order-2"}
    shown = create(api, headers=key, amount=10_000, ttl_seconds=60).get_json()
    assert number(shown) == LINE_1
    clock.advance(59)
    assert create(api, headers=key, amount=10_000, ttl_seconds=60).get_json() == shown
    clock.advance(1)
    # 0001 is free again and goes to one of the new challenges (never-bound numbers first).
    held = [new_challenge(api, amount=1000 + i, payee=MULE) for i in range(len(CALLBACK_NUMBERS))]
    (now_on_1,) = [c for c in held if number(c) == LINE_1]
    replay = create(api, headers=key, amount=10_000, ttl_seconds=60)
    assert replay.status_code == 201
    assert "callback" not in replay.get_json()
    assert {k: v for k, v in replay.get_json().items()} == {k: v for k, v in shown.items() if k != "callback"}
    call(app, LINE_1)
    assert status(api, now_on_1) == "verified"  # 0001 is the new challenge's, as it was told


# -- no number left: totp without callback, or method_unavailable -----------------------------


def fill_the_pool(api: Api, **fields: Any) -> list[dict[str, Any]]:
    held = [new_challenge(api, amount=1000 + i, **fields) for i in range(len(CALLBACK_NUMBERS))]
    assert [number(c) for c in held] == list(CALLBACK_NUMBERS)
    return held


@pytest.mark.parametrize("methods", [None, ["callback", "totp"], ["totp", "callback"]])
def test_with_totp_allowed_a_full_pool_gives_a_challenge_without_callback(api, clock, methods):
    register(api)
    secret = enrol_totp(api, clock)
    held = fill_the_pool(api)
    fields = {} if methods is None else {"methods": methods}
    rv = create(api, amount=5000, **fields)
    assert rv.status_code == 201, rv.get_data(as_text=True)
    body = rv.get_json()
    assert body["methods"] == ["totp"]
    assert "callback" not in body
    assert [status(api, c) for c in held] == ["pending"] * 3
    verified = api.post(f"/v1/challenges/{body['id']}/totp", {"code": totp_code(secret, clock())})
    assert verified.status_code == 200
    created = [e for e in events(api) if e["type"] == "challenge.created" and e["challenge_id"] == body["id"]]
    assert created[0]["methods"] == "totp"


@pytest.mark.parametrize(
    ("with_totp", "methods"),
    [(False, None), (False, ["callback"]), (False, ["callback", "totp"]), (True, ["callback"])],
)
def test_callback_only_on_a_full_pool_is_method_unavailable(api, clock, with_totp, methods):
    register(api)
    if with_totp:
        enrol_totp(api, clock)
    held = fill_the_pool(api)
    before = events(api)
    fields = {} if methods is None else {"methods": methods}
    body = assert_problem(create(api, amount=5000, **fields), 422, "method_unavailable")
    assert "designated number" in body["detail"]
    assert held[0]["expires_at"] in body["detail"]  # when the first one is free again
    assert events(api) == before  # nothing written, nothing superseded
    assert [status(api, c) for c in held] == ["pending"] * 3


# -- after expires_at the number is free again ------------------------------------------------


def test_a_number_is_free_again_at_its_challenges_expires_at(app, api, clock):
    register(api)
    first, second, third = fill_the_pool(api, ttl_seconds=60)
    call(app, LINE_1)
    api.post(f"/v1/challenges/{second['id']}/cancel")
    clock.advance(59.999)
    assert_problem(create(api), 422, "method_unavailable")
    clock.advance(0.001)
    fresh = new_challenge(api, amount=20_000)
    assert number(fresh) == LINE_1
    assert [status(api, c) for c in (first, second, third)] == ["expired", "cancelled", "expired"]
    # Now bound to the new challenge: a call on it verifies that one.
    call(app, LINE_1)
    assert status(api, fresh) == "verified"


def test_the_number_free_longest_is_given_first(api, clock):
    register(api)
    a = new_challenge(api, ttl_seconds=60)
    clock.advance(10)
    b = new_challenge(api, ttl_seconds=60)
    assert (number(a), number(b)) == (LINE_1, LINE_2)
    clock.advance(60)  # both expired: 0001 ten seconds earlier; 0003 was never bound
    assert [number(new_challenge(api)) for _ in range(3)] == [LINE_3, LINE_1, LINE_2]


def test_other_customers_may_share_a_number_bound_for_one(app, api):
    register(api, "alice", ("090-1111-2222",))
    register(api, "bob", ("090-3333-4444",))
    alice = new_challenge(api, "alice")
    call(app, LINE_1, from_="+819011112222")
    assert status(api, alice) == "verified"
    bob = new_challenge(api, "bob")
    assert number(bob) == LINE_1  # the caller ID tells them apart
    call(app, LINE_1, from_="+819011112222")
    assert status(api, bob) == "pending"
    call(app, LINE_1, from_="+819033334444")
    assert status(api, bob) == "verified"


def test_a_customer_deleted_and_registered_again_gets_none_of_the_bound_numbers(app, api, store):
    register(api)
    old = new_challenge(api, amount=10_000)
    assert api.delete("/v1/customers/cust-001").status_code == 204
    assert status(api, old) == "cancelled"
    register(api)
    later = [create(api, amount=9_000_000, payee=MULE, ttl_seconds=900) for _ in range(3)]
    call(app, LINE_1)
    assert [status(api, rv.get_json()) for rv in later[:2]] == ["pending", "pending"]
    assert [number(rv.get_json()) for rv in later[:2]] == [LINE_2, LINE_3]
    assert_problem(later[2], 422, "method_unavailable")
    # The bindings live in a hash that expires with the latest of them, not the first.
    lines = app.extensions["authgw"].store.keys.for_customer("cust-001").lines
    assert 600_000 < store.pttl(lines) <= 900_000


def test_the_bindings_of_a_customer_expire_with_the_last_of_them(app, api, store, clock):
    register(api)
    lines = app.extensions["authgw"].store.keys.for_customer("cust-001").lines
    new_challenge(api, ttl_seconds=900)
    clock.advance(100)
    new_challenge(api, ttl_seconds=60)  # ends sooner: the hash keeps the longer expiry
    assert 700_000 < store.pttl(lines) <= 900_000
