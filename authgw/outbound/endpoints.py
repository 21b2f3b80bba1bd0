"""What a webhook endpoint is: its name, URL and event patterns, and its signing secrets.

A pattern is ``*`` (every event), ``prefix.*`` (every type that starts with ``prefix.``) or an
exact type. A URL is absolute ``https://`` (``http://`` too when ``AUTHGW_WEBHOOK_ALLOW_HTTP``),
with a host, and with no user name or password in it: the URL is shown to every operator and
kept in logs, so a credential in it would not stay secret, and ``https://bank@elsewhere`` reads
as the bank's while it posts elsewhere. Loopback and private addresses are allowed: a bank's
core system is usually on its own network.

Secrets are ``whsec_`` + base64 of 24 random bytes (Standard Webhooks), sealed at rest with the
gateway's secret box, bound to the endpoint's name and incarnation (a new one for every
creation), so a ciphertext moved to another endpoint, or to one made again under the same name,
opens nowhere.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

# An exact event type: dotted words (``challenge.verified``, ``customer.limits_changed``).
EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.\*")
PATTERN_MAX = 100
PATTERNS_MAX = 50
URL_MAX = 2048
LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(rf"{LABEL}(\.{LABEL})*\.?")
# What a URL may hold (RFC 3986's unreserved, reserved and percent): no space, no control
# character, no backslash (parsers disagree on it), nothing outside ASCII.
URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix Standard Webhooks gives secrets)
SECRET_BYTES = 24
# How long the old secret keeps signing after a rotation.
ROTATION_GRACE_SECONDS = 24 * 3600


def valid_pattern(pattern: str) -> bool:
    return len(pattern) <= PATTERN_MAX and (
        pattern == "*" or bool(EVENT_TYPE.fullmatch(pattern)) or bool(PREFIX_PATTERN.fullmatch(pattern))
    )


def matches(patterns: tuple[str, ...], event_type: str) -> bool:
    """Whether any pattern takes ``event_type`` (the same rule as ``wh_matches`` in ``_lib.lua``)."""
    for pattern in patterns:
        if pattern in ("*", event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def url_problem(url: str, allow_http: bool) -> str | None:
    """Why ``url`` cannot be an endpoint's, or None when it can."""
    schemes = ("https", "http") if allow_http else ("https",)
    wanted = "an absolute https:// URL" + (" or http:// URL" if allow_http else "")
    if len(url) > URL_MAX:
        return f"must be at most {URL_MAX} characters"
    if not URL_CHARACTERS.fullmatch(url):
        return "must be ASCII without spaces, control characters or backslashes"
    parts = urlsplit(url)
    if parts.scheme.lower() not in schemes or not url.lower().startswith(f"{parts.scheme.lower()}://"):
        if parts.scheme.lower() == "http":
            return "must be https:// (http:// only with AUTHGW_WEBHOOK_ALLOW_HTTP=1)"
        return f"must be {wanted}"
    if "@" in parts.netloc:
        return "must not hold a user name or password"
    if parts.fragment or "#" in url:
        return "must not have a fragment"
    try:
        port = parts.port
    except ValueError:
        return "has a port that is not a number from 1 to 65535"
    if port == 0:
        return "has a port that is not a number from 1 to 65535"
    host = parts.hostname or ""
    if not host:
        return "must name a host"
    if parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return "has a host that is not an IPv6 address in brackets"
    elif not HOST_NAME.fullmatch(host) or len(host) > 253:
        return "has a host that is not a host name or an IPv4 address"
    return None


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def new_incarnation() -> str:
    return secrets.token_hex(16)


def secret_context(name: str, incarnation: str) -> str:
    """What a sealed secret is bound to: this endpoint, as made this time."""
    return f"webhook:{name}:{incarnation}"


@dataclass(frozen=True)
class Endpoint:
    """One of the bank's endpoints, as the deliverer signs and posts to it."""

    name: str
    url: str
    events: tuple[str, ...]
    enabled: bool
    created_at: str  # RFC 3339
    created_ms: int
    secrets: tuple[str, ...]  # whsec_ secrets to sign with: current first, the previous one too
    # while within 24 h of a rotation
    incarnation: str = ""  # new at every creation: the same name made again is another endpoint

    def matches(self, event_type: str) -> bool:
        """Whether its patterns take ``event_type``: ``*``, ``prefix.*`` or the exact type."""
        return matches(self.events, event_type)
