"""The outbox: every event a transition writes goes, in the same script, to its bucket's outbox,
on the customer's slot, and rings the bucket's doorbell (API.md Additions, "Webhooks to the
bank": at least once even when every process dies right after the transition)."""

from __future__ import annotations

import re
import threading

import pytest
from redis.cluster import RedisCluster

from authgw.identifiers import BUCKETS, bucket_of_tag, customer_tag, event_id
from authgw.store import read_lua
from tests.helpers.api import enrol_totp, new_challenge, register, totp_code
from tests.helpers.polling import wait_until


def outbox_entries(app, customer_id: str) -> list[tuple[str, dict[str, str]]]:
    store = app.extensions["authgw"].store
    outbox = store.keys.for_customer(customer_id).outbox
    return [e for e in store.client.xrange(outbox) if e[1].get("customer_id") == customer_id]


def test_every_event_of_the_trail_is_in_the_outbox_with_the_same_id(app, api):
    register(api)
    cid = new_challenge(api, methods=["callback"])["id"]
    assert api.post(f"/v1/challenges/{cid}/cancel").status_code == 200
    assert api.post("/v1/customers/cust-001/lock", {"note": "test"}).status_code == 200
    trail = api.get("/v1/customers/cust-001/events?limit=100").get_json()["events"]
    assert [e["type"] for e in reversed(trail)] == [
        "customer.phones_changed",
        "challenge.created",
        "challenge.cancelled",
        "customer.locked",
    ]
    outbox = outbox_entries(app, "cust-001")
    assert len(outbox) == len(trail)
    by_id = {event_id(fields["customer_id"], fields["trail_id"]): fields for _, fields in outbox}
    for event in trail:
        fields = by_id[event["id"]]
        assert fields["type"] == event["type"]
        assert fields["at"] == event["at"]


def test_a_refused_transition_writes_nothing_to_the_outbox(app, api):
    register(api)
    before = outbox_entries(app, "cust-001")
    # Cancelling twice: the second is refused (409) and must leave no event behind.
    cid = new_challenge(api, methods=["callback"])["id"]
    assert api.post(f"/v1/challenges/{cid}/cancel").status_code == 200
    assert api.post(f"/v1/challenges/{cid}/cancel").status_code == 409
    assert len(outbox_entries(app, "cust-001")) == len(before) + 2  # created, cancelled


def test_the_outbox_shares_the_customers_slot(app, store):
    keys = app.extensions["authgw"].store.keys.for_customer("cust-001")
    tag = re.findall(r"\{([^}]*)\}", keys.customer)
    assert tag == re.findall(r"\{([^}]*)\}", keys.outbox) == re.findall(r"\{([^}]*)\}", keys.events)
    assert tag == [f"b:{bucket_of_tag(customer_tag('cust-001')):04d}"]
    if isinstance(store, RedisCluster):
        assert (
            store.keyslot(keys.outbox) == store.keyslot(keys.customer) == store.keyslot(keys.challenge("x"))
        )


def test_buckets_spread_customers_evenly():
    counts = [0] * BUCKETS
    for n in range(BUCKETS * 50):
        counts[bucket_of_tag(customer_tag(f"cust-{n}"))] += 1
    assert min(counts) > 15 and max(counts) < 100  # about 50 each


def test_a_transition_rings_the_doorbell_with_its_challenge(app, api, store):
    register(api)
    gateway_store = app.extensions["authgw"].store
    keys = gateway_store.keys.for_customer("cust-001")
    subscription = gateway_store.subscribe([keys.outbox])
    rings: list[tuple[str, str]] = []
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            rings.extend(subscription.wait(0.2))

    subscription.wait(0.1)  # subscribed before the transition
    listener = threading.Thread(target=listen)
    listener.start()
    try:
        cid = new_challenge(api, methods=["callback"])["id"]
        wait_until("the doorbell of the challenge's creation", lambda: (keys.outbox, cid) in rings)
    finally:
        stop.set()
        listener.join()
        subscription.close()


# -- every script that writes an event takes the outbox -------------------------------------

# The prelude's functions that write an event (checked against the prelude below).
WRITERS = (
    "add_event",
    "settle",
    "cancel_open",
    "count_failure",
    "lock_customer",
    "lock_state",
    "verify_factor",
    "mark_verified",
    "count_lock_failure",
)
EVENT_WRITERS = re.compile(rf"\b({'|'.join(WRITERS)})\(")


def _writers_in_prelude() -> set[str]:
    """The prelude's functions that (directly or not) write an event."""
    source = read_lua("_lib.lua")
    bodies = dict(re.findall(r"local function (\w+)\((.*?)\nend\n", source, flags=re.S))
    writers = {"add_event"}
    changed = True
    while changed:
        changed = False
        for name, body in bodies.items():
            if name not in writers and any(re.search(rf"\b{w}\(", body) for w in writers):
                writers.add(name)
                changed = True
    return writers


def test_the_prelude_writers_are_the_ones_this_test_knows():
    assert _writers_in_prelude() <= set(WRITERS)


@pytest.mark.parametrize("store", ["fake"], indirect=True)
def test_every_script_that_writes_an_event_takes_the_outbox_first(store):
    from importlib import resources

    names = sorted(
        p.name[:-4] for p in resources.files("authgw").joinpath("lua").iterdir() if p.name.endswith(".lua")
    )
    writers = []
    for name in names:
        if name.startswith("_"):
            continue
        source = read_lua(f"{name}.lua")
        code = [line for line in source.splitlines() if line.strip() and not line.startswith("--")]
        if EVENT_WRITERS.search(source):
            writers.append(name)
            assert code[0].startswith("take_bucket(KEYS)"), name
        else:
            assert "take_bucket" not in source, name
    assert "create_challenge" in writers and "verify_totp" in writers


def test_totp_verification_reaches_the_outbox(app, api, clock):
    register(api)
    secret = enrol_totp(api, clock)
    clock.advance(30)
    cid = new_challenge(api, methods=["totp"])["id"]
    assert api.post(f"/v1/challenges/{cid}/totp", {"code": totp_code(secret, clock())}).status_code == 200
    types = [fields["type"] for _, fields in outbox_entries(app, "cust-001")]
    assert types[-2:] == ["challenge.created", "challenge.verified"]
