"""The OpenAPI 3.1 document of ``/v1``, generated from the models that validate requests."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

from authgw.challenges import models
from authgw.identifiers import CUSTOMER_ID_PATTERN
from authgw.outbound import models as webhook_models

ERRORS = {
    "401": "Missing or wrong API key",
    "403": "An operator-only call by a corebank client (AUTHGW_OPERATORS)",
    "404": "Not found",
    "409": "Conflict",
    "410": "Expired",
    "413": "Body over 16 KiB",
    "422": "Invalid request",
    "423": "Customer locked",
    "429": "Rate limited: see Retry-After",
    "503": "Store unavailable (fail closed)",
}
RETRY_AFTER = {
    "description": "Seconds to wait before trying again",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
REQUEST_ID = {
    "description": "The request id: the caller's X-Request-Id, or a new one",
    "schema": {"type": "string"},
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _op(
    summary: str,
    ok: str,
    schema: type[BaseModel] | None,
    body: type[BaseModel] | None,
    errors: tuple[str, ...],
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if schema is None:
        responses[ok] = {"description": summary}
    else:
        responses[ok] = {"description": summary, "content": {"application/json": {"schema": _ref(schema)}}}
    for status in ("401", *errors, "413", "429", "503"):
        responses[status] = {
            "description": ERRORS[status],
            "content": {"application/problem+json": {"schema": _ref(models.Problem)}},
        }
        if status in ("429", "503"):
            responses[status]["headers"] = {"Retry-After": RETRY_AFTER}
    for response in responses.values():
        response.setdefault("headers", {})["X-Request-Id"] = REQUEST_ID
    op: dict[str, Any] = {"summary": summary, "responses": responses, "security": [{"bearer": []}]}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, pattern: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": pattern}}


@cache
def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (
        models.CustomerPut,
        models.ChallengeCreate,
        models.TransferPayee,
        models.PayeasyPayee,
        models.CodeBody,
        models.ConsumeBody,
        models.LockBody,
        models.LimitsPut,
        models.Limits,
        models.Customer,
        models.TotpEnrolment,
        models.Challenge,
        models.Events,
        models.Problem,
        webhook_models.WebhookPut,
        webhook_models.Webhook,
        webhook_models.Webhooks,
        webhook_models.Secret,
        webhook_models.Delivery,
        webhook_models.Deliveries,
    ):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[model.__name__] = schema
    cust = [_path_param("customer_id", CUSTOMER_ID_PATTERN)]
    chal = [_path_param("challenge_id", r"^ch_[0-9a-z]+$")]
    limit = {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    }
    before = {
        "name": "before",
        "in": "query",
        "required": False,
        "description": "An event id: the page of events older than that one",
        "schema": {"type": "string", "pattern": r"^[0-9]{1,20}-[0-9]{1,20}$"},
    }
    wait = {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": "Seconds to wait while the challenge is pending (long-poll)",
        "schema": {"type": "integer", "minimum": 1, "maximum": 30},
    }
    idem = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    }
    c, ch = models.Customer, models.Challenge
    paths = {
        "/v1/customers/{customer_id}": {
            "put": _op(
                "Register a customer or replace their phones", "200", c, models.CustomerPut, ("422",), cust
            ),
            "get": _op("Read a customer", "200", c, None, ("404",), cust),
            "delete": _op("Delete a customer (operators)", "204", None, None, ("403", "404"), cust),
        },
        "/v1/customers/{customer_id}/totp": {
            "post": _op("Start TOTP enrolment", "201", models.TotpEnrolment, None, ("404",), cust),
            "delete": _op("Remove TOTP (operators)", "204", None, None, ("403", "404"), cust),
        },
        "/v1/customers/{customer_id}/totp/confirm": {
            "post": _op(
                "Confirm TOTP enrolment", "200", c, models.CodeBody, ("404", "409", "422", "423"), cust
            ),
        },
        "/v1/customers/{customer_id}/unlock": {
            "post": _op("Unlock a customer (operators)", "200", c, None, ("403", "404"), cust),
        },
        "/v1/customers/{customer_id}/lock": {
            "post": _op(
                "Lock a customer (operator): cancels their open challenges",
                "200",
                c,
                models.LockBody,
                ("404", "422"),
                cust,
            ),
        },
        "/v1/customers/{customer_id}/limits": {
            "put": _op(
                "Change a customer's limits: a raise waits, a lowering applies at once",
                "200",
                models.Limits,
                models.LimitsPut,
                ("404", "422"),
                cust,
            ),
            "get": _op("A customer's limits and today's usage", "200", models.Limits, None, ("404",), cust),
        },
        "/v1/customers/{customer_id}/events": {
            "get": _op(
                "The customer's events, newest first",
                "200",
                models.Events,
                None,
                ("404", "422"),
                [*cust, limit, before],
            ),
        },
        "/v1/challenges": {
            "post": _op(
                "Create a challenge", "201", ch, models.ChallengeCreate, ("404", "409", "422", "423"), [idem]
            ),
        },
        "/v1/challenges/{challenge_id}": {
            "get": _op(
                "Read a challenge; with wait, once it is no longer pending or after wait seconds",
                "200",
                ch,
                None,
                ("404", "422"),
                [*chal, wait],
            ),
        },
        "/v1/challenges/{challenge_id}/totp": {
            "post": _op(
                "Verify a challenge with a TOTP code",
                "200",
                ch,
                models.CodeBody,
                ("404", "409", "410", "422", "423"),
                chal,
            ),
        },
        "/v1/challenges/{challenge_id}/consume": {
            "post": _op(
                "Consume a verified challenge",
                "200",
                ch,
                models.ConsumeBody,
                ("404", "409", "410", "422", "423"),
                chal,
            ),
        },
        "/v1/challenges/{challenge_id}/cancel": {
            "post": _op("Cancel a pending challenge", "200", ch, None, ("404", "409"), chal),
        },
    }
    paths.update(_webhook_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "authgw",
            "version": "1",
            "description": "Phone-callback and TOTP authentication gateway for fund moves.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _webhook_paths() -> dict[str, Any]:
    """``/v1/webhooks``: every call is an operator's (403 for a corebank client)."""
    wm = webhook_models
    name = [_path_param("name", CUSTOMER_ID_PATTERN)]
    delivery = [*name, _path_param("delivery_id", r"^dl_[a-z2-7]{26}$")]
    deliveries = [
        *name,
        {
            "name": "state",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["pending", "delivered", "failed"]},
        },
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
        },
    ]
    put = _op(
        "Create (201, with its secret shown this once) or update (200) an endpoint (operators)",
        "200",
        wm.Webhook,
        wm.WebhookPut,
        ("403", "422"),
        name,
    )
    put["responses"]["201"] = {
        "description": "Created: the endpoint with its secret, shown this once",
        "content": {"application/json": {"schema": _ref(wm.Webhook)}},
        "headers": {"X-Request-Id": REQUEST_ID},
    }
    return {
        "/v1/webhooks": {
            "get": _op("The webhook endpoints (operators)", "200", wm.Webhooks, None, ("403",)),
        },
        "/v1/webhooks/{name}": {
            "put": put,
            "get": _op(
                "Read an endpoint, with lag_seconds (operators)",
                "200",
                wm.Webhook,
                None,
                ("403", "404"),
                name,
            ),
            "delete": _op(
                "Delete an endpoint and its deliveries (operators)", "204", None, None, ("403", "404"), name
            ),
        },
        "/v1/webhooks/{name}/rotate-secret": {
            "post": _op(
                "Rotate the secret: the old one signs too for 24 hours (operators)",
                "200",
                wm.Secret,
                None,
                ("403", "404", "422"),
                name,
            ),
        },
        "/v1/webhooks/{name}/test": {
            "post": _op(
                "Queue a webhook.test event for the endpoint (operators)",
                "202",
                wm.Delivery,
                None,
                ("403", "404", "422"),
                name,
            ),
        },
        "/v1/webhooks/{name}/deliveries": {
            "get": _op(
                "The endpoint's deliveries, newest first (operators)",
                "200",
                wm.Deliveries,
                None,
                ("403", "404", "422"),
                deliveries,
            ),
        },
        "/v1/webhooks/{name}/deliveries/{delivery_id}/retry": {
            "post": _op(
                "Queue a failed delivery again (operators)",
                "202",
                wm.Delivery,
                None,
                ("403", "404", "409", "422"),
                delivery,
            ),
        },
    }
