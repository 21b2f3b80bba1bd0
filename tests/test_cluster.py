"""Redis Cluster: the gateway on a real 3-primary cluster, through ``AUTHGW_REDIS_URL``.

The contract suite runs here too (the ``store`` fixture's ``cluster`` param); these tests show
what is particular to a cluster: the URL form, customers spread over every shard, and each
transition's keys in one slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from redis.cluster import RedisCluster

from authgw.keys import Keys, new_challenge_id
from authgw.store import connect
from tests.helpers.api import Api, transfer
from tests.helpers.apps import close_apps, open_app
from tests.helpers.settings import API_KEY, settings_for_tests

pytestmark = [pytest.mark.real_redis, pytest.mark.cluster]


@pytest.fixture(autouse=True)
def _close_apps() -> Iterator[None]:
    yield
    close_apps()


@pytest.fixture
def cluster_app(redis_cluster: Any, clock: Any) -> Any:
    app = open_app({**settings_for_tests(redis_url=redis_cluster.url, redis_timeout=2), "clock": clock})
    client = app.extensions["authgw"].store.client
    client.flushall()
    yield app
    client.flushall()
    app.extensions["authgw"].store.close()


def test_cluster_url_gives_a_cluster_client(redis_cluster: Any) -> None:
    client = connect(redis_cluster.url, timeout=0.5, pool_size=4)
    try:
        assert isinstance(client, RedisCluster)
        assert len(client.get_primaries()) == 3
        assert client.ping()
    finally:
        client.close()


def test_keys_of_one_customer_share_a_slot(redis_cluster: Any) -> None:
    client = connect(redis_cluster.url, timeout=0.5, pool_size=4)
    try:
        assert isinstance(client, RedisCluster)
        keys = Keys("authgw")
        for customer_id in ("cust-001", "cust-002", "山田"):
            ck = keys.for_customer(customer_id)
            ch = ck.challenge(new_challenge_id(customer_id))
            slots = {
                client.keyslot(k)
                for k in (
                    ck.customer,
                    ck.events,
                    ck.open,
                    ck.lines,
                    ch,
                    ck.idempotency("corebank", "ab" * 16),
                    ck.call("CA1"),
                )
            }
            assert len(slots) == 1
    finally:
        client.close()


def test_whole_lifecycle_on_every_shard(cluster_app: Any, clock: Any) -> None:
    """Customers on all three primaries go through enrolment, challenge, verify and consume."""
    api = Api(cluster_app.test_client(), API_KEY)
    store = cluster_app.extensions["authgw"].store
    nodes = set()
    for i in range(12):
        cid = f"cust-{i:03d}"
        nodes.add(store.client.get_node_from_key(store.keys.for_customer(cid).customer).name)
        assert api.put(f"/v1/customers/{cid}", {"phones": [f"090-1234-{5600 + i}"]}).status_code == 200
        secret = api.post(f"/v1/customers/{cid}/totp").get_json()["secret"]
        totp = pyotp.TOTP(secret)
        rv = api.post(f"/v1/customers/{cid}/totp/confirm", {"code": totp.at(clock())})
        assert rv.status_code == 200 and rv.get_json()["totp"] == "active"
        clock.advance(30)
        created = api.post("/v1/challenges", transfer(cid), headers={"Idempotency-Key": f"k-{i}"})
        assert created.status_code == 201
        challenge = created.get_json()
        replay = api.post("/v1/challenges", transfer(cid), headers={"Idempotency-Key": f"k-{i}"})
        assert replay.status_code == 201 and replay.get_json()["id"] == challenge["id"]
        wrong = api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": "000000"})
        if wrong.status_code == 422:
            assert wrong.get_json()["code"] == "invalid_code"
        rv = api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": totp.at(clock())})
        assert rv.status_code == 200 and rv.get_json()["verified_by"] == "totp"
        rv = api.post(
            f"/v1/challenges/{challenge['id']}/consume",
            {"transaction_digest": challenge["transaction_digest"]},
        )
        assert rv.status_code == 200 and rv.get_json()["status"] == "consumed"
        again = api.post(
            f"/v1/challenges/{challenge['id']}/consume",
            {"transaction_digest": challenge["transaction_digest"]},
        )
        assert again.status_code == 409 and again.get_json()["code"] == "already_consumed"
        types = [e["type"] for e in api.get(f"/v1/customers/{cid}/events").get_json()["events"]]
        assert types[:2] == ["challenge.consumed", "challenge.verified"]
    assert len(nodes) == 3


def test_delete_customer_prunes_phone_hints_across_slots(cluster_app: Any) -> None:
    api = Api(cluster_app.test_client(), API_KEY)
    store = cluster_app.extensions["authgw"].store
    phones = ["090-1111-2222", "080-3333-4444", "070-5555-6666"]
    assert api.put("/v1/customers/cust-del", {"phones": phones}).status_code == 200
    indexes = [store.keys.phone_index(p) for p in ("+819011112222", "+818033334444", "+817055556666")]
    assert len({store.client.keyslot(k) for k in indexes}) > 1
    assert all(store.client.sismember(k, "cust-del") for k in indexes)
    assert api.post("/v1/challenges", transfer("cust-del")).status_code == 201
    assert api.delete("/v1/customers/cust-del").status_code == 204
    assert not any(store.client.sismember(k, "cust-del") for k in indexes)
    assert api.get("/v1/customers/cust-del").status_code == 404


def test_readyz_answers_on_a_cluster(cluster_app: Any) -> None:
    assert cluster_app.test_client().get("/readyz").status_code == 200


def test_wait_for_replicas_goes_to_the_node_of_the_slot(redis_cluster: Any, clock: Any) -> None:
    """With ``redis_wait_replicas`` the script and its WAIT go to the primary of the customer's
    slot; these primaries have no replicas, so the change is made but not acknowledged."""
    app = open_app(
        {
            **settings_for_tests(
                redis_url=redis_cluster.url, redis_wait_replicas=1, redis_timeout=2, redis_wait_timeout=0.05
            ),
            "clock": clock,
        }
    )
    store = app.extensions["authgw"].store
    store.client.flushall()
    api = Api(app.test_client(), API_KEY)
    nodes = {
        store.client.get_node_from_key(store.keys.for_customer(f"cust-{i}").customer).name for i in range(12)
    }
    assert len(nodes) == 3
    for i in range(12):
        rv = api.put(f"/v1/customers/cust-{i}", {"phones": ["090-1234-5678"]})
        assert rv.status_code == 503 and rv.get_json()["code"] == "store_unavailable"
        assert api.get(f"/v1/customers/cust-{i}").status_code == 200
