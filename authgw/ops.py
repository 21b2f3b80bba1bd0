"""Operations: ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus) and ``/openapi.json``.

``/metrics`` is open unless ``AUTHGW_METRICS_TOKEN`` is set; then it needs
``Authorization: Bearer <token>`` (compared in constant time, as API keys are), else 401.

Metrics work under several gunicorn workers: when ``PROMETHEUS_MULTIPROC_DIR`` is set (the CLI
sets it), each worker writes its values there and a scrape adds them up.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from authgw.auth import authenticate
from authgw.errors import ApiError, StoreUnavailable
from authgw.http import as_json, problem_response
from authgw.openapi import openapi_document
from authgw.store import Store

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return as_json({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    try:
        current_app.extensions["authgw"].store.ping()
    except StoreUnavailable:
        return problem_response(code="store_unavailable", detail="The store does not answer")
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

    def observe_script(self, name: str, result: Any) -> None:
        """Count one script answer; its first item is its status (``ok`` or a code)."""
        if not isinstance(result, list) or not result or not isinstance(result[0], str):
            return  # not a transition's answer (e.g. a counter)
        status = result[0]
        self.transitions.labels(name, status).inc()
        if status == "invalid_code" and len(result) > 2 and str(result[2]) == "1":
            self.lockouts.inc()


def install_metrics(app: Flask, store: Store | None = None) -> None:
    m = Metrics()
    app.extensions["authgw.metrics"] = m
    if store is not None:
        store.observers.append(m.observe_script)

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
