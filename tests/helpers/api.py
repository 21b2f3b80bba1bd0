"""Speaking to the app as an API client: ``Api``, request bodies, the common set-up calls, and
what a problem+json answer must look like."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.helpers.settings import API_KEY, Clock


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


def wrong_code(secret: str, at: float, *, digits: int = 6) -> str:
    """A well-formed code that matches none of the steps accepted at ``at``."""
    accepted = {totp_code(secret, at + d * 30, digits=digits) for d in (-1, 0, 1)}
    candidate = 0
    while f"{candidate:0{digits}d}" in accepted:
        candidate += 1
    return f"{candidate:0{digits}d}"


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
    return rv.get_json()
