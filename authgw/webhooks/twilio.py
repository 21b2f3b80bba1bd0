"""The Twilio webhooks: ``/webhooks/twilio/voice``, ``/confirm``, ``/lock`` and ``/status``.

Every view is wrapped in ``signed``: the ``X-Twilio-Signature`` header must be Twilio's
HMAC-SHA1 of ``AUTHGW_PUBLIC_URL`` + the request's path and query, and the form parameters,
keyed with the auth token, or with any token of ``AUTHGW_TWILIO_AUTH_TOKEN``'s list while the
account's token is being rotated. The Host header is never used: behind a TLS-terminating proxy or a
load balancer the application sees another URL than the one Twilio signed. A missing or bad
signature is 403 before anything is read or written.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, current_app, request
from twilio.request_validator import RequestValidator

from authgw.errors import ApiError
from authgw.webhooks.calls import Calls

bp = Blueprint("twilio", __name__, url_prefix="/webhooks/twilio")

FORM = "application/x-www-form-urlencoded"
TWIML = "text/xml"


@bp.record_once
def _install(state: Any) -> None:
    extensions = state.app.extensions
    extensions["authgw.calls"] = Calls(extensions["authgw"].domain, extensions.get("authgw.ratelimit"))


def _calls() -> Calls:
    calls: Calls = current_app.extensions["authgw.calls"]
    return calls


def signed_url(public_url: str) -> str:
    """The URL Twilio requested, as Twilio knows it: the public base + path + query."""
    query = request.query_string.decode("latin-1")
    return f"{public_url}{request.path}" + (f"?{query}" if query else "")


def signed(view: Callable[..., Response]) -> Callable[..., Response]:
    """Refuse (403, nothing read or written) any request Twilio did not sign."""

    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Response:
        settings = current_app.extensions["authgw"].settings
        signature = request.headers.get("X-Twilio-Signature", "")
        if (
            not settings.twilio_auth_tokens
            or not settings.public_url
            or not signature
            or request.mimetype != FORM
        ):
            raise ApiError("forbidden")
        url = signed_url(settings.public_url)
        if not any(
            RequestValidator(token).validate(url, request.form, signature)
            for token in settings.twilio_auth_tokens
        ):
            raise ApiError("forbidden")
        return view(*args, **kwargs)

    return checked


def twiml(text: str) -> Response:
    return Response(text, mimetype=TWIML)


@bp.post("/voice")
@signed
def voice() -> Response:
    return twiml(_calls().voice_call(request.form))


@bp.post("/confirm")
@signed
def confirm() -> Response:
    return twiml(_calls().keys_pressed(request.form, request.args.get("n")))


@bp.post("/lock")
@signed
def lock() -> Response:
    """The key pressed on a self-lock number (``authgw.webhooks.selflock``)."""
    return twiml(_calls().lock_line.keys_pressed(request.form))


@bp.post("/status")
@signed
def status() -> Response:
    _calls().status(request.form)
    return Response(status=204)
