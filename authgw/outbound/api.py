"""The ``/v1/webhooks`` blueprint: the bank's endpoints and their deliveries (API.md Additions,
"Webhooks to the bank"). Every call is an operator's (``operator_only``): a corebank key gets
403 before anything is looked up. A secret appears in two answers only: the 201 that created
the endpoint and the 200 of a rotation. Every change (a PUT, a delete, a rotation, a retry, a
test) is audited on the store's webhook audit stream with the operator's client name, by the
script that makes it (``Webhooks.audit``; the console's webhooks page shows it)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, request

from authgw.auth import operator_only
from authgw.challenges.api import require_client
from authgw.errors import ApiError, ValidationFailed
from authgw.http import as_json, json_body, whole_number
from authgw.identifiers import is_customer_id
from authgw.outbound import models
from authgw.outbound.deliveries import Webhooks

bp = Blueprint("webhooks_api", __name__, url_prefix="/v1/webhooks")
bp.before_request(require_client)

DELIVERIES_DEFAULT, DELIVERIES_MAX = 20, 100
STATES = ("pending", "delivered", "failed")
NAME_RULE = "must be 1-64 of A-Z a-z 0-9 . _ -"
# An answer holding a secret is kept by no cache between the gateway and the operator.
NO_STORE = {"Cache-Control": "no-store"}


def webhooks() -> Webhooks:
    return current_app.extensions["authgw.webhooks"]  # type: ignore[no-any-return]


def known(name: str) -> str:
    """A path's endpoint name; one that could never exist is simply not found."""
    if not is_customer_id(name):
        raise ApiError("webhook_not_found")
    return name


@bp.get("")
@operator_only
def list_webhooks() -> Response:
    return as_json({"webhooks": webhooks().listed()})


@bp.put("/<name>")
@operator_only
def put_webhook(name: str) -> Response:
    errors = [] if is_customer_id(name) else [{"field": "name", "message": NAME_RULE}]
    body = None
    allow_http = current_app.extensions["authgw"].settings.webhook_allow_http
    try:
        body = models.parse_put(json_body(), allow_http=allow_http)
    except ValidationFailed as exc:
        errors.extend(exc.errors)
    if errors or body is None:
        raise ValidationFailed(errors)
    endpoint, secret = webhooks().put(name, body, g.client)
    if secret is None:
        return as_json(endpoint)
    return as_json({**endpoint, "secret": secret}, 201, NO_STORE)


@bp.get("/<name>")
@operator_only
def get_webhook(name: str) -> Response:
    return as_json(webhooks().get(known(name)))


@bp.delete("/<name>")
@operator_only
def delete_webhook(name: str) -> Response:
    webhooks().delete(known(name), g.client)
    return Response(status=204)


@bp.post("/<name>/rotate-secret")
@operator_only
def rotate_secret(name: str) -> Response:
    _empty_body()
    return as_json({"secret": webhooks().rotate(known(name), g.client)}, headers=NO_STORE)


@bp.get("/<name>/deliveries")
@operator_only
def deliveries(name: str) -> Response:
    name = known(name)
    errors = []
    state = request.args.get("state")
    if state is not None and state not in STATES:
        errors.append({"field": "state", "message": "must be pending, delivered or failed"})
    raw = request.args.get("limit")
    limit = DELIVERIES_DEFAULT if raw is None else whole_number(raw, 1, DELIVERIES_MAX)
    if limit is None:
        errors.append({"field": "limit", "message": f"must be a whole number from 1 to {DELIVERIES_MAX}"})
    if errors or limit is None:
        raise ValidationFailed(errors)
    return as_json({"deliveries": webhooks().deliveries(name, state, limit)})


@bp.post("/<name>/deliveries/<delivery_id>/retry")
@operator_only
def retry_delivery(name: str, delivery_id: str) -> Response:
    name = known(name)
    _empty_body()
    return as_json(webhooks().retry(name, delivery_id, g.client), 202)


@bp.post("/<name>/test")
@operator_only
def send_test(name: str) -> Response:
    name = known(name)
    _empty_body()
    return as_json(webhooks().test(name, g.client), 202)


def _empty_body() -> None:
    """Calls that take no body accept none, or an empty object."""
    if json_body(optional=True):
        raise ValidationFailed([{"field": "body", "message": "this call takes no fields"}])
