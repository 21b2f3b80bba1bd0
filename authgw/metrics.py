"""Prometheus metrics of requests and store transitions, an ``init_app(app)`` extension.

``init_app`` keeps one ``Metrics`` in ``app.extensions["authgw.metrics"]`` (``/metrics`` in
``authgw.ops`` exposes it), counts every request by route, method and status with its latency,
and every script answer the gateway's store returns (``Store.observers``).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from authgw.scripts import answered


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "authgw_requests_total",
            "HTTP requests by route and outcome",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "authgw_request_seconds",
            "Request latency by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.store_errors = Counter(
            "authgw_store_errors_total", "Requests failed closed (503)", registry=self.registry
        )
        self.transitions = Counter(
            "authgw_transitions_total",
            "Store scripts by name and answer: challenges created, verified, consumed, cancelled, "
            "refused (the answer is the contract's code), calls answered and confirmed",
            ["script", "result"],
            registry=self.registry,
        )
        self.lockouts = Counter(
            "authgw_lockouts_total", "Wrong codes after which the customer is locked", registry=self.registry
        )
        self.rate_limited = Counter(
            "authgw_rate_limited_total", "Requests refused with 429", ["route"], registry=self.registry
        )
        self.clock_offset = Gauge(
            "authgw_clock_offset_seconds",
            "The store's clock (Redis TIME) minus this host's, as last measured",
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self.long_polls = Gauge(
            "authgw_long_poll_waiting",
            "Requests waiting for a pending challenge to change (GET /v1/challenges/{id}?wait=N)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.long_polls_woken = Counter(
            "authgw_long_poll_woken_total",
            "Waiting requests woken by their challenge's doorbell (the rest by the re-read)",
            registry=self.registry,
        )

    def observe_waiting(self, what: str, n: int) -> None:
        """Follow the long-polls (``authgw.challenges.waiting.Waiting.observers``)."""
        if what == "waiting":
            self.long_polls.set(n)
        elif what == "woken":
            self.long_polls_woken.inc(n)

    def observe_script(self, name: str, result: Any) -> None:
        """Count one script answer; its first item is its status (``ok`` or a code)."""
        answer = answered(result)
        if answer is None:
            return  # not a transition's answer (e.g. a counter)
        self.transitions.labels(name, answer.status).inc()
        if answer.locked:
            self.lockouts.inc()


def init_app(app: Flask) -> Metrics:
    """Count the requests of ``app`` and the answers of its gateway's store (``authgw.app``)."""
    gateway = app.extensions["authgw"]
    m = Metrics()
    app.extensions["authgw.metrics"] = m
    gateway.store.observers.append(m.observe_script)
    gateway.challenges.waiting.observers.append(m.observe_waiting)
    clock = gateway.domain.store_clock
    clock.observers.append(m.clock_offset.set)
    if clock.offset is not None:
        m.clock_offset.set(clock.offset)

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def record(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        m.requests.labels(route, request.method, str(response.status_code)).inc()
        started = g.get("started")
        if started is not None:
            m.latency.labels(route).observe(time.perf_counter() - started)
        if response.status_code == 503:
            m.store_errors.inc()
        elif response.status_code == 429:
            m.rate_limited.labels(route).inc()
        return response

    return m
