"""The demo (``/demo/``, only in development mode): a bank's transfer screen and a phone.

The bank screen creates a transfer challenge for a demo customer and shows the designated
number to call; the phone plays the customer's (or a stranger's) phone: it dials that number
and presses keys. Each call goes through the real signed webhook path exactly as
``authgw simulate-call`` does (``authgw.webhooks.simulate``: signed with the current Twilio
token over the public URL, posted over HTTP to the gateway), and the bank screen polls the
challenge until it is no longer pending. Production code never calls Twilio.
"""

from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError, validate_csrf
from werkzeug.exceptions import HTTPException
from wtforms.validators import ValidationError

from authgw.challenges import models
from authgw.challenges.phones import display
from authgw.console.views import CHALLENGE_STATUSES, status_label
from authgw.errors import ApiError, SimulationError
from authgw.webhooks.simulate import VOICE_PATH, as_twilio_sends, call_parameters, post

if TYPE_CHECKING:
    from authgw.app import Gateway

bp = Blueprint("demo", __name__, url_prefix="/demo", template_folder="templates")

DEMO_CLIENT = "demo"  # the author the demo's writes name, and the creator of its challenges
DEMO_CUSTOMER = "demo-customer"
REGISTERED = "+819012345678"
STRANGER = "+818099990000"
PAYEE = {
    "bank_code": "0168",
    "branch_code": "001",
    "account_type": "ordinary",
    "account_number": "1234567",
    "name": "ﾔﾏﾀﾞ ﾀﾛｳ",
}
CALL_SID = re.compile(r"^CA[0-9a-f]{32}$")
DIGITS = re.compile(r"^[0-9*#]{1,12}$")
WEBHOOKS = "/webhooks/twilio/"


def gateway() -> Gateway:
    return current_app.extensions["authgw"]  # type: ignore[no-any-return]


@bp.before_request
def guard() -> None:
    if request.method == "POST":
        try:
            validate_csrf(request.headers.get("X-CSRFToken"))
        except (ValidationError, CSRFError):
            abort(400, "The request's CSRF token is missing or not valid")


@bp.get("/")
def page() -> str:
    return render_template(
        "demo.html",
        customer_id=DEMO_CUSTOMER,
        registered=display(REGISTERED),
        stranger=display(STRANGER),
        payee=PAYEE,
        status_labels={s: status_label(s) for s in CHALLENGE_STATUSES},
    )


@bp.post("/transfers")
def create_transfer() -> Response | tuple[Response, int]:
    body = request.get_json(silent=True) or {}
    amount = body.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or not 1 <= amount <= 10_000_000:
        return jsonify({"error": "amount must be a whole number of yen from 1 to 10,000,000"}), 422
    gw = gateway()
    # The demo customer is (re)registered with its phone each time: idempotent, and it undoes
    # whatever an operator did to its phones meanwhile.
    gw.customers.put(DEMO_CUSTOMER, models.parse(models.CustomerPut, {"phones": [REGISTERED]}), DEMO_CLIENT)
    transfer = {
        "customer_id": DEMO_CUSTOMER,
        "kind": "transfer",
        "amount": amount,
        "currency": "JPY",
        "payee": PAYEE,
    }
    try:
        challenge, _new = gw.challenges.create(DEMO_CLIENT, models.parse_new_challenge(transfer, None))
    except ApiError as exc:
        return jsonify({"error": exc.code, "detail": exc.detail}), exc.status
    return jsonify(challenge), 201


@bp.get("/transfers/<challenge_id>")
def read_transfer(challenge_id: str) -> Response | tuple[Response, int]:
    try:
        return jsonify(gateway().challenges.get(DEMO_CLIENT, challenge_id))
    except ApiError as exc:
        return jsonify({"error": exc.code}), exc.status


def heard(twiml: str) -> dict[str, Any]:
    """What the caller hears (each ``<Say>``'s text) and where pressed keys go (the
    ``<Gather>``'s action), from the TwiML the gateway answered. A call that asks for keys is
    heard up to its first ``<Gather>``: what follows it (the question once more, goodbye) is
    only heard by a caller who presses nothing."""
    try:
        root = ET.fromstring(twiml)  # noqa: S314 (this gateway's own TwiML; expat refuses entity bombs)
    except ET.ParseError:
        return {"say": [], "gather": None, "ended": True}
    gather = root.find("Gather")
    said: list[str] = []
    for verb in root:
        says = [verb] if verb.tag == "Say" else list(verb.iter("Say")) if verb is gather else []
        said.extend(text for say in says if (text := (say.text or "").strip()))
        if verb is gather:
            break
    return {
        "say": said,
        "gather": gather.get("action") if gather is not None else None,
        "ended": gather is None,
    }


@bp.post("/calls")
def call() -> Response | tuple[Response, int]:
    """Dial (``{"from": "registered"|"stranger", "to": number}``) or press keys on the call in
    progress (``{..., "call_sid", "action", "digits"}``): signed and posted as Twilio would."""
    body = request.get_json(silent=True) or {}
    settings = gateway().settings
    caller = {"registered": REGISTERED, "stranger": STRANGER}.get(str(body.get("from")))
    to = body.get("to")
    dialable = settings.callback_numbers + settings.lock_numbers
    if caller is None or not isinstance(to, str) or to not in dialable:
        return jsonify({"error": "from must be registered or stranger, to a designated number"}), 422
    params = call_parameters(
        "CA" + secrets.token_hex(16),
        as_twilio_sends(caller, settings.default_region),
        as_twilio_sends(to, settings.default_region),
    )
    target = settings.public_url + VOICE_PATH
    digits, sid, action = body.get("digits"), body.get("call_sid"), body.get("action")
    if digits is not None:
        # Keys go where the call's <Gather> said, as Twilio resolves it; and only to this
        # gateway's webhooks: the demo never posts anywhere else.
        pressed = urljoin(target, action) if isinstance(action, str) else ""
        if not (
            isinstance(digits, str)
            and DIGITS.fullmatch(digits)
            and isinstance(sid, str)
            and CALL_SID.fullmatch(sid)
            and pressed.startswith(settings.public_url + WEBHOOKS)
        ):
            return jsonify({"error": "digits, call_sid and action must come from the call"}), 422
        params.update(CallSid=sid, CallStatus="in-progress", Digits=digits)
        target = pressed
    token = settings.twilio_auth_token
    try:
        answer = post(settings.public_url, settings.public_url, target, params, token)
    except SimulationError as exc:
        return jsonify({"error": "call_failed", "detail": str(exc)}), 502
    return jsonify({"call_sid": params["CallSid"], **heard(answer)})


@bp.errorhandler(400)
def refused(exc: HTTPException) -> tuple[Response, int]:
    return jsonify({"error": "csrf_refused", "detail": exc.description}), 400
