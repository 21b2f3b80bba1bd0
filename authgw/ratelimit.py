"""Rate limits in Redis: a fixed-window counter per kind and identity, one atomic script.

Three kinds, each with its own limit per ``rate_limit_window_seconds`` (0 turns one off):

- ``client``: every ``/v1`` call of one API key (``rate_limit_client``);
- ``customer``: every ``/v1`` call of one API key naming a customer or one of their challenges
  (``rate_limit_customer``), counted per client and customer;
- ``caller``: phone webhooks from one calling number (``rate_limit_caller``); the phone side
  calls ``check("caller", e164)`` and answers in TwiML, or ``limit(...)`` for a 429.

Over a limit a ``/v1`` call gets 429 ``rate_limited`` with ``Retry-After``. The counters go
out before the view runs, or, for a view marked ``reads_first`` whose first store call only
reads, in the same pipeline as that read: one round trip fewer. Either way nothing is written
before they are judged. A ``reads_first`` call refused before it touches the store (a malformed
body) is not counted. A counter is one Redis key with its own hash tag, so it works on every
topology. Like every store call it fails closed: with the store down the request gets 503, not
a free pass.

A call is attributed to a customer before the store has said whether the challenge it names
is the caller's (a challenge id carries its customer's hash tag; a made-up id can carry it
too). So the per-customer counter is the caller's own, per client and customer: a client can
only spend budget it can touch, and no flood from one key, real ids or made up, holds back
another key's calls for that customer.

Why not the ``limits`` library: it is well made and its Redis strategies are Lua scripts too,
but it opens its own connection pool from its own URL parsing, with its own time-outs and
errors. Here the counter goes through the gateway's one client and one error boundary.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request

from authgw import scripts
from authgw.errors import RateLimited
from authgw.http import problem_response
from authgw.identifiers import customer_tag, is_customer_id, tag_of_challenge
from authgw.settings import Settings
from authgw.store import Store, read_lua

KINDS = ("client", "customer", "caller")

# The counter script as it is in its file (``lua/rate_limit.lua``); the store registers it
# with every other script.
SCRIPT = read_lua("rate_limit.lua")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int  # seconds until the window ends (0 when allowed)


class RateLimiter:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.window_ms = settings.rate_limit_window_seconds * 1000
        self.limits = {
            "client": settings.rate_limit_client,
            "customer": settings.rate_limit_customer,
            "caller": settings.rate_limit_caller,
        }

    def check(self, kind: str, identity: str) -> Decision:
        """Count one request of ``identity``; whether it is within the limit of ``kind``."""
        return self.check_all([(kind, identity)])[0][1]

    def _calls(self, requests: list[tuple[str, str]]) -> list[tuple[list[str], list[Any]]]:
        """The counter script's runs for the kinds whose limit is on."""
        calls: list[tuple[list[str], list[Any]]] = []
        for kind, identity in requests:
            if kind not in KINDS:
                raise ValueError(f"unknown rate limit kind {kind!r}")
            if self.limits[kind]:
                digest = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:32]
                calls.append(
                    scripts.rate_limit_call(
                        self.store.keys.rate_limit(kind, digest), window_ms=self.window_ms
                    )
                )
        return calls

    def _decide(
        self, requests: list[tuple[str, str]], answers: list[scripts.Count]
    ) -> list[tuple[str, Decision]]:
        """Decisions from the counters (one per kind whose limit is on)."""
        counts = iter(answers)
        decisions = []
        for kind, _identity in requests:
            if not self.limits[kind]:
                decisions.append((kind, Decision(True, 0)))
                continue
            counted = next(counts)
            if counted.count <= self.limits[kind]:
                decisions.append((kind, Decision(True, 0)))
            else:
                decisions.append((kind, Decision(False, max(1, math.ceil(counted.ttl_ms / 1000)))))
        return decisions

    def check_all(self, requests: list[tuple[str, str]]) -> list[tuple[str, Decision]]:
        """Count one request against each (kind, identity), all in one round trip."""
        calls = self._calls(requests)
        return self._decide(requests, scripts.rate_limit_many(self.store, calls) if calls else [])

    def check_and_read(self, kind: str, identity: str, read: Callable[[], T]) -> tuple[Decision, T]:
        """``check``, and ``read`` (one named read of the store, such as
        ``Store.customers_of_phone``) in the same round trip."""
        decisions: list[Decision] = []
        calls = self._calls([(kind, identity)])
        if not calls:
            return Decision(True, 0), read()
        scripts.defer_rate_limits(
            self.store,
            calls,
            lambda answers: decisions.extend(d for _, d in self._decide([(kind, identity)], answers)),
        )
        value = read()
        return decisions[0], value

    def defer_all(self, requests: list[tuple[str, str]]) -> None:
        """``limit_all``, with the counters sent along with the request's first store call."""
        calls = self._calls(requests)
        if calls:
            scripts.defer_rate_limits(
                self.store, calls, lambda answers: self._raise_first(self._decide(requests, answers))
            )

    @staticmethod
    def _raise_first(decisions: list[tuple[str, Decision]]) -> None:
        for kind, decision in decisions:
            if not decision.allowed:
                raise RateLimited(kind, decision.retry_after)

    def limit(self, kind: str, identity: str) -> None:
        """``check``, raising ``RateLimited`` when over the limit."""
        self.limit_all([(kind, identity)])

    def limit_all(self, requests: list[tuple[str, str]]) -> None:
        """``check_all``, raising ``RateLimited`` for the first limit exceeded."""
        self._raise_first(self.check_all(requests))


def limiter() -> RateLimiter:
    return current_app.extensions["authgw.ratelimit"]  # type: ignore[no-any-return]


def check(kind: str, identity: str) -> Decision:
    """The current app's ``RateLimiter.check`` (for views, e.g. the phone webhooks)."""
    return limiter().check(kind, identity)


def limit(kind: str, identity: str) -> None:
    """The current app's ``RateLimiter.limit``: raises ``RateLimited`` (429) when over."""
    limiter().limit(kind, identity)


F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def reads_first(view: F) -> F:
    """Mark a view whose first store call only reads (``Store.read``/``read_command``): its
    counters travel in that call's pipeline, one round trip for both, and a request over a
    limit gets its 429 without the read's answer being used."""
    view.reads_first = True  # type: ignore[attr-defined]
    return view


def _customer_of_request() -> str | None:
    """The customer tag a ``/v1`` call is about, if any: path, challenge id or body."""
    args = request.view_args or {}
    if isinstance(args.get("challenge_id"), str):
        return tag_of_challenge(args["challenge_id"])
    customer_id = args.get("customer_id")
    if request.method == "POST" and request.path.rstrip("/") == "/v1/challenges":
        try:
            body = json.loads(request.get_data(cache=True))
        except (ValueError, RecursionError):
            return None  # the view refuses it with the contract's answer
        if isinstance(body, dict):
            customer_id = body.get("customer_id")
    # Only a well-formed id counts; anything else is refused by the view anyway.
    if is_customer_id(customer_id):
        return customer_tag(customer_id)
    return None


def install(
    app: Flask, store: Store, settings: Settings, blueprints: tuple[str, ...] = ("v1",)
) -> RateLimiter:
    """Limit every call of ``blueprints`` per client and per customer, after authentication."""
    rl = RateLimiter(store, settings)
    app.extensions["authgw.ratelimit"] = rl

    def limit_request() -> None:
        counted = []
        client = g.get("client")
        if client:
            counted.append(("client", client))
        tag = _customer_of_request()
        if tag:
            # The tag is 16 hex digits, so "<tag>:<client>" names one pair only.
            counted.append(("customer", f"{tag}:{client or ''}"))
        if not counted:
            return
        view = app.view_functions.get(request.endpoint or "")
        if getattr(view, "reads_first", False):
            rl.defer_all(counted)
        else:
            rl.limit_all(counted)

    # Appended to each blueprint's own list, so it runs after the blueprint authenticates.
    for blueprint in blueprints:
        app.before_request_funcs.setdefault(blueprint, []).append(limit_request)
    # Counters a view never sent (it refused the request before touching the store) are
    # dropped with the request: such a request is not counted, and cost the store nothing.
    app.teardown_request_funcs.setdefault(None, []).append(lambda _exc: store.drop_deferred())

    @app.errorhandler(RateLimited)
    def rate_limited(exc: RateLimited) -> Response:
        return problem_response(exc, headers={"Retry-After": str(exc.retry_after)})

    return rl
