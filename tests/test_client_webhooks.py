"""``authgw.client``'s webhook methods against a live gateway on loopback: every row of the
contract's webhook table, by the client, with its refusals.

NEEDS the webhooks endpoints API (``authgw.outbound.api``, branch ``webhooks-api``): until it is
merged, every test here is skipped, saying so.
"""

from __future__ import annotations

import base64
import importlib.util
import threading
from collections.abc import Iterator

import fakeredis
import pytest
from werkzeug.serving import make_server

from authgw.app import create_app
from authgw.client import Client, Problem
from tests.helpers.settings import API_KEY, OTHER_KEY, settings_for_tests

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("authgw.outbound") is None
    or importlib.util.find_spec("authgw.outbound.api") is None,
    reason="needs the webhooks endpoints API (authgw.outbound.api, branch webhooks-api), not merged yet",
)

URL = "https://bank.example.jp/authgw/events"


@pytest.fixture
def gateway() -> Iterator[str]:
    """Roles on: ``ops`` (OTHER_KEY) is the operator, API_KEY is corebank."""
    app = create_app(
        {**settings_for_tests(operators="ops"), "redis_client": fakeredis.FakeRedis(decode_responses=True)}
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


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


def test_rotate_test_deliveries_and_retry(gateway):
    ops = Client(gateway, OTHER_KEY)
    first = ops.put_webhook("archive", URL, ["challenge.*"])["secret"]
    rotated = ops.rotate_webhook_secret("archive")["secret"]
    assert is_secret(rotated) and rotated != first
    assert ops.test_webhook("archive") is None
    deliveries = ops.webhook_deliveries("archive")
    assert all(d["state"] in ("pending", "delivered", "failed") for d in deliveries)
    assert ops.webhook_deliveries("archive", state="failed", limit=5) == []
    assert refused(ops.retry_delivery, "archive", "dl_nope") == (404, "delivery_not_found")
    for call in (ops.rotate_webhook_secret, ops.test_webhook, ops.webhook_deliveries):
        assert refused(call, "nobody") == (404, "webhook_not_found")


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
