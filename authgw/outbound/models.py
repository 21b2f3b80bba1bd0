"""Request and response models of ``/v1/webhooks``: they validate input and generate the OpenAPI
document, as ``authgw.challenges.models`` does for the rest of ``/v1``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, ValidationInfo, field_validator

from authgw.challenges.models import Strict, parse
from authgw.outbound.endpoints import PATTERN_MAX, PATTERNS_MAX, URL_MAX, url_problem, valid_pattern

State = Literal["pending", "delivered", "failed"]


class WebhookPut(Strict):
    """``url``: absolute ``https://`` (``http://`` with AUTHGW_WEBHOOK_ALLOW_HTTP=1), no user
    name or password. ``events``: 1 to 50 patterns, each ``*``, ``prefix.*`` or an exact type."""

    url: Annotated[str, StringConstraints(min_length=1, max_length=URL_MAX)]
    events: list[Annotated[str, StringConstraints(min_length=1, max_length=PATTERN_MAX)]] = Field(
        min_length=1, max_length=PATTERNS_MAX
    )
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, url: str, info: ValidationInfo) -> str:
        allow_http = bool((info.context or {}).get("allow_http"))
        problem = url_problem(url, allow_http)
        if problem:
            raise ValueError(problem)
        return url

    @field_validator("events")
    @classmethod
    def _events(cls, events: list[str]) -> list[str]:
        for pattern in events:
            if not valid_pattern(pattern):
                raise ValueError(f"{pattern!r} is not '*', 'prefix.*' or an event type")
        if len(set(events)) != len(events):
            raise ValueError("lists a pattern twice")
        return events


def parse_put(data: Any, *, allow_http: bool) -> WebhookPut:
    """The body of a PUT, checked (``validation_error`` with field errors)."""
    return parse(WebhookPut, data, context={"allow_http": allow_http})


# Responses (documentation only: the views build these shapes as dicts).


class Webhook(BaseModel):
    name: str
    url: str
    events: list[str]
    enabled: bool
    created_at: str
    secret: str | None = Field(default=None, description="whsec_...: only in the 201 that created it")
    lag_seconds: float | None = Field(
        default=None, description="GET of one endpoint: age of its oldest pending delivery's event"
    )


class Webhooks(BaseModel):
    webhooks: list[Webhook]


class Secret(BaseModel):
    secret: str


class Delivery(BaseModel):
    id: str
    event_id: str
    type: str
    state: State
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: str | None
    created_at: str


class Deliveries(BaseModel):
    deliveries: list[Delivery]
