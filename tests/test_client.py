"""``authgw.client`` against a live gateway on loopback (the app over fakeredis)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from werkzeug.serving import make_server

from authgw.app import create_app
from authgw.client import Client, Problem, transaction_digest
from tests.helpers.api import transfer
from tests.helpers.settings import API_KEY, settings_for_tests


@pytest.fixture
def gateway() -> Iterator[str]:
    app = create_app({**settings_for_tests(), "redis_client": fakeredis.FakeRedis(decode_responses=True)})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


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
