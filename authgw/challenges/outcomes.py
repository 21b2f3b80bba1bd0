"""Script results to outcomes: the one place a Lua status code becomes a contract error.

Every transition script answers a list whose first item is a status: ``ok`` (the rest is the
payload) or one of the contract's error codes, sometimes followed by details. ``expect_ok``
returns the payload or raises the ``ApiError`` for the code.
"""

from __future__ import annotations

from typing import Any

from authgw.errors import ApiError, StoreUnavailable

# Statuses a script may answer that the caller handles itself rather than as errors.
INTERNAL = {"stale", "retry", "replay"}

# How often a caller reads again after ``stale``/``retry`` (a challenge created during a
# deletion, a number's holder changed, a secret replaced since the read). Each such answer means
# another request changed the same state first and succeeded, so a burst on one customer can
# take many rounds (three were too few: five creations at once got 503 from a healthy store);
# the bound only stops a livelock, answering 503.
RETRIES = 64


# create_challenge found every designated number bound to another challenge of the customer
# (the number-pool rule, ``free_line`` in ``lua/_lib.lua``) and the request allowed no method
# but callback.
NO_FREE_NUMBER = (
    "Callback is not available now: every designated number is bound to another challenge of "
    "this customer until that challenge's expires_at (the first is free again at {free_at}). "
    "Allow totp, or create the challenge after that time."
)


# create_challenge judged the amount against a limit of the customer (judge_limits in
# ``lua/_lib.lua``).
LIMIT_EXCEEDED = {
    "per_transaction": "The amount is over the customer's per-transaction limit of {limit}.",
    "daily": "The amount would take today's usage ({used}) over the customer's daily limit of {limit}.",
}


# create_challenge found that the customer cannot use what a step-up rule requires (step_up in
# ``lua/_lib.lua``); the problem names the rule in ``policy``.
POLICY_UNMET = {
    "new_payee": "The payee is new for this customer, and the new-payee policy "
    "(AUTHGW_NEW_PAYEE_METHODS) requires a method the customer cannot use or did not allow.",
    "step_up": "The amount is at or above the step-up amount, and the step-up policy "
    "(AUTHGW_STEP_UP_METHODS) requires a method the customer cannot use or did not allow.",
    "dual_factor": "The amount is at or above the dual-factor amount (AUTHGW_DUAL_FACTOR_AMOUNT), "
    "which requires both totp and callback; the customer cannot use both, or did not allow both.",
}


def status_of(result: Any) -> str:
    if not isinstance(result, list) or not result or not isinstance(result[0], str):
        raise StoreUnavailable("unexpected script answer")
    return result[0]


def pairs(flat: list[Any]) -> dict[str, str]:
    """A flat ``[field, value, ...]`` list (HGETALL) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def expect_ok(result: Any, *, counts_attempts: bool = False) -> list[Any]:
    """The payload of an ``ok`` answer, or the contract error for any other status.

    ``counts_attempts``: the script judged a code against a challenge, and its
    ``invalid_code`` answer carries the attempts left, which the problem body reports.
    """
    status = status_of(result)
    if status == "ok":
        return list(result[1:])
    if status in INTERNAL:
        raise StoreUnavailable(f"unhandled script status {status}")
    if status == "method_unavailable" and result[1:2] == ["no_free_number"]:
        raise ApiError("method_unavailable", detail=NO_FREE_NUMBER.format(free_at=result[2]))
    if status == "method_unavailable" and result[1:2] == ["policy"]:
        raise ApiError("method_unavailable", detail=POLICY_UNMET[result[2]], policy=result[2])
    if status == "limit_exceeded":
        limit_kind, limit, used, remaining = result[1], int(result[2]), int(result[3]), int(result[4])
        raise ApiError(
            "limit_exceeded",
            detail=LIMIT_EXCEEDED[limit_kind].format(limit=limit, used=used),
            limit_kind=limit_kind,
            limit=limit,
            used=used,
            remaining=remaining,
        )
    if status == "invalid_code" and counts_attempts:
        raise ApiError(
            "invalid_code", attempts_left=max(int(result[1]), 0), failures_before_lock=int(result[3])
        )
    if status == "invalid_code" and len(result) > 3:
        raise ApiError("invalid_code", failures_before_lock=int(result[3]))
    try:
        raise ApiError(status)
    except ValueError:
        raise StoreUnavailable(f"unknown script status {status!r}") from None
