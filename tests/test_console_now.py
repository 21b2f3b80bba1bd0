"""The console overview's "now": challenges pending and customers locked at this moment, read
from the buckets' indexes that the transition scripts keep in the same step as each change
(``take_bucket`` in ``_lib.lua``). Exact on every host at once, with nobody flushing anything,
and an entry whose time has passed stops counting even when no script has settled it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from authgw.app import create_app
from authgw.identifiers import BUCKETS
from tests.helpers.api import Api, enrol_totp, new_challenge, register, totp_code, transfer, wrong_code
from tests.helpers.console import post_form, sign_in
from tests.helpers.phone import Phone, gather_of, new_sid, race, twiml
from tests.helpers.settings import OTHER_KEY, settings_for_tests

CUSTOMERS = ("cust-001", "cust-002", "cust-003")


@pytest.fixture
def settings() -> dict[str, Any]:
    return settings_for_tests(operators="ops")


def page(app: Any) -> str:
    web = app.test_client()
    assert sign_in(web, OTHER_KEY).status_code == 302
    return str(web.get("/console/").get_data(as_text=True))


def now_counts(app: Any) -> tuple[int, int]:
    """(pending, locked) as the overview shows them."""
    text = page(app)
    return tuple(  # type: ignore[return-value]
        int(text.split(f'id="count-{name}">', 1)[1].split("<", 1)[0]) for name in ("pending", "locked")
    )


def other_host(store: Any, clock: Any, **overrides: Any) -> Any:
    return create_app(
        {**settings_for_tests(operators="ops", **overrides), "redis_client": store, "clock": clock}
    )


def test_pending_counts_every_customer_and_every_host_at_once(
    app: Any, api: Api, store: Any, clock: Any
) -> None:
    secrets = {}
    for customer in CUSTOMERS:
        register(api, customer)
        secrets[customer] = enrol_totp(api, clock, customer)
    made = [new_challenge(api, customer, methods=["totp"]) for customer in CUSTOMERS for _ in range(2)]
    assert len({app.extensions["authgw"].store.keys.for_customer(c).pending_index for c in CUSTOMERS}) > 1
    second = other_host(store, clock)
    assert now_counts(app) == now_counts(second) == (6, 0)
    first = made[0]
    code = totp_code(secrets["cust-001"], clock())
    assert api.post(f"/v1/challenges/{first['id']}/totp", json={"code": code}).status_code == 200
    assert now_counts(second) == (5, 0)  # verified is no longer pending: nothing was flushed
    digest = {"transaction_digest": first["transaction_digest"]}
    assert api.post(f"/v1/challenges/{first['id']}/consume", json=digest).status_code == 200
    assert api.post(f"/v1/challenges/{made[1]['id']}/cancel").status_code == 200
    assert now_counts(second) == (4, 0)


def test_an_expired_challenge_stops_counting_though_nothing_touched_it(
    app: Any, api: Api, store: Any, clock: Any
) -> None:
    register(api)
    for _ in range(3):
        new_challenge(api)
    assert now_counts(app) == (3, 0)
    clock.advance(app.extensions["authgw"].settings.default_ttl_seconds + 1)
    assert now_counts(app) == (0, 0)
    # The bucket's index does not keep what ran out: the next creation there drops it.
    new_challenge(api)
    index = app.extensions["authgw"].store.keys.for_customer("cust-001").pending_index
    assert store.zcard(index) == 1
    assert now_counts(app) == (1, 0)


def test_a_challenge_ended_by_wrong_codes_leaves_pending(app: Any, api: Api, clock: Any) -> None:
    register(api)
    secret = enrol_totp(api, clock)
    challenge = new_challenge(api, methods=["totp"])
    for _ in range(challenge["attempts_left"]):
        rv = api.post(f"/v1/challenges/{challenge['id']}/totp", json={"code": wrong_code(secret, clock())})
        assert rv.status_code == 422
    assert api.get(f"/v1/challenges/{challenge['id']}").get_json()["status"] == "failed"
    assert now_counts(app)[0] == 0


def test_locked_now_follows_a_lock_and_its_unlock_and_lists_who(
    app: Any, api: Api, store: Any, clock: Any
) -> None:
    for customer in CUSTOMERS:
        register(api, customer)
    web = api.client
    assert sign_in(web, OTHER_KEY).status_code == 302
    for customer in CUSTOMERS[:2]:
        base = f"/console/customers/{customer}"
        post_form(web, f"{base}/lock", f"{base}/confirm/lock", note="call centre")
    second = other_host(store, clock)
    assert now_counts(second) == (0, 2)
    text = page(second)
    listed = text.split('id="locked-now"', 1)[1].split("</table>", 1)[0]
    assert 'data-customer="cust-001"' in listed and 'data-customer="cust-002"' in listed
    assert 'data-customer="cust-003"' not in listed
    assert "ops" in listed  # by whom: the operator's client name
    base = "/console/customers/cust-001"
    post_form(web, f"{base}/unlock", f"{base}/confirm/unlock")
    assert now_counts(second) == (0, 1)
    assert 'data-customer="cust-001"' not in page(second)


def test_a_deleted_customer_is_no_longer_locked_or_pending(app: Any, api: Api) -> None:
    register(api)
    new_challenge(api)
    ops = Api(app.test_client(), OTHER_KEY)
    assert ops.post("/v1/customers/cust-001/lock", json={}).status_code == 200
    register(api, "cust-002")
    new_challenge(api, "cust-002")
    assert now_counts(app) == (1, 1)  # the lock cancelled cust-001's challenge
    assert ops.delete("/v1/customers/cust-002").status_code == 204
    assert ops.delete("/v1/customers/cust-001").status_code == 204
    assert now_counts(app) == (0, 0)


@pytest.mark.parametrize(
    "settings", [settings_for_tests(operators="ops", lockout_mode="temporary", lockout_threshold=2)]
)
def test_a_temporary_lock_counts_until_it_runs_out_by_itself(app: Any, api: Api, clock: Any) -> None:
    register(api)
    secret = enrol_totp(api, clock)
    challenge = new_challenge(api, methods=["totp"])
    for _ in range(2):
        rv = api.post(f"/v1/challenges/{challenge['id']}/totp", json={"code": wrong_code(secret, clock())})
        assert rv.status_code == 422
    assert api.get("/v1/customers/cust-001").get_json()["lock"]["reason"] == "failures"
    assert now_counts(app) == (1, 1)  # the challenge is still pending: a failures lock cancels nothing
    clock.advance(901)
    assert now_counts(app)[1] == 0  # nobody asked about the customer; the lock's time is past
    assert api.get("/v1/customers/cust-001").get_json()["lock"] is None
    index = app.extensions["authgw"].store.keys.for_customer("cust-001").locked_index
    new_challenge(api, methods=["totp"])  # the next transition ends the lock (lock_state)
    assert app.extensions["authgw"].store.client.zcard(index) == 0  # and takes it off the index


@pytest.mark.parametrize("settings", [settings_for_tests(operators="ops", callback_mode="confirm")])
def test_a_fraud_report_is_locked_now_and_leaves_nothing_pending(app: Any, api: Api) -> None:
    register(api)
    challenge = new_challenge(api, methods=["callback"])
    phone = Phone(app.test_client())
    sid = new_sid()
    gather = gather_of(twiml(phone.call("+819012345678", challenge["callback"]["number"], sid)))
    assert now_counts(app) == (1, 0)
    twiml(phone.press(gather, "9", sid))
    assert now_counts(app) == (0, 1)
    assert 'data-customer="cust-001"' in page(app)


def test_racing_creations_and_cancellations_leave_the_count_exact(app: Any, api: Api, clock: Any) -> None:
    """Real threads, released at once: whatever interleaves, pending is exactly what is pending."""
    for customer in CUSTOMERS:
        register(api, customer)
        enrol_totp(api, clock, customer)

    def create(customer: str) -> str:
        rv = Api(app.test_client(), api.key).post(
            "/v1/challenges", json={**transfer(customer), "methods": ["totp"]}
        )
        assert rv.status_code == 201, rv.get_data(as_text=True)
        return str(rv.get_json()["id"])

    # 12 at once: within the Cluster client's pool of 16 per node, which does not queue
    made = race([functools.partial(create, c) for c in CUSTOMERS for _ in range(4)])
    assert len(set(made)) == 12 and now_counts(app) == (12, 0)

    def cancel_one(challenge_id: str) -> int:
        return int(Api(app.test_client(), api.key).post(f"/v1/challenges/{challenge_id}/cancel").status_code)

    cancel: list[Callable[[], Any]] = [functools.partial(cancel_one, i) for i in made]
    assert race(cancel[::3] + cancel[::3]).count(200) >= 4  # each cancelled twice at once
    pending = sum(1 for i in made if api.get(f"/v1/challenges/{i}").get_json()["status"] == "pending")
    assert pending == 8
    assert now_counts(app) == (pending, 0)


def test_the_overview_reads_every_bucket(app: Any) -> None:
    """What the overview reads is every bucket's two indexes, no fewer (a customer in any
    bucket counts)."""
    seen: list[int] = []
    store = app.extensions["authgw"].store
    real = store.count_from

    def count_from(zsets: Any, low_ms: int) -> list[int]:
        seen.append(len(zsets))
        return list(real(zsets, low_ms))

    store.count_from = count_from
    page(app)
    assert seen == [2 * BUCKETS]
