"""Every operator change to the webhooks leaves a durable record in the store (issue 15: every
action audited with the operator's client name): a PUT, a delete, a rotation, a retry and a
test each append to the ``{wh}`` slot's audit stream, in the script that makes the change, who
(``by``), when (``at``, the store's clock) and what. A refused call records nothing; a secret is
never recorded; the stream is kept by age like the events. On every store."""

from __future__ import annotations

from typing import Any

import pytest

from authgw.app import create_app
from tests.helpers.api import Api, assert_problem
from tests.helpers.delivering import fail_due
from tests.helpers.outbound import (
    URL,
    audit_key,
    audit_trail,
    create,
    deliveries,
    endpoint_body,
    operator,
    roles_on,
    webhooks,
)
from tests.helpers.phone import race
from tests.helpers.settings import OTHER_KEY, settings_for_tests


@pytest.fixture
def settings() -> dict[str, Any]:
    return roles_on(webhook_retry_schedule="5")  # two tries, then failed


@pytest.fixture
def ops(app: Any) -> Api:
    return operator(app)


def now_iso(app: Any) -> str:
    return str(app.extensions["authgw"].domain.now().iso)


def failed_test_delivery(app: Any, ops: Api, clock: Any, name: str = "core") -> str:
    rv = ops.post(f"/v1/webhooks/{name}/test")
    assert rv.status_code == 202, rv.get_data(as_text=True)
    delivery_id = str(rv.get_json()["id"])
    assert fail_due(app, clock, name) == [delivery_id]
    return delivery_id


def test_every_change_is_audited_with_its_author_when_and_what(app, ops, store, clock):
    created = create(ops, events=["customer.*"])
    at = {"webhook.created": now_iso(app)}
    clock.advance(1)
    assert ops.put("/v1/webhooks/core", endpoint_body(url=URL + "/v2", enabled=False)).status_code == 200
    at["webhook.updated"] = now_iso(app)
    clock.advance(1)
    rotated = ops.post("/v1/webhooks/core/rotate-secret").get_json()["secret"]
    at["webhook.secret_rotated"] = now_iso(app)
    clock.advance(1)
    assert ops.put("/v1/webhooks/core", endpoint_body()).status_code == 200  # enabled again
    delivery_id = failed_test_delivery(app, ops, clock)
    (test_delivery,) = deliveries(ops)
    clock.advance(1)
    assert ops.post(f"/v1/webhooks/core/deliveries/{delivery_id}/retry").status_code == 202
    at["webhook.delivery_retried"] = now_iso(app)
    clock.advance(1)
    assert ops.delete("/v1/webhooks/core").status_code == 204
    at["webhook.deleted"] = now_iso(app)

    trail = audit_trail(app, store)
    assert [a["action"] for a in trail] == [
        "webhook.deleted",
        "webhook.delivery_retried",
        "webhook.test_sent",
        "webhook.updated",
        "webhook.secret_rotated",
        "webhook.updated",
        "webhook.created",
    ]
    assert {a["by"] for a in trail} == {"ops"} and {a["webhook"] for a in trail} == {"core"}
    by_action = {a["action"]: a for a in reversed(trail)}  # the newest of each
    for action, when in at.items():
        if action != "webhook.updated":
            assert by_action[action]["at"] == when, action
    assert trail[-1] == {
        "at": at["webhook.created"],
        "by": "ops",
        "action": "webhook.created",
        "webhook": "core",
        "url": URL,
        "events": '["customer.*"]',
        "enabled": "1",
    }
    assert trail[-2]["at"] == at["webhook.updated"]
    assert (trail[-2]["url"], trail[-2]["enabled"]) == (URL + "/v2", "0")
    assert by_action["webhook.deleted"]["url"] == URL
    assert by_action["webhook.test_sent"]["delivery_id"] == delivery_id
    assert by_action["webhook.test_sent"]["event_id"] == test_delivery["event_id"]
    retried = by_action["webhook.delivery_retried"]
    assert (retried["delivery_id"], retried["event_id"], retried["event_type"]) == (
        delivery_id,
        test_delivery["event_id"],
        "webhook.test",
    )
    # No secret, new or rotated, is ever recorded.
    recorded = repr(store.xrange(audit_key(app)))
    assert created["secret"] not in recorded and rotated not in recorded and "whsec_" not in recorded


def test_the_author_is_the_operator_who_called(store, clock):
    # Another gateway host on the same store, whose operator is named fraud-desk.
    settings = settings_for_tests(operators="fraud-desk", api_keys=f"fraud-desk={OTHER_KEY}")
    other = create_app({**settings, "redis_client": store, "clock": clock})
    create(operator(other), "archive")
    (entry,) = audit_trail(other, store)
    assert (entry["by"], entry["webhook"], entry["action"]) == ("fraud-desk", "archive", "webhook.created")


def test_a_refused_call_records_nothing(app, ops, api, store, clock):
    unknown = "dl_" + "a" * 26
    for method, path in (
        ("delete", "/v1/webhooks/core"),
        ("post", "/v1/webhooks/core/rotate-secret"),
        ("post", "/v1/webhooks/core/test"),
        ("post", f"/v1/webhooks/core/deliveries/{unknown}/retry"),
    ):
        assert_problem(getattr(ops, method)(path), 404, "webhook_not_found")
    assert_problem(ops.put("/v1/webhooks/core", {"url": "ftp://x", "events": ["*"]}), 422, "validation_error")
    assert_problem(api.put("/v1/webhooks/core", endpoint_body()), 403, "forbidden")  # corebank
    assert audit_trail(app, store) == []

    create(ops)
    pending = ops.post("/v1/webhooks/core/test").get_json()["id"]
    before = audit_trail(app, store)
    assert_problem(ops.post(f"/v1/webhooks/core/deliveries/{pending}/retry"), 409, "delivery_not_failed")
    assert_problem(ops.post(f"/v1/webhooks/core/deliveries/{unknown}/retry"), 404, "delivery_not_found")
    assert_problem(api.delete("/v1/webhooks/core"), 403, "forbidden")
    assert_problem(api.post("/v1/webhooks/core/rotate-secret"), 403, "forbidden")
    assert audit_trail(app, store) == before


def test_the_audit_is_kept_by_age_like_the_events(app, ops, store):
    key = audit_key(app)
    retention_ms = app.extensions["authgw"].settings.events_retention_seconds * 1000
    seconds, micros = (
        store.time(target_nodes=store.get_node_from_key(key))
        if hasattr(store, "get_primaries")
        else store.time()
    )
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    # 300 entries written more than the retention ago, then 50 just inside it.
    for i in range(300):
        store.xadd(key, {"action": "old", "n": str(i)}, id=f"{now_ms - retention_ms - 5000 + i}-0")
    for i in range(50):
        store.xadd(key, {"action": "young", "n": str(i)}, id=f"{now_ms - retention_ms + 60_000 + i}-0")
    create(ops)  # its audit entry trims
    kept = [a["action"] for a in audit_trail(app, store)]
    # MINID ~ drops whole stream nodes: at most one node's worth of the old ones may linger.
    assert kept.count("old") < 100 and kept.count("young") == 50 and kept[0] == "webhook.created"
    # The stream outlives its newest entry by the retention, and no longer.
    assert retention_ms - 60_000 <= store.pttl(key) <= retention_ms


@pytest.mark.real_redis
def test_racing_retries_of_one_delivery_are_audited_once(real_app, real_store, clock):
    ops = operator(real_app)
    create(ops)
    delivery_id = failed_test_delivery(real_app, ops, clock)
    answers = race(
        [
            lambda: operator(real_app).post(f"/v1/webhooks/core/deliveries/{delivery_id}/retry")
            for _ in range(8)
        ]
    )
    assert sorted(rv.status_code for rv in answers) == [202] + [409] * 7
    retried = [a for a in audit_trail(real_app, real_store) if a["action"] == "webhook.delivery_retried"]
    assert [a["delivery_id"] for a in retried] == [delivery_id]
    assert webhooks(real_app).deliveries("core", "pending", 10)[0]["id"] == delivery_id
