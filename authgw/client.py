"""A small client for core banking and the bank's operators, over the ``/v1`` API, and the
check a receiver of the gateway's webhooks makes.

Standard library only (``verify_webhook`` alone needs the ``standardwebhooks`` package, imported
when it is first called), so a bank's system can vendor this one file::

    gw = Client("https://gw.example.jp", api_key)
    challenge = gw.create_challenge(transfer, idempotency_key=order_id)
    challenge = gw.wait(challenge["id"], 30)        # long-poll: answers once it is not pending
    if challenge["status"] == "verified":
        gw.consume(challenge["id"], transaction_digest(transfer))

    # a receiver of the gateway's deliveries (docs/events.md)
    event = verify_webhook(request.headers, raw_body, [current_secret, previous_secret])

One method per ``/v1`` call of the contract, named for what it does; objects come back as the
JSON the gateway answered (dicts), lists unwrapped (``list_webhooks()`` is the ``webhooks``
array), calls answered 204 return ``None``.

Exceptions::

    Problem          the gateway refused the call (an RFC 9457 problem): ``status``, the
                     contract's ``code`` (``challenge_expired``, ``webhook_not_found``...),
                     the whole problem document in ``body``
    InvalidWebhook   verify_webhook: a delivery that is not the gateway's, as sent, lately:
                     ``reason`` is ``missing_header``, ``stale_timestamp`` or ``bad_signature``
    OSError          the gateway could not be reached (urllib's URLError is one)
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlencode

TRANSACTION_FIELDS = ("amount", "currency", "customer_id", "kind", "payee")
TIMEOUT_SECONDS = 10.0
# A long-poll's wait rides on top of the usual time-out.
LONG_POLL_MAX_SECONDS = 30
CREATE_RETRIES = 3  # 503 store_unavailable: retried with the same Idempotency-Key
# How far a delivery's webhook-timestamp may be from this host's clock (the Standard Webhooks
# libraries' tolerance): a captured delivery played back later is refused.
WEBHOOK_TOLERANCE_SECONDS = 300
WEBHOOK_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


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


WebhookRefusal = Literal["missing_header", "stale_timestamp", "bad_signature"]


class InvalidWebhook(Exception):
    """A delivery ``verify_webhook`` refuses: answer it 4xx and do nothing with it."""

    def __init__(self, reason: WebhookRefusal, detail: str) -> None:
        self.reason: WebhookRefusal = reason
        super().__init__(f"{reason}: {detail}")


class _Headers(Protocol):
    """What ``verify_webhook`` reads of headers: a dict, ``http.server``'s message, Flask's
    or httpx's headers all have it."""

    def items(self) -> Iterable[tuple[str, str]]: ...


def verify_webhook(
    headers: Mapping[str, str] | _Headers, body: bytes | str, secret: str | Sequence[str]
) -> dict[str, Any]:
    """The delivery's payload (``{"type", "timestamp", "data"}``), once its ``webhook-signature``
    is a Standard Webhooks signature of exactly ``body`` under ``secret`` (one ``whsec_``
    secret, or several while a rotation is under way: any one signing is enough) and its
    ``webhook-timestamp`` is within 5 minutes of now; else ``InvalidWebhook``. Pass the body's
    bytes as received, never re-serialised JSON. De-duplicate on ``webhook-id`` yourself (the
    gateway delivers at least once)."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("verify_webhook needs at least one whsec_ secret")
    found = {name.lower(): value for name, value in headers.items()}
    for name in WEBHOOK_HEADERS:
        if not found.get(name):
            raise InvalidWebhook("missing_header", f"no {name} header")
    _check_timestamp(found["webhook-timestamp"])
    if not any(_signed_by(one, found, body) for one in secrets):
        # The library checks the time again: a delivery that aged past the window meanwhile
        # is a stale one, not a forged one.
        _check_timestamp(found["webhook-timestamp"])
        raise InvalidWebhook("bad_signature", "no signature matches the body under these secrets")
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidWebhook("bad_signature", "a signed body that is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidWebhook("bad_signature", "a signed body that is not a JSON object")
    return payload


def _check_timestamp(raw: str) -> None:
    try:
        sent = float(raw)
    except ValueError:
        raise InvalidWebhook("stale_timestamp", "webhook-timestamp is not a number") from None
    if not abs(time.time() - sent) <= WEBHOOK_TOLERANCE_SECONDS:  # also refuses nan
        raise InvalidWebhook("stale_timestamp", "webhook-timestamp is more than 5 minutes from now")


def _signed_by(secret: str, headers: dict[str, str], body: bytes | str) -> bool:
    """One secret's verdict, by the standardwebhooks package (the signature is not ours to
    hand-roll). A secret that is not a ``whsec_`` secret is the caller's mistake: ValueError."""
    # Imported here, so the rest of this module stays standard library only.
    from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

    try:
        hook = Webhook(secret)
    except (ValueError, EmptyWebhookSecretError):
        raise ValueError("not a whsec_ secret (whsec_ and base64)") from None
    try:
        hook.verify(body, dict(headers), json_parse=False)
    except WebhookVerificationError:
        return False
    except ValueError:  # a malformed signature list, a body that is not UTF-8
        return False
    return True


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
        return self._call("GET", f"/v1/challenges/{_seg(challenge_id)}")

    def wait(self, challenge_id: str, seconds: int = LONG_POLL_MAX_SECONDS) -> dict[str, Any]:
        """``GET /v1/challenges/{id}?wait=N``: the challenge once it is no longer pending, or
        still pending after ``seconds`` (1 to 30)."""
        if not 1 <= seconds <= LONG_POLL_MAX_SECONDS:
            raise ValueError(f"wait is 1 to {LONG_POLL_MAX_SECONDS} seconds")
        return self._call(
            "GET",
            f"/v1/challenges/{_seg(challenge_id)}?wait={seconds}",
            timeout=self.timeout + seconds,
        )

    def verify_totp(self, challenge_id: str, code: str) -> dict[str, Any]:
        """``POST /v1/challenges/{id}/totp``: the challenge, verified; a wrong code is
        ``Problem`` ``invalid_code`` with ``attempts_left`` in its body."""
        return self._call("POST", f"/v1/challenges/{_seg(challenge_id)}/totp", {"code": code})

    def consume(self, challenge_id: str, digest: str) -> dict[str, Any]:
        return self._call(
            "POST", f"/v1/challenges/{_seg(challenge_id)}/consume", {"transaction_digest": digest}
        )

    def cancel(self, challenge_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/challenges/{_seg(challenge_id)}/cancel", {})

    # -- customers ------------------------------------------------------------------------

    def put_customer(
        self, customer_id: str, phones: Sequence[str], *, region: str | None = None
    ) -> dict[str, Any]:
        """``PUT /v1/customers/{id}``: register (or replace) the customer's phones."""
        body: dict[str, Any] = {"phones": list(phones)}
        if region is not None:
            body["region"] = region
        return self._call("PUT", f"/v1/customers/{_seg(customer_id)}", body)

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/customers/{_seg(customer_id)}")

    def delete_customer(self, customer_id: str) -> None:
        """``DELETE /v1/customers/{id}`` (operator): cancels their open challenges, erases TOTP."""
        self._call("DELETE", f"/v1/customers/{_seg(customer_id)}")

    def enrol_totp(self, customer_id: str) -> dict[str, Any]:
        """``POST .../totp``: ``{"secret", "otpauth_uri", "qr_svg"}``, the secret shown this once."""
        return self._call("POST", f"/v1/customers/{_seg(customer_id)}/totp")

    def confirm_totp(self, customer_id: str, code: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/customers/{_seg(customer_id)}/totp/confirm", {"code": code})

    def remove_totp(self, customer_id: str) -> None:
        """``DELETE .../totp`` (operator)."""
        self._call("DELETE", f"/v1/customers/{_seg(customer_id)}/totp")

    def unlock(self, customer_id: str) -> dict[str, Any]:
        """``POST .../unlock`` (operator): the customer, unlocked, failure count 0."""
        return self._call("POST", f"/v1/customers/{_seg(customer_id)}/unlock")

    def lock(self, customer_id: str, note: str | None = None) -> dict[str, Any]:
        """``POST .../lock`` (operator): cancels every open challenge of the customer."""
        return self._call(
            "POST", f"/v1/customers/{_seg(customer_id)}/lock", {} if note is None else {"note": note}
        )

    def events(
        self, customer_id: str, *, limit: int | None = None, before: str | None = None
    ) -> list[dict[str, Any]]:
        """``GET .../events``: one page, newest first (20 by default, at most 100); ``before``
        an event's ``id`` gives the page older than it."""
        query = _query(limit=limit, before=before)
        return list(self._call("GET", f"/v1/customers/{_seg(customer_id)}/events{query}")["events"])

    def all_events(self, customer_id: str, *, page: int = 100) -> Iterator[dict[str, Any]]:
        """Every retained event of the customer, newest first, page by page."""
        before: str | None = None
        while True:
            events = self.events(customer_id, limit=page, before=before)
            yield from events
            if len(events) < page:
                return
            before = events[-1]["id"]

    def put_limits(self, customer_id: str, limits: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT .../limits`` body ``{"transfer": {"per_transaction", "daily"}, "payeasy": ...}``."""
        return self._call("PUT", f"/v1/customers/{_seg(customer_id)}/limits", dict(limits))

    def get_limits(self, customer_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/customers/{_seg(customer_id)}/limits")

    # -- webhooks to the bank (every call is an operator's) ---------------------------------

    def put_webhook(
        self, name: str, url: str, events: Sequence[str], *, enabled: bool | None = None
    ) -> dict[str, Any]:
        """``PUT /v1/webhooks/{name}``: the endpoint; when it is new it carries its ``secret``,
        shown this once (keep it: ``verify_webhook`` needs it)."""
        body: dict[str, Any] = {"url": url, "events": list(events)}
        if enabled is not None:
            body["enabled"] = enabled
        return self._call("PUT", f"/v1/webhooks/{_seg(name)}", body)

    def list_webhooks(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/webhooks")["webhooks"])

    def get_webhook(self, name: str) -> dict[str, Any]:
        """``GET /v1/webhooks/{name}``: the endpoint with ``lag_seconds``."""
        return self._call("GET", f"/v1/webhooks/{_seg(name)}")

    def delete_webhook(self, name: str) -> None:
        """``DELETE /v1/webhooks/{name}``: nothing more is sent to it."""
        self._call("DELETE", f"/v1/webhooks/{_seg(name)}")

    def rotate_webhook_secret(self, name: str) -> dict[str, Any]:
        """``POST .../rotate-secret``: ``{"secret"}``, the new one; for 24 hours deliveries
        carry signatures under the old and the new."""
        return self._call("POST", f"/v1/webhooks/{_seg(name)}/rotate-secret")

    def test_webhook(self, name: str) -> dict[str, Any]:
        """``POST .../test`` (202): a ``webhook.test`` event is queued for the endpoint; the
        answer is its delivery."""
        return self._call("POST", f"/v1/webhooks/{_seg(name)}/test")

    def webhook_deliveries(
        self, name: str, *, state: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """``GET .../deliveries``, newest first; ``state`` ``pending``, ``delivered`` or ``failed``."""
        query = _query(state=state, limit=limit)
        return list(self._call("GET", f"/v1/webhooks/{_seg(name)}/deliveries{query}")["deliveries"])

    def retry_delivery(self, name: str, delivery_id: str) -> dict[str, Any]:
        """``POST .../deliveries/{id}/retry`` (202): a failed delivery is queued again; the
        answer is the delivery, ``pending``. One that is not failed is ``delivery_not_failed``."""
        return self._call("POST", f"/v1/webhooks/{_seg(name)}/deliveries/{_seg(delivery_id)}/retry")

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
            with exc:  # its connection is closed even when reading the problem fails
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


def _seg(value: str) -> str:
    """One path segment: an id is never read as more of the path."""
    return quote(value, safe="")


def _query(**params: object) -> str:
    given = {name: str(value) for name, value in params.items() if value is not None}
    return "?" + urlencode(given) if given else ""
