"""The application factory: ``create_app(config=None)``.

``config`` (tests, embedding) may hold settings overrides by name, plus ``redis_client`` (a
ready client, e.g. fakeredis), ``clock`` and ``host_clock`` (callables returning UNIX seconds),
and ``sleep`` (how a long-poll waits; tests pass one that moves their clock).
Time is the store's: every script reads ``TIME``. ``clock`` is for tests that move time by
hand: it stands in for the store's ``TIME`` (``authgw.store.Store``) and is the host's clock
too, unless ``host_clock`` sets the host's apart (default: the system clock). Settings are
read here, never at import; a bad or missing one raises ``ConfigError``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from authgw import console, logs, metrics, ratelimit
from authgw.challenges.api import bp as v1
from authgw.challenges.customers import Customers
from authgw.challenges.domain import Domain
from authgw.challenges.lifecycle import Challenges
from authgw.errors import ApiError, AuthgwError, ConfigError, StoreUnavailable
from authgw.http import BodyLimit, problem_response, refuse_large
from authgw.ops import bp as ops
from authgw.outbound.api import bp as outbound
from authgw.outbound.deliveries import Webhooks
from authgw.settings import Settings, load_settings
from authgw.store import Store, connect
from authgw.webhooks.twilio import bp as webhooks

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


@dataclass
class Gateway:
    """What the views reach through ``current_app.extensions['authgw']``."""

    settings: Settings
    store: Store
    domain: Domain
    customers: Customers
    challenges: Challenges


def create_app(config: dict[str, Any] | None = None) -> Flask:
    config = dict(config or {})
    client = config.pop("redis_client", None)
    clock: Callable[[], float] | None = config.pop("clock", None)
    host_clock: Callable[[], float] = config.pop("host_clock", None) or clock or time.time
    sleep: Callable[[float], None] | None = config.pop("sleep", None)
    settings = load_settings(config)
    if client is None:
        if not settings.redis_url:
            raise ConfigError(
                "AUTHGW_REDIS_URL", "is not set (`authgw serve` starts the embedded store when it is not)"
            )
        client = connect(settings.redis_url, settings.redis_timeout, settings.redis_pool_size)

    app = Flask("authgw")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.wsgi_app = BodyLimit(app.wsgi_app, MAX_BODY)  # type: ignore[method-assign]
    app.before_request(refuse_large)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    store = Store(
        client,
        settings.key_prefix,
        settings.redis_wait_replicas,
        int(settings.redis_wait_timeout * 1000),
        clock=clock,
    )
    domain = Domain.build(settings, store, host_clock, sleep)
    customers = Customers(domain)
    challenges = Challenges(domain, customers)
    app.extensions["authgw"] = Gateway(settings, store, domain, customers, challenges)

    app.extensions["authgw.webhooks"] = Webhooks(domain)

    # The surfaces and the extensions (each ``init_app(app)``), in this order and only here.
    # Flask runs before-request hooks in the order they are attached, after-request hooks in
    # reverse. Rate limiting joins the v1 and the webhook endpoints' blueprints' own hooks, so
    # it comes after them (it counts once they have authenticated the client) and before the
    # phone webhooks, whose blueprint takes the limiter as it is registered. Metrics come
    # before logging, the console's headers (its own pages only) between, so the metrics'
    # timer starts first and stops last: the latency it records spans the access log line too.
    app.register_blueprint(v1)
    app.register_blueprint(outbound)
    ratelimit.init_app(app, blueprints=("v1", outbound.name))
    app.register_blueprint(ops)
    app.register_blueprint(webhooks)
    metrics.init_app(app)
    # A test that moves time by hand gets no background thread (the overview sends the counts).
    console.init_app(app, background=clock is None)
    logs.init_app(app)
    _register_errors(app)
    return app


def _register_errors(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="authgw"'} if exc.code == "unauthorized" else None
        return problem_response(exc, headers=headers)

    @app.errorhandler(StoreUnavailable)
    def store_unavailable(exc: StoreUnavailable) -> Response:
        return problem_response(
            code="store_unavailable",
            detail="The store cannot be reached; nothing was changed",
            headers={"Retry-After": "1"},
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = HTTP_CODES.get(status)
        if code is None:
            code = "validation_error" if 400 <= status < 500 else "internal_error"
        headers = None
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            headers = {"Allow": ", ".join(exc.valid_methods)}  # type: ignore[attr-defined]
        return problem_response(code=code, headers=headers)

    @app.errorhandler(AuthgwError)
    def domain_error(exc: AuthgwError) -> Response:
        log.error("unhandled domain error %s", type(exc).__name__)
        return problem_response(code="internal_error")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        # Never a stack trace in a response; the log has it for the operator.
        log.exception("unexpected error")
        return problem_response(code="internal_error")
