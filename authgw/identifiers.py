"""The identifier rules: what a customer id and a challenge id look like, and the hash tag each
carries.

A customer's state lives under one hash tag, the first 16 hex digits of SHA-256 of the
customer id; a challenge id carries its customer's tag (``ch_<tag><130 random bits>``), so
a challenge names its slot. The models, the views, the rate limiter and the key builder
(``authgw.keys``) all take these rules from here.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import TypeGuard

CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
CUSTOMER_ID_RE = re.compile(CUSTOMER_ID_PATTERN)
CHALLENGE_ID = re.compile(r"^ch_([0-9a-f]{16})([a-z2-7]{26})$")


def is_customer_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and CUSTOMER_ID_RE.fullmatch(value) is not None


def customer_tag(customer_id: str) -> str:
    return hashlib.sha256(customer_id.encode("utf-8")).hexdigest()[:16]


def new_challenge_id(customer_id: str) -> str:
    """``ch_`` + the customer's tag + 130 random bits in base32."""
    random_part = base64.b32encode(secrets.token_bytes(17)).decode("ascii").lower().rstrip("=")
    return f"ch_{customer_tag(customer_id)}{random_part[:26]}"


def tag_of_challenge(challenge_id: str) -> str | None:
    match = CHALLENGE_ID.match(challenge_id)
    return match.group(1) if match else None
