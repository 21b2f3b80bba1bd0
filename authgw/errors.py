"""Every error the gateway raises on purpose, and its problem+json form.

    AuthgwError                      base; carries the contract's ``code`` and HTTP ``status``
    ├── ConfigError                  a bad or missing setting; the gateway does not start
    ├── StoreUnavailable             Redis cannot be reached or answered wrongly (503, fail closed)
    │   └── StoreNotDurable          the write ran but too few replicas confirmed it (``WAIT``)
    ├── PhoneError                   why a number cannot be registered (also a ``ValueError``);
    │                                caught by the domain and reported as ``InvalidPhone``
    ├── SimulationError              ``authgw simulate-call``: the gateway did not answer 2xx
    └── ApiError                     a refusal the client can act on (4xx)
        ├── ValidationFailed         422 validation_error, with field errors
        ├── InvalidPhone             422 invalid_phone
        ├── RateLimited              429 rate_limited, with ``retry_after`` seconds
        └── (plain ApiError)         any other contract code, built with ``ApiError(code)``

A refusal is a value at the domain level (``Outcome`` codes from the Lua scripts) and becomes
an ``ApiError`` at one place, ``authgw.challenges.outcomes``. The HTTP edge turns any
``AuthgwError`` into RFC 9457 problem+json; nothing else leaves the process.

Outside the tree on purpose: ``authgw.client.Problem`` and ``authgw.client.InvalidWebhook``, what
the bank's side of the wire raises for a problem+json answer and for a delivery whose signature
does not hold (the client imports nothing of the gateway: the standard library, and
``standardwebhooks`` only inside ``verify_webhook``).
"""

from __future__ import annotations

from typing import Any

# The contract's codes with their statuses and titles. Codes marked "ours" are not named in
# API.md, which gives those statuses without a code; they follow the same shape.
PROBLEMS: dict[str, tuple[int, str]] = {
    "validation_error": (422, "The request is not valid"),
    "invalid_phone": (422, "A phone number is not valid"),
    "invalid_code": (422, "The code is not valid"),
    "method_unavailable": (422, "The method is not available"),
    "customer_not_found": (404, "No such customer"),
    "challenge_not_found": (404, "No such challenge"),
    "no_pending_enrolment": (409, "No TOTP enrolment is pending"),
    "idempotency_conflict": (409, "The idempotency key was used with another request"),
    "challenge_not_pending": (409, "The challenge is not pending"),
    "challenge_not_verified": (409, "The challenge is not verified"),
    "digest_mismatch": (409, "The transaction digest does not match"),
    "already_consumed": (409, "The challenge was already consumed"),
    "challenge_expired": (410, "The challenge has expired"),
    "customer_locked": (423, "The customer is locked"),
    "limit_exceeded": (422, "The amount is over a limit"),
    "store_unavailable": (503, "The store is unavailable"),
    # Webhooks to the bank (API.md Additions).
    "webhook_not_found": (404, "No such webhook endpoint"),
    "delivery_not_found": (404, "No such delivery"),
    "delivery_not_failed": (409, "The delivery has not failed"),
    # ours
    "unauthorized": (401, "Missing or wrong API key"),
    "forbidden": (403, "The request is not allowed"),
    "not_found": (404, "No such resource"),
    "method_not_allowed": (405, "Method not allowed"),
    "payload_too_large": (413, "The request body is larger than 16 KiB"),
    "unsupported_media_type": (415, "Unsupported media type"),
    "rate_limited": (429, "Too many requests"),
    "internal_error": (500, "Internal error"),
}


class AuthgwError(Exception):
    code = "internal_error"

    @property
    def status(self) -> int:
        return PROBLEMS[self.code][0]


class ConfigError(AuthgwError):
    """A setting is wrong or missing; ``name`` is the variable an operator must fix."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name} {message}")
        self.name = name


class StoreUnavailable(AuthgwError):
    code = "store_unavailable"


class StoreNotDurable(StoreUnavailable):
    """A transition ran on the primary but too few replicas confirmed it in time (``WAIT``)."""


class PhoneError(AuthgwError, ValueError):
    """Why a number cannot be registered, in words fit for a problem's field message."""


class SimulationError(AuthgwError):
    """The gateway could not be reached or did not answer 2xx."""


class ApiError(AuthgwError):
    """A refusal with a contract code, an optional detail, field errors and extra members."""

    def __init__(
        self,
        code: str,
        detail: str | None = None,
        errors: list[dict[str, str]] | None = None,
        **extra: Any,
    ) -> None:
        if code not in PROBLEMS:
            raise ValueError(f"unknown problem code {code!r}")
        super().__init__(detail or PROBLEMS[code][1])
        self.code = code
        self.detail = detail
        self.errors = errors or []
        self.extra = extra


class ValidationFailed(ApiError):
    def __init__(self, errors: list[dict[str, str]], detail: str | None = None) -> None:
        super().__init__("validation_error", detail or "The request is not valid", errors)


class InvalidPhone(ApiError):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("invalid_phone", "A phone number is not valid", errors)


class RateLimited(ApiError):
    """429 ``rate_limited``; ``retry_after`` is whole seconds until the window ends."""

    def __init__(self, kind: str, retry_after: int) -> None:
        super().__init__("rate_limited", f"Too many requests for this {kind}; retry later")
        self.kind = kind
        self.retry_after = retry_after


def problem(
    code: str, detail: str | None = None, errors: list[dict[str, str]] | None = None, **extra: Any
) -> dict[str, Any]:
    """The RFC 9457 body for ``code``."""
    status, title = PROBLEMS[code]
    body: dict[str, Any] = {
        "type": f"urn:authgw:problem:{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail or title,
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body
