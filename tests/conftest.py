"""Fixtures: one suite, two stores.

``store`` is parametrised over fakeredis and a real ``redis-server`` that the suite starts on a
free loopback port (marker ``real_redis``). Where no binary exists the real runs skip with a
reason, unless ``AUTHGW_REQUIRE_REAL_REDIS=1`` (set by ``.ci/run``), which makes that a failure.
The clock is injected: tests move time with ``clock.advance``, never by sleeping.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest
import redis

from authgw.app import create_app
from authgw.embedded import EmbeddedStore, start_redis_server

API_KEY = "corebank-test-key-0001"
OTHER_KEY = "ops-test-key-000000001"
SECRET_KEY = "test-secret-key-with-at-least-32-characters"
TWILIO_TOKEN = "test-twilio-auth-token"
PUBLIC_URL = "https://gw.example.jp"
CALLBACK_NUMBERS = ("+815030000001", "+815030000002", "+815030000003")


class Clock:
    """A clock the test moves by hand; starts at the real time so TTLs stay sensible."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: runs against a 3-primary Redis Cluster the suite starts itself"
    )
    config.addinivalue_line(
        "markers", "topology: starts its own Redis topology or gateway processes (slower)"
    )


def redis_binary(needed_by: str, *, with_cli: bool = False) -> str:
    """The ``redis-server`` binary; without it (or ``redis-cli`` when ``with_cli``) the test
    skips with the reason, or fails when ``AUTHGW_REQUIRE_REAL_REDIS=1`` (CI)."""
    binary = shutil.which("redis-server")
    missing = "redis-server" if binary is None else None
    if with_cli and shutil.which("redis-cli") is None:
        missing = "redis-cli"
    if binary is None or missing:
        if os.environ.get("AUTHGW_REQUIRE_REAL_REDIS") == "1":
            pytest.fail(f"AUTHGW_REQUIRE_REAL_REDIS=1 but no {missing} is on the PATH")
        pytest.skip(f"no {missing} on the PATH: {needed_by} need it")
    return binary


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedStore]:
    """A private redis-server for the whole session (never the machine's shared one)."""
    server = start_redis_server(redis_binary("real-Redis tests"))
    yield server
    server.stop()


def real_client(url: str, **kwargs: Any) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, **kwargs)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A private 3-primary Redis Cluster for the whole session (``tests/topology.py``)."""
    from tests.topology import start_cluster

    cluster = start_cluster(redis_binary("Cluster tests", with_cli=True))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster_client(redis_cluster: Any) -> Iterator[Any]:
    """One cluster client for the session: making one per test costs more than the test."""
    client = cluster_client(redis_cluster.url)
    yield client
    client.close()


def cluster_client(url: str) -> Any:
    """A client made the way the gateway makes it (``authgw.store.connect``)."""
    from authgw.store import connect

    return connect(url, timeout=2.0, pool_size=16)


@pytest.fixture(
    params=[
        "fake",
        pytest.param("real", marks=pytest.mark.real_redis),
        pytest.param("cluster", marks=[pytest.mark.real_redis, pytest.mark.cluster]),
    ]
)
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A Redis client, empty: fakeredis, the suite's own redis-server, or its own Cluster."""
    if request.param == "fake":
        client = fakeredis.FakeRedis(decode_responses=True)
        yield client
        client.flushall()
        return
    if request.param == "cluster":
        client = request.getfixturevalue("redis_cluster_client")
        client.flushall()
        yield client
        return
    server: EmbeddedStore = request.getfixturevalue("redis_server")
    client = real_client(server.url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def real_store(redis_server: EmbeddedStore) -> Iterator[redis.Redis]:
    """The suite's redis-server only: for races and anything fakeredis cannot show."""
    client = real_client(redis_server.url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def settings_for_tests(**overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "api_keys": f"corebank={API_KEY},ops={OTHER_KEY}",
        "secret_key": SECRET_KEY,
        "twilio_auth_token": TWILIO_TOKEN,
        "public_url": PUBLIC_URL,
        "callback_numbers": ",".join(CALLBACK_NUMBERS),
    }
    settings.update(overrides)
    return settings


@pytest.fixture
def settings() -> dict[str, Any]:
    """Settings overrides for ``app``; a test may change them before using ``app``."""
    return settings_for_tests()


@pytest.fixture
def app(store: Any, clock: Clock, settings: dict[str, Any]) -> Any:
    return create_app({**settings, "redis_client": store, "clock": clock})


@dataclass
class Api:
    """A test client that speaks as one API client."""

    client: Any
    key: str = API_KEY

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"}
        headers.update(extra or {})
        return headers

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self.headers(kw.pop("headers", None)), **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.client.delete(path, headers=self.headers(kw.pop("headers", None)), **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.post(path, json=json, headers=self.headers(kw.pop("headers", None)), **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.put(path, json=json, headers=self.headers(kw.pop("headers", None)), **kw)


@pytest.fixture
def api(app: Any) -> Api:
    return Api(app.test_client())


@pytest.fixture
def other_api(app: Any) -> Api:
    return Api(app.test_client(), OTHER_KEY)


TRANSFER_PAYEE = {
    "bank_code": "0168",
    "branch_code": "001",
    "account_type": "ordinary",
    "account_number": "1234567",
    "name": "ﾔﾏﾀﾞ ﾀﾛｳ",
}


def transfer(customer_id: str = "cust-001", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_id": customer_id,
        "kind": "transfer",
        "amount": 150000,
        "currency": "JPY",
        "payee": dict(TRANSFER_PAYEE),
    }
    body.update(overrides)
    return body


# -- shared helpers for the contract tests -------------------------------------------------

PROBLEM_MEMBERS = {"type", "title", "status", "code", "detail"}


def assert_problem(rv: Any, status: int, code: str) -> dict[str, Any]:
    """``rv`` is an RFC 9457 problem with this status and contract code; returns its body."""
    assert rv.status_code == status, rv.get_data(as_text=True)
    assert rv.mimetype == "application/problem+json"
    body = rv.get_json()
    assert body.keys() >= PROBLEM_MEMBERS
    assert body["status"] == status
    assert body["code"] == code
    if "errors" in body:
        assert body["errors"], "errors, when present, lists at least one field problem"
        for error in body["errors"]:
            assert set(error) == {"field", "message"}
    return body


def field_errors(rv: Any) -> list[str]:
    """The fields a problem names."""
    return [e["field"] for e in rv.get_json().get("errors", [])]


def register(api: Api, customer_id: str = "cust-001", phones: tuple[str, ...] = ("090-1234-5678",)) -> Any:
    rv = api.put(f"/v1/customers/{customer_id}", {"phones": list(phones)})
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return rv.get_json()


def totp_code(secret: str, at: float, *, digits: int = 6, algorithm: str = "SHA1") -> str:
    """pyotp's code for ``secret`` at UNIX time ``at`` (30-second steps)."""
    import hashlib

    import pyotp

    digest = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}[algorithm]
    return pyotp.TOTP(secret, digits=digits, digest=digest).at(int(at))


def enrol_totp(api: Api, clock: Clock, customer_id: str = "cust-001") -> str:
    """Enrol and confirm TOTP for a registered customer; returns the secret.

    The confirmation spends the current step (no replay), so the clock is moved one step on:
    the next code the test computes at ``clock()`` is fresh.
    """
    rv = api.post(f"/v1/customers/{customer_id}/totp")
    assert rv.status_code == 201, rv.get_data(as_text=True)
    secret = rv.get_json()["secret"]
    rv = api.post(f"/v1/customers/{customer_id}/totp/confirm", {"code": totp_code(secret, clock())})
    assert rv.status_code == 200, rv.get_data(as_text=True)
    clock.advance(30)
    return secret


def new_challenge(api: Api, customer_id: str = "cust-001", **overrides: Any) -> dict[str, Any]:
    rv = api.post("/v1/challenges", transfer(customer_id, **overrides))
    assert rv.status_code == 201, rv.get_data(as_text=True)
    return rv.get_json()  # type: ignore[no-any-return]


def every_key(client: Any) -> set[str]:
    """Every key in the store, on every primary of a Cluster too (KEYS alone asks one node).

    The tests' stores are private to the suite. Every "the store is unchanged" check goes
    through here, so it can fail on a Cluster as it does on one server."""
    if hasattr(client, "get_primaries"):
        return set(client.keys("*", target_nodes=client.PRIMARIES))
    return set(client.keys("*"))


@pytest.fixture
def real_app(real_store: redis.Redis, clock: Clock, settings: dict[str, Any]) -> Any:
    """The app over the suite's redis-server only: for real concurrency."""
    return create_app({**settings, "redis_client": real_store, "clock": clock})


def wrong_code(secret: str, at: float, *, digits: int = 6) -> str:
    """A well-formed code that matches none of the steps accepted at ``at``."""
    accepted = {totp_code(secret, at + d * 30, digits=digits) for d in (-1, 0, 1)}
    candidate = 0
    while f"{candidate:0{digits}d}" in accepted:
        candidate += 1
    return f"{candidate:0{digits}d}"


def http(method: str, url: str, body: Any = None, key: str | None = API_KEY) -> tuple[int, Any]:
    """One request to a served gateway over real HTTP: (status, parsed JSON body or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    return status, (json.loads(raw) if raw else None)
