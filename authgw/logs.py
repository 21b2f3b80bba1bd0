"""Structured logs: one JSON object a line, each with the request id, never a secret.

Every request gets an id: the caller's ``X-Request-Id`` when it is a sane token (1-128 of
``A-Z a-z 0-9 . _ : -``), else a new random one. It is sent back in ``X-Request-Id`` and put on
every log line written while the request runs, so one id follows a call through core
banking, the gateway and the load balancer. Each request also writes one access line:
method, route template (not the path), status, duration, client name.

Whatever a message holds, phone numbers are masked to their last four digits
(``+81*******5678``) and bearer tokens, Twilio signatures and secrets are replaced by
``[redacted]`` before the line is written.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# E.164 and national Japanese forms, with or without separators (full-width digits included).
PHONE = re.compile(r"(?<![\w])(\+?[0-9０-９](?:[0-9０-９ ()\-－]{7,18})[0-9０-９])(?![\w])")
SECRET = re.compile(
    r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer\s+)?|bearer\s+|x-twilio-signature[\"']?\s*[:=]\s*[\"']?|"
    r"(?:secret|secret_key|api_key|api_keys|auth_token|token|password|code)[\"']?\s*[:=]\s*[\"']?)"
    r"([^\s\"',}]+)"
)

STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def mask_phone(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        raw = match.group(1)
        digits = [c for c in raw if c.isdigit()]
        if len(digits) < 9:
            return raw
        keep = "".join(digits[-4:])
        lead = "+" if raw.startswith("+") else ""
        country = "".join(digits[:2]) if lead else ""
        return f"{lead}{country}{'*' * (len(digits) - len(country) - 4)}{keep}"

    return PHONE.sub(one, text)


def scrub(text: str) -> str:
    """The text with secrets redacted and phone numbers masked."""
    return mask_phone(SECRET.sub(lambda m: m.group(1) + "[redacted]", text))


def request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        rid = getattr(record, "request_id", None) or request_id()
        if rid:
            line["request_id"] = rid
        for name, value in vars(record).items():
            if name not in STANDARD and name not in line and not name.startswith("_"):
                line[name] = scrub(value) if isinstance(value, str) else value
        if record.exc_info:
            line["error"] = record.exc_info[0].__name__ if record.exc_info[0] else "unknown"
            line["trace"] = scrub(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str = "INFO", stream: Any = None) -> None:
    """JSON lines on stderr for the ``authgw`` loggers (once per process)."""
    logger = logging.getLogger("authgw")
    if any(getattr(h, "_authgw_json", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._authgw_json = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


access = logging.getLogger("authgw.access")


def init_app(app: Flask) -> None:
    """Request ids in and out, and one access line per request."""

    @app.before_request
    def assign_request_id() -> None:
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if REQUEST_ID.fullmatch(given) else secrets.token_hex(16)
        g.log_started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        rid = g.get("request_id")
        if rid:
            response.headers["X-Request-Id"] = rid
        started = g.get("log_started")
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        access.info(
            "%s %s %s",
            request.method,
            route,
            response.status_code,
            extra={
                "method": request.method,
                "route": route,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
                "client": g.get("client"),
                "request_id": rid,
            },
        )
        return response
