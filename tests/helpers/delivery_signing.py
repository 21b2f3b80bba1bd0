"""Standard Webhooks signatures by a few lines of hmac, independent of ``standardwebhooks``:
what a receiver could write by hand, to check the gateway's deliveries and the client's check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time


def new_secret() -> str:
    """A ``whsec_`` secret as the gateway makes them: base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed with the secret's bytes."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(
    secrets_: list[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three headers of a delivery signed under each of ``secrets_`` (space-separated)."""
    at = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(at),
        "webhook-signature": " ".join(sign(s, msg_id, at, body) for s in secrets_),
    }


def signed_by(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Whether one of the header's ``v1`` signatures is the secret's over this body."""
    expected = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    return any(hmac.compare_digest(expected, given) for given in headers["webhook-signature"].split(" "))
