"""``authgw.client``'s webhook methods against a live gateway on loopback: every row of the
contract's webhook table, by the client, with its refusals.

Where a delivery must fail, the test plays the deliverer's part through the interface the
deliverer calls (``Webhooks.claim_due`` and ``record``); the deliverer itself is tested with it.
Skipped, saying so, where the webhooks API (``authgw.outbound.api``) is not in the tree.
"""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Iterator

import fakeredis
import pytest
from flask import Flask

from authgw.app import create_app
from authgw.client import Client, Problem
from tests.helpers.polling import wait_until
from tests.helpers.serving import in_process
from tests.helpers.settings import API_KEY, OTHER_KEY, settings_for_tests

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("authgw.outbound") is None
    or importlib.util.find_spec("authgw.outbound.api") is None,
    reason="needs the webhooks endpoints API (authgw.outbound.api)",
)

URL = "https://bank.example.jp/authgw/events"


@pytest.fixture
def app() -> Flask:
    """Roles on: ``ops`` (OTHER_KEY) is the operator, API_KEY is corebank. Two tries a delivery,
    one second apart, so a delivery can be driven to ``failed`` at once."""
    settings = settings_for_tests(operators="ops", webhook_retry_schedule="1")
    return create_app({**settings, "redis_client": fakeredis.FakeRedis(decode_responses=True)})


@pytest.fixture
def gateway(app) -> Iterator[str]:
    with in_process(app) as base:
        yield base


def refused(call, *args, **kwargs) -> tuple[int, str]:
    with pytest.raises(Problem) as problem:
        call(*args, **kwargs)
    return problem.value.status, problem.value.code


def is_secret(value: str) -> bool:
    return value.startswith("whsec_") and len(base64.b64decode(value.removeprefix("whsec_"))) == 24


def test_create_update_list_get_delete(gateway):
    ops = Client(gateway, OTHER_KEY)
    created = ops.put_webhook("archive", URL, ["challenge.verified", "customer.*"])
    assert is_secret(created["secret"])
    assert {k: created[k] for k in ("name", "url", "events", "enabled")} == {
        "name": "archive",
        "url": URL,
        "events": ["challenge.verified", "customer.*"],
        "enabled": True,
    }
    updated = ops.put_webhook("archive", URL, ["*"], enabled=False)
    assert "secret" not in updated and (updated["events"], updated["enabled"]) == (["*"], False)
    assert updated["created_at"] == created["created_at"]
    ops.put_webhook("notices", URL + "/notices", ["challenge.consumed"])
    assert sorted(w["name"] for w in ops.list_webhooks()) == ["archive", "notices"]
    one = ops.get_webhook("archive")
    assert one["lag_seconds"] == 0 and one["enabled"] is False
    assert ops.delete_webhook("archive") is None
    assert refused(ops.get_webhook, "archive") == (404, "webhook_not_found")
    assert refused(ops.delete_webhook, "archive") == (404, "webhook_not_found")
    assert [w["name"] for w in ops.list_webhooks()] == ["notices"]


@pytest.mark.parametrize(
    ("name", "url", "events"),
    [
        ("bad name!", URL, ["*"]),
        ("archive", "ftp://bank.example.jp/", ["*"]),
        ("archive", "http://bank.example.jp/", ["*"]),  # http needs AUTHGW_WEBHOOK_ALLOW_HTTP=1
        ("archive", "/relative", ["*"]),
        ("archive", URL, []),
        ("archive", URL, ["challenge.*.x"]),
        ("archive", URL, ["*"] * 51),
    ],
)
def test_a_bad_endpoint_is_refused(gateway, name, url, events):
    ops = Client(gateway, OTHER_KEY)
    assert refused(ops.put_webhook, name, url, events) == (422, "validation_error")
    assert ops.list_webhooks() == []


def test_rotation_keeps_the_old_secret_signing_beside_the_new(gateway, app):
    ops = Client(gateway, OTHER_KEY)
    first = ops.put_webhook("archive", URL, ["challenge.*"])["secret"]
    rotated = ops.rotate_webhook_secret("archive")["secret"]
    assert is_secret(rotated) and rotated != first
    signing = [e.secrets for e in app.extensions["authgw.webhooks"].endpoints() if e.name == "archive"]
    assert signing == [(rotated, first)]
    assert "secret" not in ops.get_webhook("archive")
    assert refused(ops.rotate_webhook_secret, "nobody") == (404, "webhook_not_found")


def test_a_test_event_fails_is_listed_failed_and_is_retried(gateway, app):
    ops = Client(gateway, OTHER_KEY)
    ops.put_webhook("archive", URL, ["challenge.verified"])  # patterns do not stop webhook.test
    queued = ops.test_webhook("archive")
    assert (queued["type"], queued["state"], queued["event_id"][:8]) == (
        "webhook.test",
        "pending",
        "ev_test_",
    )
    assert ops.webhook_deliveries("archive") == [queued]

    # The deliverer's part: two tries (the schedule is one wait of 1 s), both answered 503.
    webhooks = app.extensions["authgw.webhooks"]
    for _ in range(2):
        claimed: list = []
        wait_until(
            "the delivery due", lambda got=claimed: got.extend(webhooks.claim_due("archive", 10, 30)) or got
        )
        (claim,) = claimed
        webhooks.record(
            "archive", claim.delivery_id, claim.attempt, ok=False, status=503, error=None, retry_after=None
        )

    (failed,) = ops.webhook_deliveries("archive", state="failed", limit=5)
    assert (failed["id"], failed["attempts"], failed["last_status"]) == (queued["id"], 2, 503)
    assert ops.webhook_deliveries("archive", state="pending") == []
    assert ops.get_webhook("archive")["lag_seconds"] == 0  # failed ones are not lag

    again = ops.retry_delivery("archive", failed["id"])
    assert (again["id"], again["state"]) == (failed["id"], "pending")
    assert refused(ops.retry_delivery, "archive", failed["id"]) == (409, "delivery_not_failed")
    assert refused(ops.retry_delivery, "archive", "dl_nope") == (404, "delivery_not_found")
    for call in (ops.test_webhook, ops.webhook_deliveries):
        assert refused(call, "nobody") == (404, "webhook_not_found")
    assert refused(ops.webhook_deliveries, "archive", state="lost") == (422, "validation_error")


def test_a_corebank_client_may_make_none_of_the_webhook_calls(gateway):
    Client(gateway, OTHER_KEY).put_webhook("archive", URL, ["*"])
    gw = Client(gateway, API_KEY)
    for call, args in [
        (gw.put_webhook, ("archive", URL, ["*"])),
        (gw.list_webhooks, ()),
        (gw.get_webhook, ("archive",)),
        (gw.delete_webhook, ("archive",)),
        (gw.rotate_webhook_secret, ("archive",)),
        (gw.test_webhook, ("archive",)),
        (gw.webhook_deliveries, ("archive",)),
        (gw.retry_delivery, ("archive", "dl_x")),
    ]:
        assert refused(call, *args) == (403, "forbidden"), call.__name__
