"""The deliverer's metrics (Prometheus), next to the gateway's on ``/metrics``.

Beside ``authgw serve`` the deliverer writes into the same multiprocess directory as the
workers, so the gateway's ``/metrics`` shows them; ``authgw deliver`` alone serves its own
(``--metrics-port``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from authgw.errors import AuthgwError

if TYPE_CHECKING:
    from authgw.outbound.deliveries import Webhooks


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.attempts = Counter(
            "authgw_webhook_attempts_total",
            "Webhook delivery attempts by endpoint and outcome (delivered, failed_attempt)",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.attempt_seconds = Histogram(
            "authgw_webhook_attempt_seconds",
            "How long an endpoint took to answer one delivery attempt",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.latency = Histogram(
            "authgw_webhook_delivery_seconds",
            "From the event (its transition) to the endpoint's 2xx, retries included",
            ["endpoint"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600, 36000),
            registry=self.registry,
        )
        self.lag = Gauge(
            "authgw_webhook_lag_seconds",
            "Age of the endpoint's oldest undelivered (pending) delivery; 0 when none",
            ["endpoint"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.fanned_out = Counter(
            "authgw_webhook_events_fanned_out_total",
            "Outbox entries fanned out to the endpoints",
            registry=self.registry,
        )

    def attempt(self, endpoint: str, ok: bool, seconds: float) -> None:
        self.attempts.labels(endpoint, "delivered" if ok else "failed_attempt").inc()
        self.attempt_seconds.labels(endpoint).observe(seconds)

    def delivered(self, endpoint: str, body: str, now: float) -> None:
        """The event's age when its endpoint took it (from the body's ``timestamp``)."""
        try:
            at = datetime.fromisoformat(str(json.loads(body)["timestamp"]).replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            return
        self.latency.labels(endpoint).observe(max(0.0, now - at.timestamp()))

    def observe_lag(self, webhooks: Webhooks, names: list[str]) -> None:
        for name in names:
            try:
                self.lag.labels(name).set(float(webhooks.get(name)["lag_seconds"]))
            except AuthgwError:
                return
