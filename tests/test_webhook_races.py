"""Webhook state under real concurrency, on the suite's redis-server: racing rotations, a
rotation racing a delete, racing creations, claims, fan-outs and late records. Each request
runs in its own thread, all released at once (``helpers.phone.race``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.api import Api
from tests.helpers.outbound import (
    answer,
    audit_key,
    create,
    endpoint_body,
    event,
    operator,
    roles_on,
    webhook_keys,
    webhooks,
)
from tests.helpers.phone import race

pytestmark = pytest.mark.real_redis

ROUNDS = 15


@pytest.fixture
def settings() -> dict[str, Any]:
    return roles_on()


def ops_of(app: Any) -> Api:
    """An operator's client of its own (one per thread)."""
    return operator(app)


def test_racing_rotations_leave_the_last_two_secrets_signing(real_app):
    create(ops_of(real_app))
    answers = race([lambda: ops_of(real_app).post("/v1/webhooks/core/rotate-secret") for _ in range(8)])
    assert [rv.status_code for rv in answers] == [200] * 8
    returned = {rv.get_json()["secret"] for rv in answers}
    assert len(returned) == 8
    (endpoint,) = webhooks(real_app).endpoints()
    current, previous = endpoint.secrets
    assert current in returned and previous in returned and current != previous


def test_a_rotation_racing_a_delete_leaves_no_endpoint_and_no_key(real_app, real_store):
    for _ in range(ROUNDS):
        create(ops_of(real_app))
        rotated, deleted = race(
            [
                lambda: ops_of(real_app).post("/v1/webhooks/core/rotate-secret"),
                lambda: ops_of(real_app).delete("/v1/webhooks/core"),
            ]
        )
        assert deleted.status_code == 204
        assert rotated.status_code in (200, 404)
        assert ops_of(real_app).get("/v1/webhooks/core").status_code == 404
        assert webhook_keys(real_store) == {audit_key(real_app)}  # the audit stays


def test_a_rotation_racing_a_delete_and_a_new_creation_leaves_an_endpoint_that_signs(real_app):
    def make_again() -> str:
        ops = ops_of(real_app)
        assert ops.delete("/v1/webhooks/core").status_code == 204
        return str(create(ops)["secret"])

    for _ in range(ROUNDS):
        first = create(ops_of(real_app))["secret"]
        rotated, made = race([lambda: ops_of(real_app).post("/v1/webhooks/core/rotate-secret"), make_again])
        assert rotated.status_code in (200, 404)
        (endpoint,) = webhooks(real_app).endpoints()  # every secret it holds opens
        # The new endpoint signs with its own secret, and a rotation that landed on it with that
        # one as the previous; never with the first endpoint's.
        assert first not in endpoint.secrets
        if rotated.status_code == 200 and endpoint.secrets[0] == rotated.get_json()["secret"]:
            assert endpoint.secrets == (rotated.get_json()["secret"], made)
        else:
            assert endpoint.secrets == (made,)
        assert ops_of(real_app).delete("/v1/webhooks/core").status_code == 204


def test_racing_creations_of_one_name_make_it_once_and_show_its_secret_once(real_app):
    answers = race([lambda: ops_of(real_app).put("/v1/webhooks/core", endpoint_body()) for _ in range(8)])
    statuses = sorted(rv.status_code for rv in answers)
    assert statuses == [200] * 7 + [201]
    (made,) = [rv.get_json() for rv in answers if rv.status_code == 201]
    assert all("secret" not in rv.get_json() for rv in answers if rv.status_code == 200)
    assert webhooks(real_app).endpoints()[0].secrets == (made["secret"],)


def test_racing_claims_take_each_delivery_once(real_app, clock):
    create(ops_of(real_app))
    clock.advance(1)
    wh = webhooks(real_app)
    for n in range(40):
        wh.fan_out(event(wh, n=n))

    def drain() -> list[str]:
        taken: list[str] = []
        while claims := wh.claim_due("core", 3, 30):
            taken.extend(c.delivery_id for c in claims)
        return taken

    taken = [d for batch in race([drain for _ in range(8)]) for d in batch]
    assert len(taken) == 40 and len(set(taken)) == 40


def test_racing_fan_outs_of_one_event_make_one_delivery_per_endpoint(real_app, clock):
    create(ops_of(real_app), "a")
    create(ops_of(real_app), "b", events=["challenge.*"])
    clock.advance(1)
    wh = webhooks(real_app)
    for n in range(ROUNDS):
        ev = event(wh, n=n)
        assert sum(race([lambda ev=ev: wh.fan_out(ev) for _ in range(6)])) == 2


def test_racing_records_of_one_try_count_once(real_app, clock):
    create(ops_of(real_app))
    clock.advance(1)
    wh = webhooks(real_app)
    for n in range(ROUNDS):
        wh.fan_out(event(wh, n=n))
        (claimed,) = wh.claim_due("core", 10, 30)
        outcomes = race(
            [
                lambda c=claimed: answer(wh, c, ok=True, status=200),
                lambda c=claimed: answer(wh, c, ok=False, status=500),
            ]
            * 3
        )
        assert sorted(outcomes).count("ignored") == 5


def test_a_fan_out_or_a_late_record_racing_a_delete_leaves_no_key(real_app, real_store, clock):
    wh = webhooks(real_app)
    for n in range(ROUNDS):
        create(ops_of(real_app))
        clock.advance(1)
        wh.fan_out(event(wh, n=n, event_type="customer.locked"))
        (claimed,) = wh.claim_due("core", 10, 30)
        race(
            [
                lambda n=n: wh.fan_out(event(wh, n=1000 + n)),
                lambda c=claimed: answer(wh, c, ok=False, status=500),
                lambda: ops_of(real_app).delete("/v1/webhooks/core"),
            ]
        )
        assert webhook_keys(real_store) == {audit_key(real_app)}  # the audit stays
