"""Webhook endpoints in tests: the operator's client, endpoint bodies, events to fan out, and
the ``{wh}`` keys of a store."""

from __future__ import annotations

from typing import Any

from authgw.outbound.deliveries import Webhooks
from tests.helpers.api import Api
from tests.helpers.settings import OTHER_KEY, settings_for_tests
from tests.helpers.stores import every_key

URL = "https://bank.example.jp/authgw-events"


def roles_on(**overrides: Any) -> dict[str, Any]:
    """Settings with roles on: ``ops`` (``OTHER_KEY``) is the operator, ``corebank`` is not."""
    return settings_for_tests(operators="ops", **overrides)


def operator(app: Any) -> Api:
    return Api(app.test_client(), OTHER_KEY)


def webhooks(app: Any) -> Webhooks:
    """The app's ``Webhooks``: what the deliverer calls."""
    return app.extensions["authgw.webhooks"]


def endpoint_body(url: str = URL, events: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"url": url, "events": ["*"] if events is None else events, **extra}


def create(api: Api, name: str = "core", **body: Any) -> dict[str, Any]:
    """Create an endpoint; its 201 body, with the secret."""
    rv = api.put(f"/v1/webhooks/{name}", endpoint_body(**body))
    assert rv.status_code == 201, rv.get_data(as_text=True)
    return rv.get_json()


def event(
    webhooks: Webhooks, event_type: str = "challenge.verified", n: int = 1, **fields: Any
) -> dict[str, Any]:
    """An event as the events API renders it, dated now on the store's clock."""
    return {
        "id": f"ev_{'0' * 32}_{webhooks.d.now().ms}-{n}",
        "at": webhooks.d.now().iso,
        "type": event_type,
        "customer_id": "cust-001",
        **fields,
    }


def webhook_keys(client: Any) -> set[str]:
    return {key for key in every_key(client) if ":{wh}:" in key}


def deliveries(api: Api, name: str = "core", query: str = "") -> list[dict[str, Any]]:
    rv = api.get(f"/v1/webhooks/{name}/deliveries{query}")
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return rv.get_json()["deliveries"]


def answer(
    wh: Webhooks,
    claimed: Any,
    name: str = "core",
    *,
    ok: bool,
    status: int | None = None,
    error: str | None = None,
    retry_after: float | None = None,
) -> str:
    """Record how a claimed try went, as the deliverer does; the outcome."""
    return wh.record(
        name, claimed.delivery_id, claimed.attempt, ok=ok, status=status, error=error, retry_after=retry_after
    )


def audit_key(app: Any) -> str:
    """The ``{wh}`` slot's audit stream of operators' actions on the webhooks."""
    return str(app.extensions["authgw"].store.keys.webhook_audit())


def audit_trail(app: Any, client: Any) -> list[dict[str, str]]:
    """The webhook audit stream as the store holds it, newest first (read with ``client``)."""
    return [dict(fields) for _id, fields in client.xrevrange(audit_key(app))]
