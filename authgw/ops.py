"""Operations: ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus) and ``/openapi.json``.

``/metrics`` is open unless ``AUTHGW_METRICS_TOKEN`` is set; then it needs
``Authorization: Bearer <token>`` (compared in constant time, as API keys are), else 401.

Metrics work under several gunicorn workers: when ``PROMETHEUS_MULTIPROC_DIR`` is set (the CLI
sets it), each worker writes its values there and a scrape adds them up.
"""

from __future__ import annotations

import json
import os

from flask import Blueprint, Response, current_app, request
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from authgw.auth import authenticate
from authgw.errors import ApiError, StoreUnavailable, problem
from authgw.http import PROBLEM_TYPE, as_json
from authgw.openapi import openapi_document
from authgw.store import StoreClock

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
