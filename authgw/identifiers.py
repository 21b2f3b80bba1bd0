"""The identifier rules: what a customer id, a challenge id and an event id look like, and the
slot each names.

A customer's keys are named by its *key id*, the first 128 bits of SHA-256 of the customer id
(32 hex digits), and live in one of ``BUCKETS`` buckets taken from that key id. A bucket is a
hash tag shared by its customers and its outbox stream, so the script of a transition writes
the customer's state and the outbox entry the deliverers read in one atomic step, on one slot
of a Cluster. A challenge id carries its customer's key id (``ch_<key id><130 random bits>``),
so a challenge names its keys and its slot. An event id is the customer's key id, digested
again, with the entry id of the event in the customer's trail (``ev_<20 hex>_<ms>-<seq>``):
unique across customers, the same in the events API, a delivery's ``webhook-id`` and the
console. The models, the views, the rate limiter and the key builder (``authgw.keys``) all take
these rules from here.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import TypeGuard

CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
CUSTOMER_ID_RE = re.compile(CUSTOMER_ID_PATTERN)
CHALLENGE_ID = re.compile(r"^ch_([0-9a-f]{32})([a-z2-7]{26})$")
# A trail entry id is a stream id, ``<ms>-<seq>``, each part an unsigned 64-bit number.
EVENT_ID = re.compile(r"^ev_([0-9a-f]{20})_([0-9]{1,20}-[0-9]{1,20})$")

# 1,024 buckets: more than enough slots to spread over any real Cluster (16,384 slots), few
# enough that a deliverer can watch every outbox.
BUCKETS = 1024


def is_customer_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and CUSTOMER_ID_RE.fullmatch(value) is not None


def customer_tag(customer_id: str) -> str:
    """The customer's key id: 128 bits of SHA-256 of the id, which names the customer's keys."""
    return hashlib.sha256(customer_id.encode("utf-8")).hexdigest()[:32]


def bucket_of_tag(tag: str) -> int:
    """The bucket of a key id (``customer_tag``)."""
    return int(tag[:8], 16) % BUCKETS


def new_challenge_id(customer_id: str) -> str:
    """``ch_`` + the customer's key id + 130 random bits in base32."""
    random_part = base64.b32encode(secrets.token_bytes(17)).decode("ascii").lower().rstrip("=")
    return f"ch_{customer_tag(customer_id)}{random_part[:26]}"


def tag_of_challenge(challenge_id: str) -> str | None:
    match = CHALLENGE_ID.match(challenge_id)
    return match.group(1) if match else None


def _event_stem(customer_id: str) -> str:
    return hashlib.sha256(customer_tag(customer_id).encode("ascii")).hexdigest()[:20]


def event_id(customer_id: str, trail_id: str) -> str:
    """The id of the customer's event whose trail entry id is ``trail_id`` (``<ms>-<seq>``)."""
    return f"ev_{_event_stem(customer_id)}_{trail_id}"


def trail_id_of(customer_id: str, value: str) -> str | None:
    """The trail entry id in an event id of this customer; None for anything else."""
    match = EVENT_ID.fullmatch(value)
    if match is None or match.group(1) != _event_stem(customer_id):
        return None
    ms, seq = match.group(2).split("-")
    if int(ms) >= 2**64 or int(seq) >= 2**64:
        return None
    return match.group(2)
