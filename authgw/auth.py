"""Client authentication and roles.

Authentication: ``Authorization: Bearer <key>`` against the configured keys. Keys are held
only as SHA-256 digests and the presented key's digest is compared with every configured one
in constant time, so neither timing nor memory gives a key away.

Roles (API.md Additions, "Roles"): ``AUTHGW_OPERATORS`` names the clients that are bank
operators; every other client is ``corebank``. A view marked ``@operator_only`` is refused to
a corebank client with 403 ``forbidden`` before it runs; that decorator is the one place the
rule is enforced. With no operators named, roles are off: every client has both roles (v1).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g

from authgw.errors import ApiError
from authgw.settings import ApiKey, Settings

OPERATOR, COREBANK = "operator", "corebank"
F = TypeVar("F", bound=Callable[..., Any])


def authenticate(header: str | None, keys: tuple[ApiKey, ...]) -> str:
    """The client's name, or ``ApiError('unauthorized')``."""
    if not header:
        raise ApiError("unauthorized", "The Authorization header is missing")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError("unauthorized", "Expected Authorization: Bearer <api key>")
    presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
    client = None
    for key in keys:
        if hmac.compare_digest(presented, key.digest):
            client = key.client
    if client is None:
        raise ApiError("unauthorized", "The API key is not valid")
    return client


def roles_of(client: str, settings: Settings) -> frozenset[str]:
    """The client's roles: both while roles are off, else operator or corebank."""
    if not settings.operators:
        return frozenset({OPERATOR, COREBANK})
    return frozenset({OPERATOR if client in settings.operators else COREBANK})


def sees_every_client(client: str, settings: Settings) -> bool:
    """Whether the client reads other clients' challenges: operators, once roles are on."""
    return bool(settings.operators) and client in settings.operators


def operator_only(view: F) -> F:
    """Refuse the view to a client without the operator role (``g.roles``, set at sign-in)."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if OPERATOR not in g.roles:
            raise ApiError("forbidden", "This call is for operator clients only (AUTHGW_OPERATORS)")
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]
