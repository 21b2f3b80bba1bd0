"""Every Redis key name the gateway uses is built here, and nowhere else.

Customers are grouped into ``BUCKETS`` buckets (``authgw.identifiers``). A customer's keys are
``<prefix>:{b:<bucket>}:c:<key id>:...``: the hash tag is the bucket's, shared by its
customers and by the bucket's outbox stream, and the key id (128 bits of SHA-256 of the
customer id) names the customer within it. Challenges belong to their customer's keys, and the
key id is part of the challenge id, so every transition (a challenge, its customer, their
events, the outbox entry each event adds) touches keys of one slot and runs unchanged on Redis
Cluster. Index keys (a phone to its customers) have tags of their own; they are hints that a
transition script re-checks.
"""

from __future__ import annotations

from dataclasses import dataclass

# The identifier rules live in authgw.identifiers; imported from here too.
from authgw.identifiers import (
    BUCKETS,
    CHALLENGE_ID,
    bucket_of_tag,
    customer_tag,
    new_challenge_id,
    tag_of_challenge,
)

__all__ = [
    "BUCKETS",
    "CHALLENGE_ID",
    "CustomerKeys",
    "Keys",
    "customer_tag",
    "new_challenge_id",
    "tag_of_challenge",
]


@dataclass(frozen=True)
class CustomerKeys:
    """The keys of one customer's slot."""

    customer: str  # hash: phones, TOTP ciphertexts, last accepted step, failures, lock
    events: str  # stream: the customer's audit trail
    # (open: zset of challenge ids not yet ended, scored by expiry in ms)
    open: str
    lines: str  # hash: designated number -> the challenge it is bound to
    # stream: the bucket's outbox, which every event also goes to, for the deliverers; its
    # name is also the doorbell's channel (SPUBLISH on the same slot)
    outbox: str
    # zsets: the bucket's pending challenges by expiry, its locked customers by the lock's end
    # (the console's counts of now; take_bucket in _lib.lua)
    pending_index: str
    locked_index: str
    prefix: str

    @property
    def bucket_keys(self) -> list[str]:
        """The bucket's keys every events-writing script gets last, in ``take_bucket``'s order."""
        return [self.pending_index, self.locked_index, self.outbox]

    def challenge(self, challenge_id: str) -> str:
        return f"{self.prefix}:ch:{challenge_id}"

    def idempotency(self, client: str, key_digest: str) -> str:
        return f"{self.prefix}:idem:{client}:{key_digest}"

    def call(self, call_sid: str) -> str:
        return f"{self.prefix}:call:{call_sid}"

    def usage(self) -> str:
        """Hash: the day's usage book (``used_today`` in ``_lib.lua``): live challenges' amounts
        and the consumed total per kind."""
        return f"{self.prefix}:usage"

    def payees(self) -> str:
        """Zset: payee digests of the customer's consumed challenges, by when (new payees)."""
        return f"{self.prefix}:payees"


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def for_tag(self, tag: str) -> CustomerKeys:
        """The keys of the customer whose key id (``customer_tag``) is ``tag``."""
        bucket = bucket_of_tag(tag)
        base = f"{self.bucket_base(bucket)}:c:{tag}"
        return CustomerKeys(
            customer=f"{base}:customer",
            events=f"{base}:events",
            open=f"{base}:open",
            lines=f"{base}:lines",
            outbox=self.outbox(bucket),
            pending_index=self.pending_index(bucket),
            locked_index=self.locked_index(bucket),
            prefix=base,
        )

    def bucket_base(self, bucket: int) -> str:
        return f"{self.prefix}:{{b:{bucket:04d}}}"

    def outbox(self, bucket: int) -> str:
        """Stream: the bucket's events on their way to the bank's endpoints (``authgw.outbound``)."""
        return f"{self.bucket_base(bucket)}:outbox"

    def pending_index(self, bucket: int) -> str:
        """Zset: the bucket's pending challenge ids, scored by expiry (ms)."""
        return f"{self.bucket_base(bucket)}:pending"

    def locked_index(self, bucket: int) -> str:
        """Zset: the bucket's locked customer ids, scored by the lock's end (ms, or inf)."""
        return f"{self.bucket_base(bucket)}:locked"

    def outboxes(self) -> list[str]:
        return [self.outbox(bucket) for bucket in range(BUCKETS)]

    def for_customer(self, customer_id: str) -> CustomerKeys:
        return self.for_tag(customer_tag(customer_id))

    def idempotency_claim(self, client: str, key_digest: str) -> str:
        """The client-wide claim on an Idempotency-Key (its own slot)."""
        return f"{self.prefix}:{{i:{client}:{key_digest}}}:claim"

    def phone_index(self, e164: str) -> str:
        """Hint: the customers who registered this phone."""
        return f"{self.prefix}:{{p:{e164}}}:customers"

    def rate_limit(self, kind: str, identity_digest: str) -> str:
        """A rate-limit counter (``authgw.ratelimit``); its own slot."""
        return f"{self.prefix}:{{r:{kind}:{identity_digest}}}"

    def call_status(self, call_sid: str) -> str:
        """The call's record: when first seen, its numbers, outcome, Twilio's status callbacks."""
        return f"{self.prefix}:{{s:{call_sid}}}:status"

    def readiness_probe(self) -> str:
        """The key ``/readyz`` writes (with a short TTL) to learn whether the store takes writes."""
        return f"{self.prefix}:{{ready}}:probe"

    def call_events(self) -> str:
        """Stream: calls no customer can be told about (withheld, strangers) and call statuses."""
        return f"{self.prefix}:{{calls}}:events"

    def console_stats(self, bucket: str) -> str:
        """A hash of the console overview's counts for one minute or one day (one slot for all)."""
        return f"{self.prefix}:{{stats}}:{bucket}"

    # -- outbound webhooks ------------------------------------------------------------------
    # All webhook state shares one hash tag, ``{wh}``: endpoints are few, and one slot lets a
    # script change an endpoint and all its deliveries in one atomic step (on Cluster too).

    def webhook_endpoints(self) -> str:
        """Hash: endpoint name -> its record, JSON (``authgw.outbound``)."""
        return f"{self.prefix}:{{wh}}:endpoints"

    def webhook_doorbell(self) -> str:
        """Sharded pub/sub channel: rung with endpoint names when something of theirs is due now."""
        return f"{self.prefix}:{{wh}}:doorbell"

    def webhook_audit(self) -> str:
        """Stream: what operators did to the endpoints (who, when, what), kept by age like events."""
        return f"{self.prefix}:{{wh}}:audit"

    def webhook(self, name: str) -> EndpointKeys:
        """The keys of one endpoint's deliveries (a name is 1-64 of ``A-Z a-z 0-9 . _ -``)."""
        base = f"{self.prefix}:{{wh}}:ep:{name}"
        return EndpointKeys(*(f"{base}:{part}" for part in EndpointKeys.PARTS))


@dataclass(frozen=True)
class EndpointKeys:
    """The keys of one webhook endpoint's deliveries, all in the ``{wh}`` slot. ``all()`` is the
    order the scripts receive them in (``wh_keys`` in ``_lib.lua``)."""

    PARTS = ("records", "bodies", "seen", "due", "lag", "pending", "delivered", "failed", "done")

    records: str  # hash: delivery id -> its record, JSON; and '#seq', the creation counter
    bodies: str  # hash: delivery id -> the exact body to post
    seen: str  # hash: event id -> delivery id (fan-out is idempotent per event)
    due: str  # zset: pending delivery ids by when they are due (ms)
    lag: str  # zset: pending delivery ids by their event's time (ms)
    pending: str  # zset: pending delivery ids by creation order
    delivered: str  # zset: delivered delivery ids by creation order
    failed: str  # zset: failed delivery ids by creation order
    done: str  # zset: finished delivery ids by when they finished (ms): pruned after 7 days

    def all(self) -> list[str]:
        return [getattr(self, part) for part in self.PARTS]
