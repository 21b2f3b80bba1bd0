"""Client authentication: ``Authorization: Bearer <key>`` against the configured keys.

Keys are held only as SHA-256 digests and the presented key's digest is compared with every
configured one in constant time, so neither timing nor memory gives a key away.
"""

from __future__ import annotations

import hashlib
import hmac

from authgw.errors import ApiError
from authgw.settings import ApiKey


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
