"""A deliverer running beside a test's app (in a thread, on the app's store and clock), and the
webhook endpoint calls the delivery tests make."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from authgw.outbound.deliverer import Deliverer
from authgw.outbound.deliveries import Webhooks
from tests.helpers.api import Api


@contextmanager
def delivering(app: Any, clock: Any = None, **options: Any) -> Iterator[Deliverer]:
    """A deliverer over ``app``'s store until the block ends (then stopped and joined)."""
    gateway = app.extensions["authgw"]
    if clock is not None:
        options["clock"] = clock
    deliverer = Deliverer(gateway.store, Webhooks(gateway.domain), **options)
    thread = threading.Thread(target=deliverer.run, name="test-deliverer", daemon=True)
    thread.start()
    try:
        yield deliverer
    finally:
        deliverer.stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the deliverer did not stop"


def endpoint(ops: Api, name: str, url: str, events: list[str] | None = None, **extra: Any) -> str:
    """Create an endpoint; returns its secret."""
    rv = ops.put(f"/v1/webhooks/{name}", {"url": url, "events": events or ["*"], **extra})
    assert rv.status_code == 201, rv.get_data(as_text=True)
    return str(rv.get_json()["secret"])


def deliveries(ops: Api, name: str, state: str | None = None) -> list[dict[str, Any]]:
    query = f"?state={state}&limit=100" if state else "?limit=100"
    rv = ops.get(f"/v1/webhooks/{name}/deliveries{query}")
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return list(rv.get_json()["deliveries"])


def trail(api: Api, customer_id: str = "cust-001") -> list[dict[str, Any]]:
    rv = api.get(f"/v1/customers/{customer_id}/events?limit=100")
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return list(rv.get_json()["events"])


def newest(ops: Api, name: str) -> dict[str, Any]:
    """The endpoint's newest delivery; an empty one (no state, no attempts) before there is any."""
    found = deliveries(ops, name)
    return found[0] if found else {"state": None, "attempts": 0}


def attempts_made(deliverer: Deliverer, name: str) -> int:
    """Attempts this deliverer has finished and recorded for endpoint ``name`` (its metrics)."""
    registry = deliverer.metrics.registry
    return sum(
        int(registry.get_sample_value("authgw_webhook_attempts_total", {"endpoint": name, "outcome": o}) or 0)
        for o in ("delivered", "failed_attempt")
    )


def fail_due(app: Any, clock: Any, name: str) -> list[str]:
    """Try every due delivery of endpoint ``name`` and record each try refused (HTTP 500), as a
    deliverer whose receiver is down would, moving ``clock`` past each wait of the schedule
    until none is left: the ids of the deliveries that ended ``failed``, in the order they
    did. No HTTP: the deliverer's own calls of ``Webhooks``."""
    webhooks = app.extensions["authgw.webhooks"]
    failed = []
    for _ in range(len(webhooks.schedule) + 1):
        for claim in webhooks.claim_due(name, 100, 15):
            outcome = webhooks.record(
                name,
                claim.delivery_id,
                claim.attempt,
                ok=False,
                status=500,
                error="HTTP 500",
                retry_after=None,
            )
            if outcome == "failed":
                failed.append(claim.delivery_id)
        clock.advance(max(webhooks.schedule) + 1)
    return failed
