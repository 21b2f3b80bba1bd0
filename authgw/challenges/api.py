"""The ``/v1`` blueprint for core banking: customers and challenges (API.md)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, request

from authgw.auth import authenticate, operator_only, roles_of
from authgw.challenges import models
from authgw.challenges.customers import Customers
from authgw.challenges.lifecycle import Challenges
from authgw.challenges.limits import Limits
from authgw.errors import ApiError, ValidationFailed
from authgw.http import as_json, json_body, whole_number
from authgw.identifiers import is_customer_id, trail_id_of
from authgw.ratelimit import reads_first

bp = Blueprint("v1", __name__, url_prefix="/v1")

EVENTS_DEFAULT, EVENTS_MAX = 20, 100
LONG_POLL_MAX = 30  # seconds a ``GET /v1/challenges/{id}?wait=N`` may wait


def customers() -> Customers:
    return current_app.extensions["authgw"].customers  # type: ignore[no-any-return]


def challenges() -> Challenges:
    return current_app.extensions["authgw"].challenges  # type: ignore[no-any-return]


def limits() -> Limits:
    return Limits(current_app.extensions["authgw"].domain)


@bp.before_request
def require_client() -> None:
    settings = current_app.extensions["authgw"].settings
    g.client = authenticate(request.headers.get("Authorization"), settings.api_keys)
    g.roles = roles_of(g.client, settings)


def known_customer(customer_id: str) -> str:
    """A path's customer id; one that could never exist is simply not found."""
    if not is_customer_id(customer_id):
        raise ApiError("customer_not_found")
    return customer_id


# -- customers ----------------------------------------------------------------------------


@bp.put("/customers/<customer_id>")
def put_customer(customer_id: str) -> Response:
    body = json_body()
    if not is_customer_id(customer_id):
        raise ApiError(
            "validation_error",
            errors=[{"field": "customer_id", "message": "must be 1-64 of A-Z a-z 0-9 . _ -"}],
        )
    customer, _created = customers().put(customer_id, models.parse(models.CustomerPut, body), g.client)
    return as_json(customer)


@bp.get("/customers/<customer_id>")
@reads_first
def get_customer(customer_id: str) -> Response:
    return as_json(customers().get(known_customer(customer_id)))


@bp.delete("/customers/<customer_id>")
@operator_only
def delete_customer(customer_id: str) -> Response:
    customers().delete(known_customer(customer_id), g.client)
    return Response(status=204)


@bp.post("/customers/<customer_id>/totp")
def enrol_totp(customer_id: str) -> Response:
    _empty_body()
    return as_json(customers().enrol_totp(known_customer(customer_id), g.client), 201)


@bp.post("/customers/<customer_id>/totp/confirm")
def confirm_totp(customer_id: str) -> Response:
    customer_id = known_customer(customer_id)
    code = models.parse(models.CodeBody, json_body()).code
    return as_json(customers().confirm_totp(customer_id, code, g.client))


@bp.delete("/customers/<customer_id>/totp")
@operator_only
def remove_totp(customer_id: str) -> Response:
    customers().remove_totp(known_customer(customer_id), g.client)
    return Response(status=204)


@bp.post("/customers/<customer_id>/unlock")
@operator_only
def unlock(customer_id: str) -> Response:
    _empty_body()
    return as_json(customers().unlock(known_customer(customer_id), g.client))


@bp.post("/customers/<customer_id>/lock")
@operator_only
def lock(customer_id: str) -> Response:
    body = models.parse(models.LockBody, json_body(optional=True))
    return as_json(customers().lock(known_customer(customer_id), g.client, body.note or ""))


@bp.get("/customers/<customer_id>/events")
def events(customer_id: str) -> Response:
    raw = request.args.get("limit")
    limit = EVENTS_DEFAULT if raw is None else whole_number(raw, 1, EVENTS_MAX)
    if limit is None:
        raise ValidationFailed(
            [{"field": "limit", "message": f"must be a whole number from 1 to {EVENTS_MAX}"}]
        )
    customer_id = known_customer(customer_id)
    before = request.args.get("before")
    if before is not None and trail_id_of(customer_id, before) is None:
        raise ValidationFailed(
            [{"field": "before", "message": "must be the id of one of this customer's events"}]
        )
    return as_json({"events": customers().events(customer_id, limit, before)})


@bp.put("/customers/<customer_id>/limits")
def put_limits(customer_id: str) -> Response:
    return as_json(limits().put(known_customer(customer_id), json_body(), g.client))


@bp.get("/customers/<customer_id>/limits")
@reads_first
def get_limits(customer_id: str) -> Response:
    return as_json(limits().get(known_customer(customer_id)))


# -- challenges ---------------------------------------------------------------------------


@bp.post("/challenges")
def create_challenge() -> Response:
    new = models.parse_new_challenge(json_body(), request.headers.get("Idempotency-Key"))
    challenge, _new = challenges().create(g.client, new)
    return as_json(challenge, 201)


@bp.get("/challenges/<challenge_id>")
@reads_first
def get_challenge(challenge_id: str) -> Response:
    raw = request.args.get("wait")
    wait = 0 if raw is None else whole_number(raw, 1, LONG_POLL_MAX)
    if wait is None:
        raise ValidationFailed(
            [{"field": "wait", "message": f"must be a whole number of seconds from 1 to {LONG_POLL_MAX}"}]
        )
    return as_json(challenges().get(g.client, challenge_id, wait))


@bp.post("/challenges/<challenge_id>/totp")
@reads_first
def verify_totp(challenge_id: str) -> Response:
    code = models.parse(models.CodeBody, json_body()).code
    return as_json(challenges().verify_totp(g.client, challenge_id, code))


@bp.post("/challenges/<challenge_id>/consume")
def consume(challenge_id: str) -> Response:
    digest = models.parse(models.ConsumeBody, json_body()).transaction_digest
    return as_json(challenges().consume(g.client, challenge_id, digest))


@bp.post("/challenges/<challenge_id>/cancel")
def cancel(challenge_id: str) -> Response:
    _empty_body()
    return as_json(challenges().cancel(g.client, challenge_id))


def _empty_body() -> None:
    """Calls that take no body accept none, or an empty object."""
    if json_body(optional=True):
        raise ValidationFailed([{"field": "body", "message": "this call takes no fields"}])
