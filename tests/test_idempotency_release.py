"""A refused creation releases its Idempotency-Key; only a creation, or one in flight, holds it.

After a 404 (a mistyped customer id) the corrected request under the same key once got 409
``idempotency_conflict``: the refused request had used the key up. Now a request that is
refused gives its hold up, atomically and only if the hold is still its own; one that created
a challenge keeps the key for the first body; one that dies between its claim and its answer
holds the key for at most ``IDEMPOTENCY_LEASE_SECONDS`` (a lease read on the injected clock).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from authgw.challenges.lifecycle import IDEMPOTENCY_LEASE_SECONDS
from authgw.challenges.models import parse_new_challenge
from authgw.errors import StoreUnavailable
from tests.helpers.api import Api, assert_problem, register, transfer
from tests.helpers.stores import every_key


def create(api: Api, body: dict[str, Any], key: str = "order-1") -> Any:
    return api.post("/v1/challenges", body, headers={"Idempotency-Key": key})


def created(api: Api, customer_id: str = "cust-001") -> int:
    events = api.get(f"/v1/customers/{customer_id}/events?limit=100").get_json()["events"]
    return [e["type"] for e in events].count("challenge.created")


def claims(store: Any) -> list[str]:
    return [k for k in every_key(store) if k.endswith(":claim")]


def test_a_refused_creation_frees_its_key_for_the_corrected_request(api, store):
    register(api)
    assert_problem(create(api, transfer("cust-00l")), 404, "customer_not_found")
    assert claims(store) == []
    rv = create(api, transfer("cust-001"))
    assert rv.status_code == 201, rv.get_data(as_text=True)
    assert created(api) == 1


def test_a_creation_refused_for_its_methods_frees_its_key(api, store):
    register(api)  # a phone, no TOTP: asking only for TOTP is method_unavailable
    assert_problem(create(api, transfer(methods=["totp"])), 422, "method_unavailable")
    rv = create(api, transfer(methods=["callback"]))
    assert rv.status_code == 201, rv.get_data(as_text=True)


def test_the_same_key_and_body_after_success_replays_the_first_response(api, store):
    register(api)
    assert_problem(create(api, transfer("cust-404")), 404, "customer_not_found")
    first = create(api, transfer())
    again = create(api, transfer())
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json() == first.get_json()
    assert created(api) == 1
    # Once a challenge exists under the key, another body is a conflict, as before.
    assert_problem(create(api, transfer(amount=1)), 409, "idempotency_conflict")
    assert_problem(create(api, transfer("cust-404")), 409, "idempotency_conflict")


def test_a_refusal_repeated_never_holds_the_key(api, store):
    register(api)
    for _ in range(3):
        assert_problem(create(api, transfer("cust-404")), 404, "customer_not_found")
    assert create(api, transfer()).status_code == 201


def race(app: Any, calls: list[Any]) -> list[Any]:
    """Run each call on its own thread and test client, released together by a barrier."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        api = Api(app.test_client())
        barrier.wait()
        results[i] = calls[i](api)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(r is not None for r in results)
    return results


@pytest.mark.real_redis
@pytest.mark.parametrize("round_", range(10))
def test_a_concurrent_pair_with_one_key_and_body_creates_one_challenge(real_app, round_):
    api = Api(real_app.test_client())
    register(api)
    key = f"pair-{round_}"
    first, second = race(real_app, [lambda a: create(a, transfer(), key)] * 2)
    assert (first.status_code, second.status_code) == (201, 201), [first.get_json(), second.get_json()]
    assert first.get_json()["id"] == second.get_json()["id"]
    assert created(api) == 1


@pytest.mark.real_redis
@pytest.mark.parametrize("round_", range(10))
def test_a_refused_and_a_corrected_request_racing_on_one_key_create_at_most_one(real_app, round_):
    api = Api(real_app.test_client())
    register(api)
    key = f"mixed-{round_}"
    refused, corrected = race(
        real_app, [lambda a: create(a, transfer("cust-404"), key), lambda a: create(a, transfer(), key)]
    )
    assert_problem(refused, refused.status_code, refused.get_json()["code"])
    assert (refused.status_code, refused.get_json()["code"]) in {
        (404, "customer_not_found"),
        (409, "idempotency_conflict"),
    }
    assert corrected.status_code in (201, 409)
    assert created(api) == (1 if corrected.status_code == 201 else 0)
    # Whichever way the race went, the key ends usable for the corrected body.
    assert create(api, transfer(), key).status_code == 201
    assert created(api) == 1


def fail_once(app: Any, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """The store fails on the next run of ``script`` (after the claim: a store that stops
    answering between two steps of one request)."""
    store = app.extensions["authgw"].store
    real_run = store.run
    failed: list[str] = []

    def run(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == script and not failed:
            failed.append(name)
            raise StoreUnavailable("injected failure")
        return real_run(name, *args, **kwargs)

    monkeypatch.setattr(store, "run", run)


def test_a_store_failure_between_claim_and_create_holds_the_key_only_for_the_lease(
    app, api, store, clock, monkeypatch
):
    register(api)
    fail_once(app, monkeypatch, "create_challenge")
    assert_problem(create(api, transfer("cust-404")), 503, "store_unavailable")
    # Whether that request created anything is unknown to the gateway: another body waits...
    assert_problem(create(api, transfer()), 409, "idempotency_conflict")
    clock.advance(IDEMPOTENCY_LEASE_SECONDS - 1)
    assert_problem(create(api, transfer()), 409, "idempotency_conflict")
    # ... until the lease has run out; then the key is free.
    clock.advance(2)
    rv = create(api, transfer())
    assert rv.status_code == 201, rv.get_data(as_text=True)
    assert created(api) == 1


def test_after_a_store_failure_the_same_body_may_retry_at_once(app, api, store, monkeypatch):
    register(api)
    fail_once(app, monkeypatch, "create_challenge")
    assert_problem(create(api, transfer()), 503, "store_unavailable")
    first = create(api, transfer())
    assert first.status_code == 201, first.get_data(as_text=True)
    assert create(api, transfer()).get_json() == first.get_json()
    assert created(api) == 1


def test_a_release_lost_to_a_store_failure_frees_the_key_when_the_lease_ends(
    app, api, store, clock, monkeypatch
):
    register(api)
    fail_once(app, monkeypatch, "idempotency_release")
    assert_problem(create(api, transfer("cust-404")), 404, "customer_not_found")
    assert_problem(create(api, transfer()), 409, "idempotency_conflict")
    clock.advance(IDEMPOTENCY_LEASE_SECONDS + 1)
    assert create(api, transfer()).status_code == 201


def test_a_late_release_leaves_a_claim_that_is_no_longer_its_own(app, api, store, clock, monkeypatch):
    """A refused request whose lease ran out before it released: by then another body holds
    the key, and the late release must not free that body's claim."""
    register(api)
    gateway = app.extensions["authgw"]
    real_run = gateway.store.run
    late: list[Any] = []

    def run(name: str, keys: Any, args: Any, *rest: Any, **kw: Any) -> Any:
        if name == "idempotency_release" and not late:
            late.append((keys, args))  # held back: the request is slow
            return ["not_held"]
        return real_run(name, keys, args, *rest, **kw)

    monkeypatch.setattr(gateway.store, "run", run)
    assert_problem(create(api, transfer("cust-404")), 404, "customer_not_found")
    clock.advance(IDEMPOTENCY_LEASE_SECONDS + 1)
    # A request for another (unknown) customer takes the lapsed key, and is in flight...
    other = transfer("cust-405")
    hold = gateway.challenges._claim("corebank", parse_new_challenge(other, "order-1"))
    assert hold is not None and hold.held
    # ... when the slow request's release finally arrives: it is not its claim any more.
    keys, args = late[0]
    assert real_run("idempotency_release", keys, args) == ["not_held"]
    assert_problem(create(api, transfer()), 409, "idempotency_conflict")
    assert claims(store)
    assert created(api) == 0
