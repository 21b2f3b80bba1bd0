"""Phone callback end to end over HTTP: every row of API.md's webhook table, in every mode.

Calls are signed exactly as Twilio signs them (``RequestValidator.compute_signature`` over
``AUTHGW_PUBLIC_URL`` + path and the form), so these tests go through the same door as Twilio.
The ``store`` fixture runs each test on fakeredis, a real redis-server and a Redis Cluster.
"""

from __future__ import annotations

import re
import secrets
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from authgw.app import create_app
from authgw.keys import Keys
from authgw.webhooks.speech import yen
from tests.conftest import (
    CALLBACK_NUMBERS,
    PUBLIC_URL,
    TWILIO_TOKEN,
    Api,
    assert_problem,
    enrol_totp,
    every_key,
    new_challenge,
    register,
    settings_for_tests,
    totp_code,
    transfer,
)
from tests.test_round_trips import CountingConnection
from tests.topology import free_ports

PHONE = "+819012345678"
LINE_1, LINE_2, LINE_3 = CALLBACK_NUMBERS
MODES = ("reject", "confirm", "code")


def new_sid() -> str:
    return "CA" + secrets.token_hex(16)


def twiml(rv: Any) -> ET.Element:
    """The response as parsed TwiML (a parse error fails the test)."""
    assert rv.status_code == 200, rv.get_data(as_text=True)
    assert rv.mimetype == "text/xml"
    root = ET.fromstring(rv.get_data())
    assert root.tag == "Response"
    return root


def spoken(root: ET.Element) -> str:
    return "".join(say.text or "" for say in root.iter("Say"))


def verbs(root: ET.Element) -> list[str]:
    return [child.tag for child in root]


@dataclass
class Phone:
    """Twilio's side of a call, over the app's test client."""

    client: Any
    token: str = TWILIO_TOKEN
    public_url: str = PUBLIC_URL
    sids: list[str] = field(default_factory=list)

    def post(self, url: str, params: dict[str, str], *, signature: str | None = None) -> Any:
        if signature is None:
            signature = RequestValidator(self.token).compute_signature(url, params)
        if url.startswith(self.public_url):  # the proxy in front strips the public base
            path = url[len(self.public_url) :]
        else:
            parts = urlsplit(url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.client.post(path, data=params, headers={"X-Twilio-Signature": signature})

    def call(self, from_: str = PHONE, to: str = LINE_1, sid: str | None = None, **extra: str) -> Any:
        sid = sid or new_sid()
        self.sids.append(sid)
        params = {
            "CallSid": sid,
            "AccountSid": "AC" + "0" * 32,
            "From": from_,
            "To": to,
            "Caller": from_,
            "Called": to,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
            **extra,
        }
        return self.post(f"{self.public_url}/webhooks/twilio/voice", params)

    def press(self, gather: ET.Element, digits: str, sid: str | None = None) -> Any:
        """Follow a <Gather> to its action with the keys pressed, as Twilio does."""
        sid = sid or self.sids[-1]
        return self.post(
            gather.attrib["action"], {"CallSid": sid, "Digits": digits, "From": PHONE, "To": LINE_1}
        )

    def status(self, sid: str, call_status: str = "completed", **extra: str) -> Any:
        return self.post(
            f"{self.public_url}/webhooks/twilio/status", {"CallSid": sid, "CallStatus": call_status, **extra}
        )


def approve(
    phone: Phone,
    mode: str,
    challenge: dict[str, Any],
    from_: str = PHONE,
    to: str | None = None,
    sid: str | None = None,
) -> ET.Element:
    """Call the challenge's number and, in confirm and code modes, answer as the customer."""
    root = twiml(phone.call(from_, to or challenge["callback"]["number"], sid))
    if mode == "reject":
        return root
    gather = root.find("Gather")
    assert gather is not None, ET.tostring(root)
    keys = "1" if mode == "confirm" else challenge["callback"]["code"]
    return twiml(phone.press(gather, keys, sid))


def status_of(api: Api, challenge: dict[str, Any]) -> dict[str, Any]:
    rv = api.get(f"/v1/challenges/{challenge['id']}")
    assert rv.status_code == 200
    return rv.get_json()  # type: ignore[no-any-return]


def events(api: Api, customer_id: str = "cust-001") -> list[dict[str, Any]]:
    return api.get(f"/v1/customers/{customer_id}/events?limit=100").get_json()["events"]


def types(api: Api, customer_id: str = "cust-001") -> list[str]:
    return [e["type"] for e in reversed(events(api, customer_id))]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The suite's settings, in the callback mode the test is parametrised with."""
    settings = settings_for_tests()
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and "mode" in callspec.params:
        settings["callback_mode"] = callspec.params["mode"]
    return settings


@pytest.fixture
def phone(app: Any) -> Phone:
    return Phone(app.test_client())


# -- the matched call ---------------------------------------------------------------------


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


# -- calls that approve nothing -----------------------------------------------------------


def test_stranger_calling_is_rejected_and_changes_nothing(api, phone, mode, store):
    register(api)
    challenge = new_challenge(api)
    before = types(api)
    assert verbs(twiml(phone.call("+819087654321", LINE_1))) == ["Reject"]
    assert status_of(api, challenge)["status"] == "pending"
    assert types(api) == before


def call_events(store: Any, app: Any) -> list[dict[str, str]]:
    """The gateway's call stream (calls no customer's trail can hold), oldest first."""
    key = Keys(app.extensions["authgw"].settings.key_prefix).call_events()
    return [fields for _, fields in store.xrange(key)]


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


# -- the designated-number pool -----------------------------------------------------------


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


# -- CallSid idempotency -------------------------------------------------------------------


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


# -- confirm mode ----------------------------------------------------------------------------


@pytest.fixture
def confirm_settings(settings: dict[str, Any]) -> dict[str, Any]:
    settings["callback_mode"] = "confirm"
    return settings


def gather_of(root: ET.Element) -> ET.Element:
    gather = root.find("Gather")
    assert gather is not None, ET.tostring(root, encoding="unicode")
    return gather


@pytest.mark.parametrize("mode", ["confirm"])
def test_confirm_mode_reads_amount_kind_payee_and_account_in_japanese(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    root = twiml(phone.call(PHONE, LINE_1))
    assert verbs(root) == ["Gather", "Gather", "Say", "Hangup"]
    gather = gather_of(root)
    assert gather.attrib["numDigits"] == "1"
    assert gather.attrib["action"] == f"{PUBLIC_URL}/webhooks/twilio/confirm?n=1"
    say = gather.find("Say")
    assert say is not None
    assert say.attrib == {"language": "ja-JP", "voice": "Polly.Mizuki"}
    text = say.text or ""
    assert "お振込み" in text
    assert "15万円" in text
    assert "お受取人は、ヤマダ タロウ様" in text  # half-width katakana widened for the voice
    assert "5、6、7" in text  # last digits of the account, one by one
    assert "1を" in text and "9を" in text
    # No input: the question is asked once more, then the call ends with the challenge pending.
    second = root.findall("Gather")[1].find("Say")
    assert second is not None and "もう一度" in (second.text or "") and "15万円" in (second.text or "")
    assert "完了していません" in (root.findall("Say")[-1].text or "")
    assert status_of(api, challenge)["status"] == "pending"


@pytest.mark.parametrize("mode", ["confirm"])
@pytest.mark.parametrize(
    ("amount", "said"),
    [
        (1, "1円"),
        (150000, "15万円"),
        (1234567, "123万4567円"),
        (10000, "1万円"),
        (100000000, "1億円"),
        (99999999999, "999億9999万9999円"),
        (120005, "12万5円"),
    ],
)
def test_confirm_mode_says_the_amount_as_an_amount(api, phone, mode, amount, said):
    register(api)
    new_challenge(api, amount=amount)
    text = spoken(twiml(phone.call(PHONE, LINE_1)))
    assert f"、{said}の確認です" in text


@pytest.mark.parametrize("mode", ["confirm"])
def test_confirm_mode_names_a_payeasy_payment(api, phone, mode):
    register(api)
    new_challenge(
        api,
        kind="payeasy",
        amount=32000,
        payee={
            "biller_number": "12345",
            "customer_number": "987654321012",
            "confirmation_number": "555555",
            "name": "ｺｸｾﾞｲﾁｮｳ",
        },
    )
    text = spoken(twiml(phone.call(PHONE, LINE_1)))
    assert "ペイジー" in text and "3万2000円" in text and "お支払い先は、コクゼイチョウ。" in text
    assert "1、0、1、2" in text


@pytest.mark.parametrize("mode", ["confirm"])
def test_confirm_mode_nine_denies_and_reports_fraud(api, phone, mode, store, app):
    register(api)
    challenge = new_challenge(api)
    gather = gather_of(twiml(phone.call(PHONE, LINE_1)))
    root = twiml(phone.press(gather, "9"))
    assert verbs(root) == ["Say", "Hangup"]
    assert "中止しました" in spoken(root)
    body = status_of(api, challenge)
    assert body["status"] == "denied"
    # The denial is followed by the fraud report and its lock (test_fraud_report.py).
    denied = next(e for e in events(api) if e["type"] == "challenge.denied")
    assert denied["from"] == PHONE and denied["call_sid"] == phone.sids[0]
    assert denied["method"] == "callback" and denied["reason"] == "fraud_report"
    keys = Keys(app.extensions["authgw"].settings.key_prefix).for_customer("cust-001")
    assert store.hget(keys.customer, "fraud_reports") == "1"
    # A denied challenge cannot be verified any more, by phone or otherwise.
    assert verbs(twiml(phone.call(PHONE, LINE_1))) == ["Reject"]
    rv = api.post(
        f"/v1/challenges/{challenge['id']}/consume", {"transaction_digest": challenge["transaction_digest"]}
    )
    assert_problem(rv, 409, "challenge_not_verified")


@pytest.mark.parametrize("mode", ["confirm"])
def test_confirm_mode_other_keys_ask_again_and_change_nothing(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    gather = gather_of(twiml(phone.call(PHONE, LINE_1)))
    root = twiml(phone.press(gather, "5"))
    again = gather_of(root)
    assert again.attrib["action"].endswith("/confirm?n=2")
    assert status_of(api, challenge)["status"] == "pending"
    twiml(phone.press(again, "1"))
    assert status_of(api, challenge)["status"] == "verified"


@pytest.mark.parametrize("mode", ["confirm"])
def test_confirm_mode_same_keys_delivered_twice_are_judged_once(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    gather = gather_of(twiml(phone.call(PHONE, LINE_1)))
    first = phone.press(gather, "1").get_data()
    assert phone.press(gather, "1").get_data() == first
    assert types(api).count("challenge.verified") == 1
    assert status_of(api, challenge)["status"] == "verified"


@pytest.mark.parametrize("mode", ["confirm"])
def test_keys_on_a_call_that_opened_no_dialogue_change_nothing(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    rv = phone.post(f"{PUBLIC_URL}/webhooks/twilio/confirm?n=1", {"CallSid": new_sid(), "Digits": "1"})
    assert "確認できませんでした" in spoken(twiml(rv))
    assert status_of(api, challenge)["status"] == "pending"


@pytest.mark.parametrize("mode", ["confirm"])
def test_confirm_mode_answer_after_expiry_is_refused(api, phone, mode, clock):
    register(api)
    challenge = new_challenge(api, ttl_seconds=60)
    gather = gather_of(twiml(phone.call(PHONE, LINE_1)))
    clock.advance(61)
    assert "有効期限" in spoken(twiml(phone.press(gather, "1")))
    assert status_of(api, challenge)["status"] == "expired"


def test_amount_policy_asks_for_confirmation_from_a_threshold(app, store, clock, settings):
    settings = {**settings, "callback_confirm_above": 100000}
    app = create_app({**settings, "redis_client": store, "clock": clock})
    api, phone = Api(app.test_client()), Phone(app.test_client())
    register(api)
    small = new_challenge(api, amount=99999)
    assert verbs(twiml(phone.call(PHONE, LINE_1))) == ["Reject"]
    assert status_of(api, small)["status"] == "verified"
    large = new_challenge(api, amount=100000)
    root = twiml(phone.call(PHONE, large["callback"]["number"]))
    assert "10万円" in spoken(root)
    assert status_of(api, large)["status"] == "pending"
    twiml(phone.press(gather_of(root), "1"))
    assert status_of(api, large)["status"] == "verified"


# -- code mode -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["code"])
def test_code_mode_asks_for_the_code_on_the_screen(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    code = challenge["callback"]["code"]
    assert len(code) == 6 and code.isdigit()
    root = twiml(phone.call(PHONE, LINE_1))
    gather = gather_of(root)
    assert gather.attrib["numDigits"] == "6"
    assert "15万円" in spoken(root) and "6桁の番号" in spoken(root)
    assert code not in spoken(root)  # the code travels one way only: screen to phone


@pytest.mark.parametrize("mode", ["code"])
def test_code_mode_wrong_code_costs_an_attempt_then_right_code_verifies(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    code = challenge["callback"]["code"]
    wrong = "000000" if code != "000000" else "111111"
    gather = gather_of(twiml(phone.call(PHONE, LINE_1)))
    root = twiml(phone.press(gather, wrong))
    assert "正しくありません" in spoken(root)
    body = status_of(api, challenge)
    assert body["status"] == "pending" and body["attempts_left"] == 2
    assert api.get("/v1/customers/cust-001").get_json()["failed_attempts"] == 1
    failed = events(api)[0]
    assert failed["type"] == "challenge.failed_attempt" and failed["method"] == "callback"
    twiml(phone.press(gather_of(root), code))
    body = status_of(api, challenge)
    assert body["status"] == "verified" and body["verified_by"] == "callback"
    assert api.get("/v1/customers/cust-001").get_json()["failed_attempts"] == 0


@pytest.mark.parametrize("mode", ["code"])
def test_code_mode_wrong_codes_use_up_the_attempts(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    wrong = "000000" if challenge["callback"]["code"] != "000000" else "111111"
    root = twiml(phone.call(PHONE, LINE_1))
    for _ in range(3):
        root = twiml(phone.press(gather_of(root), wrong))
    assert verbs(root) == ["Say", "Hangup"]
    assert status_of(api, challenge)["status"] == "failed"
    assert types(api)[-1] == "challenge.failed"


@pytest.mark.parametrize("mode", ["code"])
def test_code_mode_counts_failures_with_totp_towards_the_same_lockout(api, phone, mode, clock):
    register(api)
    secret = enrol_totp(api, clock)
    wrong_totp = "000000" if totp_code(secret, clock()) != "000000" else "111111"
    for _ in range(2):  # two challenges, two wrong TOTP codes each: 4 failures
        ch = new_challenge(api, amount=500)
        for _ in range(2):
            assert api.post(f"/v1/challenges/{ch['id']}/totp", {"code": wrong_totp}).status_code == 422
        api.post(f"/v1/challenges/{ch['id']}/cancel")
    challenge = new_challenge(api)
    wrong = "000000" if challenge["callback"]["code"] != "000000" else "111111"
    root = twiml(phone.call(PHONE, challenge["callback"]["number"]))
    root = twiml(phone.press(gather_of(root), wrong))  # 5th failure
    root = twiml(phone.press(gather_of(root), wrong))  # 6th: the lockout threshold
    assert "停止" in spoken(root)
    customer = api.get("/v1/customers/cust-001").get_json()
    assert customer["locked"] is True and customer["failed_attempts"] == 6
    assert "customer.locked" in types(api)


@pytest.mark.parametrize("mode", ["code"])
def test_code_mode_nine_alone_denies(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    twiml(phone.press(gather_of(twiml(phone.call(PHONE, LINE_1))), "9#"))
    assert status_of(api, challenge)["status"] == "denied"
    assert api.get("/v1/customers/cust-001").get_json()["failed_attempts"] == 0


@pytest.mark.parametrize("mode", ["code"])
def test_code_mode_same_wrong_entry_delivered_twice_costs_one_attempt(api, phone, mode):
    register(api)
    challenge = new_challenge(api)
    wrong = "000000" if challenge["callback"]["code"] != "000000" else "111111"
    gather = gather_of(twiml(phone.call(PHONE, LINE_1)))
    twiml(phone.press(gather, wrong))
    twiml(phone.press(gather, wrong))
    assert status_of(api, challenge)["attempts_left"] == 2


# -- caller-ID attestation -------------------------------------------------------------------


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


# -- status callbacks, bad input, store down --------------------------------------------------


def test_status_callback_is_recorded_with_204(api, phone, store, app):
    register(api)
    new_challenge(api)
    twiml(phone.call(PHONE, LINE_1))
    sid = phone.sids[0]
    rv = phone.status(sid, "completed", CallDuration="0", From=PHONE, To=LINE_1)
    assert rv.status_code == 204 and rv.get_data() == b""
    record = store.hgetall(Keys(app.extensions["authgw"].settings.key_prefix).call_status(sid))
    assert record["status"] == "completed"
    assert record["from"] == PHONE
    (status,) = call_events(store, app)
    assert status["type"] == "call.status" and status["status"] == "completed"
    assert status["call_sid"] == sid


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/webhooks/twilio/voice", {"From": PHONE, "To": LINE_1}, "CallSid"),
        ("/webhooks/twilio/voice", {"CallSid": "CA123", "From": PHONE, "To": LINE_1}, "CallSid"),
        ("/webhooks/twilio/voice", {"CallSid": "CA" + "0" * 32, "From": "9" * 300, "To": LINE_1}, "From"),
        ("/webhooks/twilio/status", {"CallSid": "CA" + "0" * 32, "CallStatus": "exploded"}, "CallStatus"),
        ("/webhooks/twilio/confirm?n=1", {"CallSid": "CA" + "0" * 32, "Digits": "12a"}, "Digits"),
        ("/webhooks/twilio/confirm?n=zero", {"CallSid": "CA" + "0" * 32, "Digits": "1"}, "n"),
        ("/webhooks/twilio/confirm", {"CallSid": "CA" + "0" * 32, "Digits": "1"}, "n"),
    ],
)
def test_signed_but_malformed_webhooks_are_validation_errors(phone, store, path, params, field):
    before = every_key(store)
    rv = phone.post(f"{PUBLIC_URL}{path}", params)
    body = assert_problem(rv, 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == [field]
    assert every_key(store) == before


def unreachable_app(settings: dict[str, Any], clock: Any) -> Any:
    """An app whose store refuses connections (a closed loopback port)."""
    (port,) = free_ports(1)
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2, decode_responses=True)
    return create_app({**settings, "redis_client": client, "clock": clock})


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/webhooks/twilio/voice", {"CallSid": "CA" + "1" * 32, "From": PHONE, "To": LINE_1}),
        ("/webhooks/twilio/voice", {"CallSid": "CA" + "1" * 32, "From": "anonymous", "To": LINE_1}),
        ("/webhooks/twilio/confirm?n=1", {"CallSid": "CA" + "1" * 32, "Digits": "1"}),
        ("/webhooks/twilio/status", {"CallSid": "CA" + "1" * 32, "CallStatus": "completed"}),
    ],
)
def test_store_down_fails_closed_with_503(settings, clock, path, params):
    phone = Phone(unreachable_app(settings, clock).test_client())
    rv = phone.post(f"{PUBLIC_URL}{path}", params)
    assert_problem(rv, 503, "store_unavailable")


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


# -- races (real threads, real redis-server) --------------------------------------------------


def together(*actions: Callable[[], Any]) -> list[Any]:
    """Run the actions at the same moment on real threads; their results, in order."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def run(i: int, action: Callable[[], Any]) -> None:
        barrier.wait()
        results[i] = action()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


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
        call, totp = together(
            partial(Phone(app.test_client()).call, PHONE, challenge["callback"]["number"]),
            partial(totp_after_reads, Api(app.test_client()), challenge["id"], code, round_ % 6),
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
        answers = together(*(partial(Phone(app.test_client()).call, PHONE, line, sid) for _ in range(4)))
        assert [verbs(twiml(rv)) for rv in answers] == [["Reject"]] * 4
        assert status_of(api, challenge)["status"] == "verified"
        received = [e for e in events(api) if e["type"] == "call.received" and e["call_sid"] == sid]
        assert len(received) == 1
        api.post(
            f"/v1/challenges/{challenge['id']}/consume",
            {"transaction_digest": challenge["transaction_digest"]},
        )
        clock.advance(60)


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.real_redis
@pytest.mark.parametrize(("mode", "expected"), [("reject", 3), ("confirm", 4), ("code", 4)])
@pytest.mark.parametrize("caller_limit", [0, 5])
def test_a_webhook_costs_a_few_round_trips(redis_server, real_store, clock, mode, expected, caller_limit):
    # A matched call: the phone index (with the caller's counter when that limit is on); the
    # call record, with the first candidate's holder of the dialled number; the judgement; and
    # in confirm and code modes, binding the call to its challenge for the keys webhook.
    pool = redis.ConnectionPool.from_url(
        redis_server.url, decode_responses=True, connection_class=CountingConnection
    )
    client = redis.Redis(connection_pool=pool)
    app = create_app(
        {
            **settings_for_tests(callback_mode=mode, rate_limit_caller=caller_limit),
            "redis_client": client,
            "clock": clock,
        }
    )
    api, phone = Api(app.test_client()), Phone(app.test_client())
    register(api)
    # Each script is loaded (SCRIPT LOAD) before its first use: one of each first.
    twiml(phone.call("anonymous", LINE_1))
    assert phone.status(phone.sids[-1]).status_code == 204
    approve(phone, mode, new_challenge(api))
    challenge = new_challenge(api)

    def cost(action: Callable[[], Any]) -> int:
        before = CountingConnection.sent
        action()
        return CountingConnection.sent - before

    assert cost(lambda: twiml(phone.call("anonymous", LINE_1))) == 2
    assert cost(lambda: twiml(phone.call("+819087654321", LINE_1))) == 3
    assert cost(lambda: phone.status(phone.sids[-1])) == 2
    root: list[ET.Element] = []
    line = challenge["callback"]["number"]  # 0001 stays bound to the first challenge
    assert cost(lambda: root.append(twiml(phone.call(PHONE, line)))) == expected
    if mode != "reject":
        keys = "1" if mode == "confirm" else challenge["callback"]["code"]
        assert cost(lambda: twiml(phone.press(gather_of(root[0]), keys))) == 2
    assert status_of(api, challenge)["status"] == "verified"
    client.close()


@pytest.mark.parametrize("mode", ["confirm"])
def test_confirm_mode_names_another_currency_by_its_code(api, phone, mode):
    register(api)
    new_challenge(api, amount=12345, currency="USD")
    assert "USD建て、最小単位で12,345の確認です" in spoken(twiml(phone.call(PHONE, LINE_1)))


def test_code_length_is_the_challenges_own_after_a_configuration_change(store, clock, settings):
    before = create_app(
        {
            **settings,
            "callback_mode": "code",
            "callback_code_digits": 4,
            "redis_client": store,
            "clock": clock,
        }
    )
    after = create_app(
        {
            **settings,
            "callback_mode": "code",
            "callback_code_digits": 6,
            "redis_client": store,
            "clock": clock,
        }
    )
    api, phone = Api(before.test_client()), Phone(after.test_client())
    register(api)
    challenge = new_challenge(api)
    code = challenge["callback"]["code"]
    assert len(code) == 4
    gather = gather_of(twiml(phone.call(PHONE, LINE_1)))
    assert gather.attrib["numDigits"] == "4"
    again = gather_of(twiml(phone.press(gather, "0000" if code != "0000" else "1111")))
    assert again.attrib["numDigits"] == "4" and "4桁" in spoken(twiml(phone.press(gather, "5555")))
    twiml(phone.press(again, code))
    assert status_of(api, challenge)["status"] == "verified"


@given(st.integers(min_value=1, max_value=99_999_999_999))
def test_every_amount_is_said_as_the_same_amount(amount):
    said = yen(amount)
    match = re.fullmatch(r"(?:(\d{1,3})億)?(?:(\d{1,4})万)?(\d{1,4})?円", said)
    assert match is not None, said
    oku, man, rest = (int(part or 0) for part in match.groups())
    assert oku * 10**8 + man * 10**4 + rest == amount
    assert all(part is None or not part.startswith("0") for part in match.groups())
