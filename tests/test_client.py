"""``authgw.client`` against a live gateway on loopback (the app over fakeredis): every method
of the client, each against the call it names."""

from __future__ import annotations

import gc
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fakeredis
import pyotp
import pytest

from authgw.app import create_app
from authgw.client import Client, Problem, transaction_digest
from tests.helpers.api import transfer
from tests.helpers.serving import in_process
from tests.helpers.settings import API_KEY, OTHER_KEY, settings_for_tests
from tests.helpers.stalling import stalled_error_answer


@contextmanager
def served(**settings: Any) -> Iterator[str]:
    app = create_app(
        {**settings_for_tests(**settings), "redis_client": fakeredis.FakeRedis(decode_responses=True)}
    )
    with in_process(app) as base:
        yield base


@pytest.fixture
def gateway() -> Iterator[str]:
    with served() as base:
        yield base


@pytest.fixture
def with_roles() -> Iterator[str]:
    """A gateway with roles on: ``ops`` (OTHER_KEY) is the operator, API_KEY is corebank."""
    with served(operators="ops") as base:
        yield base


def register(base: str, customer_id: str = "cust-001") -> None:
    Client(base, API_KEY)._call("PUT", f"/v1/customers/{customer_id}", {"phones": ["090-1234-5678"]})


@pytest.mark.parametrize(
    "payee",
    [
        {
            "bank_code": "0168",
            "branch_code": "001",
            "account_type": "ordinary",
            "account_number": "1234567",
            "name": "ﾔﾏﾀﾞ ﾀﾛｳ",
        },
        {
            "name": "山田 太郎",
            "bank_code": "0001",
            "branch_code": "100",
            "account_type": "current",
            "account_number": "7654321",
        },
    ],
)
def test_the_digest_is_the_one_the_gateway_computes(gateway, payee):
    register(gateway)
    body = transfer(payee=payee, methods=["callback"])
    challenge = Client(gateway, API_KEY).create_challenge(body)
    assert transaction_digest(body) == challenge["transaction_digest"]


def test_the_digest_follows_the_contract_byte_for_byte():
    # Sorted keys at every level, no spaces, raw UTF-8 (not \\u escapes), currency defaulting.
    canonical = (
        '{"amount":150000,"currency":"JPY","customer_id":"c","kind":"transfer",'
        '"payee":{"a":"ﾔﾏﾀﾞ","b":{"x":1,"y":2}}}'
    ).encode()
    import hashlib

    expected = hashlib.sha256(canonical).hexdigest()
    tx = {
        "kind": "transfer",
        "payee": {"b": {"y": 2, "x": 1}, "a": "ﾔﾏﾀﾞ"},
        "customer_id": "c",
        "amount": 150000,
    }
    assert transaction_digest(tx) == expected


def test_create_wait_cancel_and_refusals(gateway):
    register(gateway)
    gw = Client(gateway, API_KEY)
    body = transfer(methods=["callback"])
    challenge = gw.create_challenge(body, idempotency_key="order-1")
    assert gw.create_challenge(body, idempotency_key="order-1")["id"] == challenge["id"]
    assert gw.get_challenge(challenge["id"])["status"] == "pending"
    assert gw.cancel(challenge["id"])["status"] == "cancelled"
    assert gw.wait(challenge["id"], 5)["status"] == "cancelled"  # not pending: answered at once
    with pytest.raises(Problem) as refused:
        gw.consume(challenge["id"], transaction_digest(body))
    assert (refused.value.status, refused.value.code) == (409, "challenge_not_verified")
    with pytest.raises(Problem) as missing:
        gw.get_challenge("ch_nope")
    assert (missing.value.status, missing.value.code) == (404, "challenge_not_found")
    with pytest.raises(ValueError):
        gw.wait(challenge["id"], 31)


def test_a_wrong_key_is_a_problem(gateway):
    with pytest.raises(Problem) as refused:
        Client(gateway, "wrong").get_challenge("ch_x")
    assert refused.value.status == 401


class Flaky:
    """Answers 503 the first ``failures`` times, then lets the call through."""

    def __init__(self, client: Client, failures: int) -> None:
        self.failures = failures
        self.real = client._call
        self.calls: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs.get("headers"))
        if len(self.calls) <= self.failures:
            raise Problem(503, {"code": "store_unavailable"})
        return self.real(*args, **kwargs)


def test_a_creation_with_an_idempotency_key_is_retried_after_503_with_the_same_key(gateway, monkeypatch):
    register(gateway)
    pauses: list[float] = []
    gw = Client(gateway, API_KEY, sleep=pauses.append)
    flaky = Flaky(gw, 2)
    monkeypatch.setattr(gw, "_call", flaky)
    assert gw.create_challenge(transfer(methods=["callback"]), idempotency_key="k1")["status"] == "pending"
    assert flaky.calls == [{"Idempotency-Key": "k1"}] * 3
    assert pauses == [1, 2]


def test_a_creation_without_a_key_is_not_retried(gateway, monkeypatch):
    gw = Client(gateway, API_KEY, sleep=lambda s: None)
    flaky = Flaky(gw, 1)
    monkeypatch.setattr(gw, "_call", flaky)
    with pytest.raises(Problem):
        gw.create_challenge(transfer())
    assert len(flaky.calls) == 1


PAYEASY = {
    "customer_id": "cust-001",
    "kind": "payeasy",
    "amount": 32100,
    "payee": {
        "biller_number": "12345",
        "customer_number": "0011223344",
        "confirmation_number": "9876",
        "name": "東京都税 ﾄｳｷｮｳﾄ",
    },
}


def test_the_digest_of_a_payeasy_payment_with_a_japanese_name_is_the_gateways(gateway):
    register(gateway)
    gw = Client(gateway, API_KEY)
    challenge = gw.create_challenge({**PAYEASY, "methods": ["callback"]})
    assert transaction_digest(PAYEASY) == challenge["transaction_digest"]
    assert transaction_digest({**PAYEASY, "currency": "JPY"}) == challenge["transaction_digest"]


def test_customer_calls(with_roles):
    gw, ops = Client(with_roles, API_KEY), Client(with_roles, OTHER_KEY)
    customer = gw.put_customer("cust-001", ["090-1234-5678", "+81 80 1111 2222"], region="JP")
    assert customer["phones"] == ["+819012345678", "+818011112222"]
    assert gw.get_customer("cust-001")["totp"] == "none"
    with pytest.raises(Problem) as missing:
        gw.get_customer("nobody")
    assert (missing.value.status, missing.value.code) == (404, "customer_not_found")
    with pytest.raises(Problem) as invalid:
        gw.put_customer("cust-002", ["not a phone"])
    assert (invalid.value.status, invalid.value.code) == (422, "invalid_phone")
    assert invalid.value.body["status"] == 422

    with pytest.raises(Problem) as forbidden:
        gw.delete_customer("cust-001")
    assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")
    assert ops.delete_customer("cust-001") is None
    with pytest.raises(Problem):
        gw.get_customer("cust-001")


def test_totp_enrolment_verification_and_consumption(with_roles):
    gw, ops = Client(with_roles, API_KEY), Client(with_roles, OTHER_KEY)
    gw.put_customer("cust-001", ["090-1234-5678"])
    enrolment = gw.enrol_totp("cust-001")
    assert set(enrolment) >= {"secret", "otpauth_uri", "qr_svg"}
    totp = pyotp.TOTP(enrolment["secret"])
    with pytest.raises(Problem) as wrong:
        gw.confirm_totp("cust-001", "000000" if totp.now() != "000000" else "111111")
    assert wrong.value.code == "invalid_code"
    assert gw.confirm_totp("cust-001", totp.now())["totp"] == "active"

    body = transfer(methods=["totp"])
    challenge = gw.create_challenge(body)
    with pytest.raises(Problem) as refused:
        gw.verify_totp(challenge["id"], "000000" if totp.at(time.time() + 30) != "000000" else "111111")
    assert refused.value.code == "invalid_code" and "attempts_left" in refused.value.body
    verified = gw.verify_totp(challenge["id"], totp.at(time.time() + 30))
    assert (verified["status"], verified["verified_by"]) == ("verified", "totp")
    assert gw.consume(challenge["id"], transaction_digest(body))["status"] == "consumed"
    with pytest.raises(Problem) as again:
        gw.consume(challenge["id"], transaction_digest(body))
    assert again.value.code == "already_consumed"

    with pytest.raises(Problem) as forbidden:
        gw.remove_totp("cust-001")
    assert forbidden.value.code == "forbidden"
    assert ops.remove_totp("cust-001") is None
    assert gw.get_customer("cust-001")["totp"] == "none"


def test_lock_unlock_and_limits(with_roles):
    gw, ops = Client(with_roles, API_KEY), Client(with_roles, OTHER_KEY)
    gw.put_customer("cust-001", ["090-1234-5678"])
    locked = ops.lock("cust-001", note="電話で本人から申告")
    assert locked["locked"] is True and locked["lock"]["reason"] == "operator"
    with pytest.raises(Problem) as refused:
        gw.create_challenge(transfer(methods=["callback"]))
    assert (refused.value.status, refused.value.code) == (423, "customer_locked")
    assert ops.unlock("cust-001")["locked"] is False
    assert ops.lock("cust-001")["lock"]["by"] == "ops"  # the note is optional
    ops.unlock("cust-001")

    limits = gw.put_limits("cust-001", {"transfer": {"per_transaction": 100000}})
    assert limits["transfer"]["per_transaction"] == 100000
    assert gw.get_limits("cust-001") == limits
    with pytest.raises(Problem) as over:
        gw.create_challenge(transfer(amount=150000, methods=["callback"]))
    assert over.value.code == "limit_exceeded" and over.value.body["limit_kind"] == "per_transaction"


def test_events_page_by_page(gateway):
    gw = Client(gateway, API_KEY)
    gw.put_customer("cust-001", ["090-1234-5678"])
    for _ in range(3):  # three designated numbers, each bound to its challenge until expiry
        gw.cancel(gw.create_challenge(transfer(methods=["callback"]))["id"])
    newest = gw.events("cust-001", limit=100)
    assert len(newest) >= 7 and all("id" in event for event in newest)
    assert gw.events("cust-001", limit=3) == newest[:3]
    assert gw.events("cust-001", limit=3, before=newest[2]["id"]) == newest[3:6]
    assert list(gw.all_events("cust-001", page=2)) == newest
    with pytest.raises(Problem) as bad:
        gw.events("cust-001", limit=101)
    assert bad.value.code == "validation_error"


def test_wait_answers_when_the_challenge_is_verified_meanwhile(gateway):
    gw = Client(gateway, API_KEY)
    gw.put_customer("cust-001", ["090-1234-5678"])
    totp = pyotp.TOTP(gw.enrol_totp("cust-001")["secret"])
    gw.confirm_totp("cust-001", totp.now())
    challenge = gw.create_challenge(transfer(methods=["totp"]))
    assert gw.wait(challenge["id"], 1)["status"] == "pending"  # nothing happened: still pending
    answered: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: answered.append(gw.wait(challenge["id"], 30)))
    waiter.start()
    gw.verify_totp(challenge["id"], totp.at(time.time() + 30))
    waiter.join(40)
    assert [a["status"] for a in answered] == ["verified"]


def attempt_keeping_the_error(client: Client) -> bool:
    """Call and keep the error as a poller keeps its last one: the error's traceback holds this
    frame, which holds the error, a cycle only the GC frees."""
    errors: list[Exception] = []
    try:
        client.get_challenge("ch_x")
    except TimeoutError as exc:
        errors.append(exc)
    return bool(errors)


def test_an_error_answer_whose_body_stalls_leaves_no_connection_open():
    """A 503 whose body never finishes: the client gives up at its timeout and closes the
    connection itself (left to the GC, the socket's ResourceWarning fires wherever it runs)."""
    with stalled_error_answer() as url:
        client = Client(url, API_KEY, timeout=0.5)
        gc.collect()  # what earlier tests left is not this test's
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            assert attempt_keeping_the_error(client)
            gc.collect()
    assert [w for w in seen if issubclass(w.category, ResourceWarning)] == []
