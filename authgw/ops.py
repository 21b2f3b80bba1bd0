"""Operations: ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus) and ``/openapi.json``.

``/metrics`` is open unless ``AUTHGW_METRICS_TOKEN`` is set; then it needs
``Authorization: Bearer <token>`` (compared in constant time, as API keys are), else 401.

Metrics work under several gunicorn workers: when ``PROMETHEUS_MULTIPROC_DIR`` is set (the CLI
sets it), each worker writes its values there and a scrape adds them up.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from authgw.auth import authenticate
from authgw.challenges.waiting import Waiting
from authgw.errors import ApiError, StoreUnavailable, problem
from authgw.http import PROBLEM_TYPE, as_json
from authgw.openapi import openapi_document
from authgw.scripts import answered
from authgw.store import Store, StoreClock

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return as_json({"status": "ok"})


# Why /readyz says 503, by the reason its body names.
NOT_READY = {
    "store_unreachable": "The store does not answer",
    "out_of_memory": "The store refuses writes: out of memory (maxmemory reached, noeviction)",
    "read_only_replica": "The store refuses writes: it is a read-only replica",
    "too_few_replicas": "The store refuses writes: too few replicas for min-replicas-to-write",
    "write_refused": "The store refuses writes",
    "clock_skew": "This host's clock is too far off the store's",
}


@bp.get("/readyz")
def readyz() -> Response:
    """200 only while the store takes a write and this host's clock agrees with the store's:
    one probe write (a key that expires by itself), then one ``TIME``."""
    gateway = current_app.extensions["authgw"]
    clock: StoreClock = gateway.domain.store_clock
    offset = None
    try:
        reason = gateway.store.probe_write()
        if reason is None:
            offset = round(clock.measure(), 3) + 0.0  # + 0.0: never "-0.0"
            if abs(offset) > gateway.settings.clock_skew_max_seconds:
                reason = "clock_skew"
    except StoreUnavailable:
        reason = "store_unreachable"
    if reason is not None:
        body = problem("store_unavailable", NOT_READY[reason], reason=reason)
        if offset is not None:
            body["clock_offset_seconds"] = offset
            body["clock_skew_max_seconds"] = gateway.settings.clock_skew_max_seconds
        return Response(json.dumps(body), status=503, mimetype=PROBLEM_TYPE)
    return as_json({"status": "ready"})


@bp.get("/metrics")
def metrics() -> Response:
    token = current_app.extensions["authgw"].settings.metrics_token
    if token is not None:
        try:
            authenticate(request.headers.get("Authorization"), (token,))
        except ApiError:
            raise ApiError("unauthorized", "Expected Authorization: Bearer <metrics token>") from None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = current_app.extensions["authgw.metrics"].registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi() -> Response:
    return as_json(openapi_document())


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


def install_metrics(
    app: Flask, store: Store | None = None, clock: StoreClock | None = None, waiting: Waiting | None = None
) -> None:
    m = Metrics()
    app.extensions["authgw.metrics"] = m
    if waiting is not None:
        waiting.observers.append(m.observe_waiting)
    if store is not None:
        store.observers.append(m.observe_script)
    if clock is not None:
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
