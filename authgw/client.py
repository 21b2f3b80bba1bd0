"""A small client for core banking: challenges and their digest, over the ``/v1`` API.

Standard library only, so a bank's system can vendor this one file::

    gw = Client("https://gw.example.jp", api_key)
    challenge = gw.create_challenge(transfer, idempotency_key=order_id)
    challenge = gw.wait(challenge["id"], 30)        # long-poll: answers once it is not pending
    if challenge["status"] == "verified":
        gw.consume(challenge["id"], transaction_digest(transfer))

A refusal raises ``Problem`` with the contract's ``code`` (``challenge_expired``...) and the
problem document in ``body``; a gateway that cannot be reached raises ``OSError``.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

TRANSACTION_FIELDS = ("amount", "currency", "customer_id", "kind", "payee")
TIMEOUT_SECONDS = 10.0
# A long-poll's wait rides on top of the usual time-out.
LONG_POLL_MAX_SECONDS = 30
CREATE_RETRIES = 3  # 503 store_unavailable: retried with the same Idempotency-Key


def transaction_digest(transaction: dict[str, Any]) -> str:
    """The contract's ``transaction_digest`` of a challenge's transaction: SHA-256, lowercase
    hex, of the canonical JSON of its amount, currency (default ``JPY``), customer_id, kind and
    payee (keys sorted at every level, ``,`` and ``:`` separators, raw UTF-8)."""
    core = {name: transaction.get(name) for name in TRANSACTION_FIELDS}
    if core["currency"] is None:
        core["currency"] = "JPY"
    canonical = json.dumps(core, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Problem(Exception):
    """The gateway refused the call: an RFC 9457 problem with the contract's ``code``."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.code: str = str(body.get("code") or "")
        super().__init__(f"{status} {self.code}: {body.get('detail') or body.get('title') or ''}".strip())


class Client:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = TIMEOUT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.sleep = sleep

    # -- challenges -----------------------------------------------------------------------

    def create_challenge(
        self, transaction: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """``POST /v1/challenges``. With an ``idempotency_key`` a 503 is retried (the same key
        returns the first challenge if the first attempt did create it); without one it is not."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        attempts = CREATE_RETRIES if idempotency_key else 1
        for attempt in range(attempts):
            try:
                return self._call("POST", "/v1/challenges", transaction, headers=headers)
            except Problem as exc:
                if exc.status != 503 or attempt == attempts - 1:
                    raise
                self.sleep(2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def get_challenge(self, challenge_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/challenges/{quote(challenge_id, safe='')}")

    def wait(self, challenge_id: str, seconds: int = LONG_POLL_MAX_SECONDS) -> dict[str, Any]:
        """``GET /v1/challenges/{id}?wait=N``: the challenge once it is no longer pending, or
        still pending after ``seconds`` (1 to 30)."""
        if not 1 <= seconds <= LONG_POLL_MAX_SECONDS:
            raise ValueError(f"wait is 1 to {LONG_POLL_MAX_SECONDS} seconds")
        return self._call(
            "GET",
            f"/v1/challenges/{quote(challenge_id, safe='')}?wait={seconds}",
            timeout=self.timeout + seconds,
        )

    def consume(self, challenge_id: str, digest: str) -> dict[str, Any]:
        return self._call(
            "POST", f"/v1/challenges/{quote(challenge_id, safe='')}/consume", {"transaction_digest": digest}
        )

    def cancel(self, challenge_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/challenges/{quote(challenge_id, safe='')}/cancel", {})

    # -- the wire -------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The JSON object the gateway answered ({} for an empty answer), or ``Problem``."""
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(self.base_url + path, data=data, method=method)  # noqa: S310 (the configured gateway)
        request.add_header("Authorization", f"Bearer {self.api_key}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                problem = json.loads(raw)
            except ValueError:
                problem = {}
            raise Problem(exc.code, problem if isinstance(problem, dict) else {}) from None
        answer = json.loads(raw) if raw else {}
        if not isinstance(answer, dict):
            raise Problem(502, {"detail": "the gateway answered something other than a JSON object"})
        return answer
