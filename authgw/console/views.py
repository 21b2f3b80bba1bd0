"""The console's pages: sign-in, find a customer, the customer page and its actions, the
webhook endpoints with their failed deliveries and the retry of one."""

from __future__ import annotations

import hashlib
import unicodedata
import zoneinfo
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, get_args

import phonenumbers
from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response
from wtforms.validators import ValidationError

from authgw import scripts
from authgw.auth import OPERATOR, authenticate, roles_of
from authgw.challenges.models import Challenge
from authgw.challenges.phones import display, to_e164
from authgw.errors import ApiError, PhoneError
from authgw.identifiers import CUSTOMER_ID_RE, is_customer_id, trail_id_of
from authgw.outbound.deliveries import DELIVERY_ID
from authgw.settings import Settings

if TYPE_CHECKING:
    from authgw.outbound.deliveries import Webhooks

if TYPE_CHECKING:
    from authgw.app import Gateway

bp = Blueprint(
    "console", __name__, url_prefix="/console", template_folder="templates", static_folder="static"
)

IDLE_SECONDS = 15 * 60
PAGE = 20  # events per page of the trail
OPEN_SHOWN = 20  # open challenges shown at most
ACTIONS = ("lock", "unlock", "remove_totp")
NOTE_MAX = 500
FAILED_SHOWN = 50  # failed deliveries shown per endpoint at most
LATEST_SHOWN = 10  # latest deliveries (any state) shown per endpoint
LAG_WARNING_SECONDS = 60
AUDIT_SHOWN = 20  # operators' recent actions on the webhooks shown
PUBLIC_ENDPOINTS = ("console.sign_in", "console.sign_in_post", "console.language", "console.static")


def gateway() -> Gateway:
    return current_app.extensions["authgw"]  # type: ignore[no-any-return]


def webhooks() -> Webhooks:
    return current_app.extensions["authgw.webhooks"]  # type: ignore[no-any-return]


def fingerprint(key_digest: bytes) -> str:
    """What the session keeps of the key it was opened with (from the key's SHA-256 digest):
    enough to tell it is still configured, nothing to sign in with."""
    return hashlib.sha256(b"console:" + key_digest).hexdigest()[:32]


def _key_fingerprints(settings: Settings, client: str) -> set[str]:
    return {fingerprint(key.digest) for key in settings.api_keys if key.client == client}


@bp.app_context_processor
def template_globals() -> dict[str, Any]:
    from authgw.console import language

    return {
        "csrf_token": generate_csrf,
        "lang": language(),
        "operator": g.get("operator"),
        "reason_label": reason_label,
        "totp_label": totp_label,
        "state_label": state_label,
        "status_label": status_label,
        "action_label": action_label,
        "duration": duration,
        "local_time": local_time,
        "timezone": gateway().settings.timezone,
        "lag_warning": LAG_WARNING_SECONDS,
    }


def reason_label(reason: str) -> str:
    labels = {
        "failures": _("Too many wrong codes"),
        "fraud_report": _("Fraud report (9 on the phone)"),
        "self_lock": _("The customer's own lock (IB lock)"),
        "operator": _("An operator"),
    }
    return str(labels.get(reason, reason))


def totp_label(state: str) -> str:
    labels = {"active": _("Enrolled"), "pending": _("Enrolment started"), "none": _("Not enrolled")}
    return str(labels.get(state, state))


def state_label(state: str) -> str:
    labels = {"pending": _("Pending"), "delivered": _("Delivered"), "failed": _("Failed")}
    return str(labels.get(state, state))


CHALLENGE_STATUSES: tuple[str, ...] = get_args(Challenge.model_fields["status"].annotation)


def status_label(status: str) -> str:
    """A challenge's ``status`` as staff and customers read it."""
    labels = {
        "pending": _("Waiting for approval"),
        "verified": _("Approved"),
        "consumed": _("Approved and carried out"),
        "failed": _("Too many wrong codes"),
        "denied": _("Refused on the phone"),
        "expired": _("Expired"),
        "cancelled": _("Cancelled"),
    }
    return str(labels.get(status, status))


def action_label(action: str) -> str:
    """An operator's action on the webhooks (the audit stream's ``action``) as staff read it."""
    labels = {
        "webhook.created": _("Endpoint created"),
        "webhook.updated": _("Endpoint changed"),
        "webhook.deleted": _("Endpoint deleted"),
        "webhook.secret_rotated": _("Secret rotated"),
        "webhook.delivery_retried": _("Delivery retried"),
        "webhook.test_sent": _("Test event sent"),
    }
    return str(labels.get(action, action))


def local_time(iso: str | None) -> str:
    """A stored UTC time (``2026-12-02T04:34:54.387Z``) as the bank's staff read it, in the
    gateway's time zone (``AUTHGW_TIMEZONE``): ``2026-12-02 13:34:54 JST``. The exact time
    stays in the page, in ``<time datetime>``."""
    if not iso:
        return ""
    try:
        at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if at.tzinfo is None:
        return iso
    local = at.astimezone(zoneinfo.ZoneInfo(gateway().settings.timezone))
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname() or ''}".rstrip()


def duration(seconds: float) -> str:
    """A lag as a person reads it: ``12 s``, ``3 min 4 s``, ``2 h 5 min``."""
    whole = int(seconds)
    if whole < 60:
        return str(_("%(s)s s", s=whole))
    if whole < 3600:
        return str(_("%(m)s min %(s)s s", m=whole // 60, s=whole % 60))
    return str(_("%(h)s h %(m)s min", h=whole // 3600, m=whole % 3600 // 60))


@bp.before_request
def guard() -> Response | None:
    """CSRF on every POST; then the session: signed in, an operator, not idle."""
    if request.method == "POST":
        try:
            validate_csrf(request.form.get("csrf_token") or request.headers.get("X-CSRFToken"))
        except (ValidationError, CSRFError):
            abort(400, "The form's CSRF token is missing or not valid")
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    settings = gateway().settings
    client = session.get("client")
    now = gateway().domain.clock()
    if not client:
        return redirect(url_for("console.sign_in"))
    seen = float(session.get("seen") or 0)
    still_keyed = session.get("key") in _key_fingerprints(settings, client)
    if now - seen > IDLE_SECONDS or not still_keyed or OPERATOR not in roles_of(client, settings):
        lang = session.get("lang")
        session.clear()
        if lang:
            session["lang"] = lang
        return redirect(url_for("console.sign_in", expired=1))
    session["seen"] = now
    g.operator = client
    return None


# -- sign-in, sign-out, language ----------------------------------------------------------


@bp.get("/sign-in")
def sign_in() -> str:
    return render_template("sign_in.html", expired=bool(request.args.get("expired")), error=None)


@bp.post("/sign-in")
def sign_in_post() -> Response | tuple[str, int]:
    settings = gateway().settings
    key = request.form.get("api_key", "").strip()
    try:
        client = authenticate(f"Bearer {key}", settings.api_keys)
    except ApiError:
        return render_template("sign_in.html", expired=False, error=_("That API key is not valid.")), 401
    if OPERATOR not in roles_of(client, settings):
        message = _("This key belongs to a core-banking client; the console is for operators.")
        return render_template("sign_in.html", expired=False, error=message), 403
    lang = session.get("lang")
    session.clear()  # a new session: nothing carried over from before sign-in but the language
    if lang:
        session["lang"] = lang
    session.update(
        client=client,
        key=fingerprint(hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()),
        seen=gateway().domain.clock(),
    )
    return redirect(url_for("console.home"))


@bp.post("/sign-out")
def sign_out() -> Response:
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    return redirect(url_for("console.sign_in"))


@bp.post("/language")
def language() -> Response:
    from authgw.console import LANGUAGES

    chosen = request.form.get("lang", "")
    if chosen in LANGUAGES:
        session["lang"] = chosen
    target = request.form.get("next", "")
    # Only a path of the console or the demo: never an open redirect.
    if not target.startswith(("/console/", "/demo/")):
        target = url_for("console.home")
    return redirect(target)


# -- find a customer ----------------------------------------------------------------------


def phone_of(text: str, region: str) -> str | None:
    """The E.164 form of a number as a person types it (hyphens, spaces, full-width digits,
    +81), or None when it is no phone number."""
    try:
        number = to_e164(text, region)
    except PhoneError:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


LOCKS_LISTED = 20  # the overview lists the newest locks; the count covers every one


@bp.get("/")
def home() -> Response | str:
    query = unicodedata.normalize("NFKC", request.args.get("q", "")).strip()
    gw = gateway()
    if not query:
        stats = current_app.extensions["authgw_console_stats"]
        counts = stats.overview()
        locks = stats.locked_customers(LOCKS_LISTED) if counts["locked"] else []
        hooks = webhooks().listed_with_lag()
        return render_template("home.html", query="", matches=None, counts=counts, locks=locks, hooks=hooks)
    matches: list[str] = []
    e164 = phone_of(query, gw.settings.default_region)
    if e164:
        # The phone index is a hint: each customer it names is checked against their record.
        for customer_id in sorted(gw.store.read_command("smembers", gw.store.keys.phone_index(e164)))[:50]:
            try:
                customer = gw.customers.get(customer_id)
            except ApiError:
                continue
            if e164 in customer["phones"]:
                matches.append(customer_id)
    if CUSTOMER_ID_RE.fullmatch(query) and query not in matches:
        try:
            gw.customers.get(query)
            matches.append(query)
        except ApiError:
            pass
    if len(matches) == 1:
        return redirect(url_for("console.customer", customer_id=matches[0]))
    return render_template("home.html", query=query, matches=matches)


# -- the customer page --------------------------------------------------------------------


def masked(e164: str) -> str:
    """The national format with every digit but the last four hidden: ``•••-••••-5678``."""
    shown = display(e164)
    digits = sum(c.isdigit() for c in shown)
    out, seen = [], 0
    for c in shown:
        if c.isdigit():
            seen += 1
            out.append(c if seen > digits - 4 else "•")
        else:
            out.append(c)
    return "".join(out)


def trail(customer_id: str, before: str | None) -> list[dict[str, Any]]:
    """A page of the customer's events, newest first, older than ``before`` (an event id)."""
    return gateway().customers.events(customer_id, PAGE, before)


def open_challenges(customer_id: str) -> list[dict[str, Any]]:
    gw = gateway()
    keys = gw.store.keys.for_customer(customer_id)
    found = []
    for challenge_id in gw.store.read_command("zrange", keys.open, 0, OPEN_SHOWN - 1):
        try:
            found.append(gw.challenges.get(g.operator, challenge_id))
        except ApiError:
            continue  # ended in between, or another client's while roles are off
    return [c for c in found if c.get("status") in ("pending", "verified")]


def known(customer_id: str) -> dict[str, Any]:
    if not CUSTOMER_ID_RE.fullmatch(customer_id):
        abort(404)
    try:
        return dict(gateway().customers.get(customer_id))
    except ApiError as exc:
        if exc.code == "customer_not_found":
            abort(404)
        raise


def customer_page(customer_id: str, *, reveal: bool = False, notice: str | None = None) -> str:
    customer = known(customer_id)
    before = request.args.get("before")
    if before is not None and trail_id_of(customer_id, before) is None:
        before = None
    events = trail(customer_id, before)
    phones = [{"shown": display(p) if reveal else masked(p)} for p in customer["phones"]]
    return render_template(
        "customer.html",
        customer=customer,
        phones=phones,
        revealed=reveal,
        challenges=open_challenges(customer_id),
        events=events,
        before=before,
        older=events[-1]["id"] if len(events) == PAGE else None,
        notice=notice,
    )


@bp.get("/customers/<customer_id>")
def customer(customer_id: str) -> str:
    return customer_page(customer_id)


@bp.post("/customers/<customer_id>/phones")
def reveal_phones(customer_id: str) -> str:
    known(customer_id)
    gw = gateway()
    keys = gw.store.keys.for_customer(customer_id)
    scripts.phones_viewed(gw.store, keys, events_ms=gw.domain.maxlen, by=g.operator)
    return customer_page(customer_id, reveal=True)


def _note() -> str:
    note = request.values.get("note", "").strip()
    if len(note) > NOTE_MAX:
        abort(400, f"The note is longer than {NOTE_MAX} characters")
    return note


@bp.get("/customers/<customer_id>/confirm/<action>")
def confirm(customer_id: str, action: str) -> str:
    if action not in ACTIONS:
        abort(404)
    return render_template("confirm.html", customer=known(customer_id), action=action, note=_note())


@bp.post("/customers/<customer_id>/<action>")
def act(customer_id: str, action: str) -> Response:
    if action not in ACTIONS:
        abort(404)
    known(customer_id)
    customers = gateway().customers
    done: dict[str, Callable[[], Any]] = {
        "lock": lambda: customers.lock(customer_id, g.operator, _note()),
        "unlock": lambda: customers.unlock(customer_id, g.operator),
        "remove_totp": lambda: customers.remove_totp(customer_id, g.operator),
    }
    done[action]()
    return redirect(url_for("console.customer", customer_id=customer_id, done=action))


# -- webhooks -----------------------------------------------------------------------------


def refusal(message: str, status: int) -> tuple[str, int]:
    back = (url_for("console.webhooks_page"), _("Back to webhooks"))
    return render_template("error.html", message=message, back=back), status


def not_failed(delivery: dict[str, Any]) -> tuple[str, int]:
    message = _(
        "Delivery %(id)s is not failed (it is %(state)s): only a failed delivery can be retried.",
        id=delivery["id"],
        state=state_label(delivery["state"]),
    )
    return refusal(str(message), 409)


@bp.get("/webhooks")
def webhooks_page() -> str:
    """Every endpoint with its lag, its failed deliveries and its latest ones, newest first."""
    wh = webhooks()
    shown = []
    for endpoint in wh.listed_with_lag():
        try:
            failed = wh.deliveries(endpoint["name"], "failed", FAILED_SHOWN)
            latest = wh.deliveries(endpoint["name"], None, LATEST_SHOWN)
        except ApiError as exc:
            if exc.code == "webhook_not_found":
                continue  # deleted in between
            raise
        shown.append({**endpoint, "failed": failed, "latest": latest})
    retried = request.args.get("retried", "")
    if not DELIVERY_ID.fullmatch(retried):
        retried = ""  # only a delivery id is echoed in the notice
    actions = wh.audit(AUDIT_SHOWN)
    return render_template("webhooks.html", endpoints=shown, retried=retried, actions=actions)


class DeliveryGone(Exception):
    """A well-formed endpoint and delivery that are not there: deleted since the page was drawn
    (a mistyped address is a plain 404)."""


def delivery_of(name: str, delivery_id: str) -> dict[str, Any]:
    if not is_customer_id(name) or not DELIVERY_ID.fullmatch(delivery_id):
        abort(404)
    delivery = webhooks().delivery(name, delivery_id)
    if delivery is None:
        raise DeliveryGone
    return delivery


@bp.errorhandler(DeliveryGone)
def delivery_gone(_exc: DeliveryGone) -> tuple[str, int]:
    message = _(
        "This delivery is not there: its endpoint, or the delivery itself, may have been "
        "deleted since the page was shown. Nothing was retried."
    )
    return refusal(str(message), 404)


@bp.get("/webhooks/<name>/deliveries/<delivery_id>/confirm-retry")
def confirm_retry(name: str, delivery_id: str) -> str | tuple[str, int]:
    delivery = delivery_of(name, delivery_id)
    if delivery["state"] != "failed":
        return not_failed(delivery)
    return render_template("confirm_retry.html", name=name, delivery=delivery)


@bp.post("/webhooks/<name>/deliveries/<delivery_id>/retry")
def retry_delivery(name: str, delivery_id: str) -> Response | tuple[str, int]:
    delivery = delivery_of(name, delivery_id)
    try:
        webhooks().retry(name, delivery_id, g.operator)  # audited by the same script
    except ApiError as exc:
        if exc.code == "delivery_not_failed":
            return not_failed(webhooks().delivery(name, delivery_id) or delivery)
        if exc.code in ("delivery_not_found", "webhook_not_found"):
            raise DeliveryGone from exc
        raise
    return redirect(url_for("console.webhooks_page", retried=delivery_id, _anchor=f"webhook-{name}"))


@bp.errorhandler(400)
@bp.errorhandler(404)
def refused(exc: HTTPException) -> tuple[str, int]:
    """A refused form (no valid CSRF token, a bad note) or a page that is not there, as a
    page of the console rather than the API's problem+json."""
    status = exc.code or 400
    message = _("The page was not found.") if status == 404 else _("The form was refused. Please try again.")
    return render_template("error.html", message=message), status
