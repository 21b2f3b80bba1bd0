"""Request and response models of ``/v1``: they validate input and generate the OpenAPI document.

Types are strict (``"100"`` is no integer, ``1.0`` is no integer, ``true`` is no string) and
unknown fields are refused. ``parse(model, data)`` turns pydantic's errors into the contract's
``validation_error`` with one entry per field, named as a client would write it (``payee.name``,
``phones[0]``).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from babel.core import get_global
from babel.numbers import get_territory_currencies
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from authgw.errors import ValidationFailed
from authgw.identifiers import (
    CUSTOMER_ID_PATTERN,
    CUSTOMER_ID_RE,  # noqa: F401 (imported from here too)
)

PAYEE_MAX_BYTES = 2048


def _currencies_in_use() -> frozenset[str]:
    """ISO 4217 codes that are legal tender somewhere today, from CLDR through Babel (already
    here for the console): ``JPY``, ``USD``, ``EUR``…; not ``ABC``, not a withdrawn ``DEM`` or
    ``HRK``, not the test code ``XTS`` or a fund or metal code (``XAU``), none of which a fund
    move is made in."""
    territories = get_global("territory_currencies")
    return frozenset(c for t in territories for c in get_territory_currencies(t, tender=True))


CURRENCIES = _currencies_in_use()


def _currency(code: str) -> str:
    if code not in CURRENCIES:
        raise ValueError(f"{code!r} is not an ISO 4217 currency in use")
    return code


CustomerId = Annotated[str, StringConstraints(pattern=CUSTOMER_ID_PATTERN)]
Digits = Annotated[str, StringConstraints(pattern=r"^[0-9]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class CustomerPut(Strict):
    phones: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=5, description="1 to 5 phones, any format libphonenumber parses"
    )
    region: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = Field(
        default="JP", description="ISO 3166 region used to read national numbers"
    )


# Control (Cc) and format (Cf) characters, lone surrogates (Cs), and the line and paragraph
# separators (Zl, Zp): nothing a payee's name or an operator's note needs, and each has broken
# or could disguise what the caller hears and the bank records (a NUL or BEL made TwiML
# malformed; a bidi override reorders what is shown; U+2028 breaks a line in a log).
UNPRINTED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def printed_text(value: str) -> str:
    """``value`` unchanged, if it holds no control, format or lone surrogate character."""
    if any(unicodedata.category(c) in UNPRINTED_CATEGORIES for c in value):
        raise ValueError("must not contain control or format characters")
    return value


# On every string field of a payee, of both kinds.
Printed = AfterValidator(printed_text)


class TransferPayee(Strict):
    """振込: the receiving account."""

    bank_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$"), Printed]
    branch_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{3}$"), Printed]
    account_type: Literal["ordinary", "current", "savings", "other"]
    account_number: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,8}$"), Printed]
    name: Annotated[str, StringConstraints(min_length=1, max_length=100), Printed]


class PayeasyPayee(Strict):
    """ペイジー: the biller and the payment's numbers."""

    biller_number: Annotated[str, StringConstraints(pattern=r"^[0-9]{5}$"), Printed]
    customer_number: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$"), Printed]
    confirmation_number: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}$"), Printed]
    name: Annotated[str, StringConstraints(min_length=1, max_length=100), Printed]


PAYEES: dict[str, type[Strict]] = {"transfer": TransferPayee, "payeasy": PayeasyPayee}
Method = Literal["callback", "totp"]


class ChallengeCreate(Strict):
    customer_id: CustomerId
    kind: Literal["transfer", "payeasy"]
    amount: int = Field(ge=1, le=99_999_999_999)
    currency: Annotated[
        str,
        StringConstraints(pattern=r"^[A-Z]{3}$"),
        AfterValidator(_currency),
        Field(description="ISO 4217, in use", json_schema_extra={"enum": sorted(CURRENCIES)}),
    ] = "JPY"
    payee: dict[str, Any] = Field(description="TransferPayee or PayeasyPayee, by kind; ≤ 2 KiB")
    methods: list[Method] | None = Field(default=None, min_length=1, max_length=2)
    ttl_seconds: int = Field(default=300, ge=60, le=900)


class CodeBody(Strict):
    code: Annotated[str, StringConstraints(min_length=1, max_length=16)]


class ConsumeBody(Strict):
    # Any string: a digest of the wrong form is simply not the challenge's (digest_mismatch).
    transaction_digest: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class EmptyBody(Strict):
    pass


class LockBody(Strict):
    note: Annotated[str, StringConstraints(max_length=500), Printed] | None = None


LimitValue = Annotated[int, Field(ge=0, le=99_999_999_999)] | None


class KindLimits(Strict):
    """One kind's limits: an integer (0: no limit), null for the default, absent: unchanged."""

    per_transaction: LimitValue = None
    daily: LimitValue = None


class LimitsPut(Strict):
    transfer: KindLimits | None = None
    payeasy: KindLimits | None = None


# Responses (documentation only: the views build these shapes as dicts).


class Lock(BaseModel):
    reason: Literal["failures", "fraud_report", "self_lock", "operator"]
    at: str
    until: str | None = None
    by: str | None = None


class Customer(BaseModel):
    customer_id: str
    phones: list[str]
    totp: Literal["none", "pending", "active"]
    locked: bool
    failed_attempts: int
    lock: Lock | None = None
    phones_added_at: dict[str, str] = Field(default_factory=dict, description="when each phone was added")


class TotpEnrolment(BaseModel):
    secret: str
    otpauth_uri: str
    qr_svg: str


class Callback(BaseModel):
    number: str
    display: str
    code: str | None = None


class Challenge(BaseModel):
    id: str
    status: Literal["pending", "verified", "consumed", "failed", "denied", "cancelled", "expired"]
    customer_id: str
    kind: Literal["transfer", "payeasy"]
    amount: int
    currency: str
    methods: list[Method]
    callback: Callback | None = None
    transaction_digest: str
    attempts_left: int
    created_at: str
    expires_at: str
    verified_by: Literal["totp", "callback", "callback+totp"] | None = None
    verified_at: str | None = None
    new_payee: bool = False
    required: list[Method] | None = Field(default=None, description="methods that must all verify")


class KindLimitsInEffect(BaseModel):
    per_transaction: int
    daily: int
    used_today: int


class PendingRaise(BaseModel):
    kind: Literal["transfer", "payeasy"]
    field: Literal["per_transaction", "daily"]
    value: int
    effective_at: str


class Limits(BaseModel):
    transfer: KindLimitsInEffect
    payeasy: KindLimitsInEffect
    pending_raises: list[PendingRaise]


class Event(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str  # the stream entry id: unique, stable, the key for paging (``before``)
    at: str
    type: str
    customer_id: str
    challenge_id: str | None = None
    method: str | None = None
    by: str | None = None  # the API client that changed a factor
    added: list[str] | None = None  # customer.phones_changed: numbers masked but for 4 digits
    removed: list[str] | None = None


class Events(BaseModel):
    events: list[Event]


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    code: str
    detail: str
    errors: list[FieldError] | None = None


def field_name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


def field_errors(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[dict[str, str]]:
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        # Union members add their type name to the location; a client never wrote it.
        loc = tuple(p for p in err["loc"] if p not in ("list[literal['callback','totp']]",))
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        errors.append({"field": field_name(prefix + loc), "message": message})
    return errors


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, context: dict[str, Any] | None = None) -> M:
    """``data`` as ``model``; ``context`` goes to the model's validators."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ValidationFailed(field_errors(exc)) from None


def parse_challenge(data: Any) -> tuple[ChallengeCreate, dict[str, Any]]:
    """The request and its payee, checked against the payee model of its kind."""
    request = parse(ChallengeCreate, data)
    if isinstance(data, dict) and "methods" in data and data["methods"] is None:
        # Leaving methods out means "every usable way"; an explicit null is a wrong type.
        raise ValidationFailed([{"field": "methods", "message": "must be a list, not null"}])
    try:
        payee = PAYEES[request.kind].model_validate(request.payee).model_dump()
    except ValidationError as exc:
        raise ValidationFailed(field_errors(exc, ("payee",))) from None
    if len(canonical_json(payee)) > PAYEE_MAX_BYTES:
        raise ValidationFailed([{"field": "payee", "message": "is larger than 2 KiB"}])
    if request.methods is not None and len(set(request.methods)) != len(request.methods):
        raise ValidationFailed([{"field": "methods", "message": "lists a method twice"}])
    return request, payee


IDEMPOTENCY_KEY_MAX = 255


def idempotency_key(header: str | None) -> str | None:
    """The ``Idempotency-Key`` header as the contract allows it: 1-255 printable characters."""
    if header is None:
        return None
    if not 1 <= len(header) <= IDEMPOTENCY_KEY_MAX or not header.isprintable():
        raise ValidationFailed(
            [{"field": "Idempotency-Key", "message": "must be 1-255 printable characters"}]
        )
    return header


@dataclass(frozen=True)
class NewChallenge:
    """A challenge creation as the view parsed it: the request, its payee as validated, the
    hash of the body as sent (what an ``Idempotency-Key`` binds to) and the key, if any."""

    request: ChallengeCreate
    payee: dict[str, Any]
    body_hash: str
    idempotency_key: str | None


def parse_new_challenge(data: Any, idempotency_header: str | None) -> NewChallenge:
    request, payee = parse_challenge(data)
    key = idempotency_key(idempotency_header)
    return NewChallenge(request, payee, hashlib.sha256(canonical_json(data)).hexdigest(), key)


def canonical_json(value: Any) -> bytes:
    """Keys sorted at every level, no spaces, raw UTF-8: the digest's input (API.md)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
