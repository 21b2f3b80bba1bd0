"""One typed call per Lua script (``lua/<name>.lua``): the only place KEYS and ARGV are built.

Each function takes named arguments (the ``Store``, the keys of the slot, the values), builds
the script's KEYS and ARGV in the order its header states, runs it through the store, and
returns a named outcome: a status (``Literal``) and, where there is one, a small frozen
dataclass of the payload. Nobody else counts ARGV positions or unpacks an answer by index.

A status that is one of the contract's error codes becomes an ``ApiError`` in one place,
``authgw.challenges.outcomes.expect_ok``, which the functions here call; the statuses a caller
handles itself (``stale``, ``retry``, ``replay``, the phone side's answers) are returned.

``now`` is what the caller estimates of the store's clock (``Domain.now()``). Scripts that
date what they write put their own ``TIME`` in its place (``clock_now`` in ``_lib.lua``);
it is passed so a script's ARGV stays what its header says.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar

from authgw.challenges.outcomes import expect_ok, pairs, status_of
from authgw.errors import StoreUnavailable
from authgw.keys import CustomerKeys, Keys

if TYPE_CHECKING:
    from authgw.store import Store


class Now(Protocol):
    """The caller's estimate of the store's clock (``authgw.challenges.domain.Now``)."""

    @property
    def ms(self) -> int: ...

    @property
    def iso(self) -> str: ...


P = ParamSpec("P")
K = TypeVar("K")
R = TypeVar("R")

Record = dict[str, str]  # a hash as a script answers it (HGETALL), as a dict


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _record(result: Any, **options: Any) -> Record:
    return pairs(expect_ok(result, **options))


def _retrying(result: Any, status: str) -> bool:
    return status_of(result) == status


# -- any script -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    """What a metric may say of any transition's answer: its status, and whether it locked."""

    status: str
    locked: bool


def answered(result: Any) -> Answered | None:
    """None when the answer is not a transition's (a counter's)."""
    if not isinstance(result, list) or not result or not isinstance(result[0], str):
        return None
    # An 'invalid_code' answer's third item is 'locked 0|1' (verify_totp, totp_confirm, confirm_call).
    return Answered(result[0], result[0] == "invalid_code" and len(result) > 2 and str(result[2]) == "1")


# -- customers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PutCustomer:
    created: bool
    previous_phones: list[str]
    customer: Record


Call = tuple[list[str], list[Any]]  # one script run's KEYS and ARGV, for a pipeline


def put_customer_call(
    keys: CustomerKeys,
    *,
    customer_id: str,
    phones: Sequence[str],
    region: str,
    now: Now,
    events_ms: int,
    client: str,
) -> Call:
    """The KEYS and ARGV of ``put_customer.lua`` (the bench loaders pipeline them)."""
    return [keys.customer, keys.events, *keys.bucket_keys], [
        customer_id,
        json.dumps(list(phones)),
        region,
        now.iso,
        events_ms,
        client,
    ]


def put_customer_outcome(result: Any) -> PutCustomer:
    payload = expect_ok(result)
    return PutCustomer(payload[0] == 1, json.loads(payload[1]), pairs(payload[2:]))


def _runs(
    name: str, call: Callable[Concatenate[K, P], Call], outcome: Callable[[Any], R]
) -> Callable[Concatenate[Store, K, P], R]:
    """The typed function of a script whose KEYS and ARGV ``call`` builds (so the bench loaders
    can pipeline them too) and whose answer ``outcome`` names."""

    def run(store: Store, first: K, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return outcome(store.run(name, *call(first, *args, **kwargs)))

    run.__name__ = run.__qualname__ = name
    run.__doc__ = f"Run ``{name}.lua`` (arguments: ``{call.__name__}``)."
    return run


put_customer = _runs("put_customer", put_customer_call, put_customer_outcome)


@dataclass(frozen=True)
class Deleted:
    status: Literal["ok", "retry"]
    phones: list[str]  # the phones the customer had (ok only)


def delete_customer(
    store: Store,
    keys: CustomerKeys,
    *,
    open_ids: Sequence[str],
    now: Now,
    events_ms: int,
    retention_ms: int,
    client: str,
) -> Deleted:
    result = store.run(
        "delete_customer",
        [
            keys.customer,
            keys.open,
            keys.events,
            keys.lines,
            *(keys.challenge(i) for i in open_ids),
            *keys.bucket_keys,
        ],
        [now.ms, now.iso, events_ms, retention_ms, client, *open_ids],
    )
    if _retrying(result, "retry"):
        return Deleted("retry", [])
    return Deleted("ok", json.loads(expect_ok(result)[0]))


def totp_enrol_call(keys: CustomerKeys, *, sealed: str, now: Now, events_ms: int, client: str) -> Call:
    return [keys.customer, keys.events, *keys.bucket_keys], [sealed, now.iso, events_ms, client]


totp_enrol = _runs("totp_enrol", totp_enrol_call, expect_ok)


def totp_remove(store: Store, keys: CustomerKeys, *, now: Now, events_ms: int, client: str) -> None:
    expect_ok(
        store.run(
            "totp_remove", [keys.customer, keys.events, *keys.bucket_keys], [now.iso, events_ms, client]
        )
    )


@dataclass(frozen=True)
class Secret:
    customer_id: str  # '' when there is no such customer
    sealed: str  # the ciphertext, '' for none
    now_ms: int  # the store's clock as the secret was read


def totp_secret(store: Store, keys: CustomerKeys, *, which: Literal["totp", "totp_pending"]) -> Secret:
    """A read: it travels with any held rate-limit counters (``Store.read``)."""
    customer_id, sealed, now_ms = expect_ok(store.read("totp_secret", [keys.customer], [which]))
    return Secret(customer_id, sealed, int(now_ms))


@dataclass(frozen=True)
class Judged:
    """A code judged by a script: ``stale`` means read the secret again; ``ok`` the record."""

    status: Literal["ok", "stale"]
    record: Record


def totp_confirm_call(
    keys: CustomerKeys, *, now: Now, events_ms: int, policy: str, sealed: str, steps: str, client: str
) -> Call:
    return [keys.customer, keys.events, *keys.bucket_keys], [
        now.iso,
        events_ms,
        policy,
        sealed,
        steps,
        client,
    ]


def judged_outcome(result: Any, *, counts_attempts: bool = False) -> Judged:
    """The outcome of a ``totp_confirm.lua`` or ``verify_totp.lua`` answer."""
    if _retrying(result, "stale"):
        return Judged("stale", {})
    return Judged("ok", _record(result, counts_attempts=counts_attempts))


totp_confirm = _runs("totp_confirm", totp_confirm_call, judged_outcome)


def unlock(store: Store, keys: CustomerKeys, *, now: Now, events_ms: int, client: str) -> Record:
    return _record(
        store.run("unlock", [keys.customer, keys.events, *keys.bucket_keys], [now.iso, events_ms, client])
    )


@dataclass(frozen=True)
class Locked:
    status: Literal["ok", "retry"]
    customer: Record


def lock_customer(
    store: Store,
    keys: CustomerKeys,
    *,
    open_ids: Sequence[str],
    now: Now,
    events_ms: int,
    retention_ms: int,
    client: str,
    note: str,
) -> Locked:
    result = store.run(
        "lock_customer",
        [
            keys.customer,
            keys.open,
            keys.events,
            keys.lines,
            *(keys.challenge(i) for i in open_ids),
            *keys.bucket_keys,
        ],
        [now.ms, events_ms, retention_ms, client, note, *open_ids],
    )
    if _retrying(result, "retry"):
        return Locked("retry", {})
    return Locked("ok", _record(result))


def expire_due(store: Store, keys: CustomerKeys, *, due_ids: Sequence[str], now: Now, events_ms: int) -> int:
    """Settle the challenges whose time is up; how many were."""
    result = store.run(
        "expire_due",
        [keys.open, keys.events, keys.lines, *(keys.challenge(i) for i in due_ids), *keys.bucket_keys],
        [now.ms, events_ms, *due_ids],
    )
    return int(expect_ok(result)[0])


# -- challenges -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    held: bool  # this request holds the key: it must settle or release it (else: done)


def idempotency_claim(
    store: Store, *, claim: str, request_hash: str, token: str, now: Now, lease_ms: int, ttl_ms: int
) -> Claimed:
    result = store.run("idempotency_claim", [claim], [request_hash, token, now.ms, lease_ms, ttl_ms])
    return Claimed(expect_ok(result)[0] == "held")


def idempotency_release(store: Store, *, claim: str, token: str) -> Literal["released", "kept", "not_held"]:
    status = status_of(store.run("idempotency_release", [claim], [token]))
    if status not in ("released", "kept", "not_held"):
        raise StoreUnavailable(f"unexpected idempotency_release status {status!r}")
    return status  # type: ignore[return-value]


def idempotency_settle(
    store: Store, *, claim: str, request_hash: str, token: str, ttl_ms: int
) -> Literal["ok", "idempotency_conflict"]:
    status = status_of(store.run("idempotency_settle", [claim], [request_hash, token, ttl_ms]))
    return "ok" if status == "ok" else "idempotency_conflict"


@dataclass(frozen=True)
class Created:
    status: Literal["ok", "replay"]
    replayed_id: str  # replay: the challenge made first under this Idempotency-Key
    methods: str = ""  # JSON array (ok only)
    line: str = ""  # the designated number bound to it ('' none)
    doc: str = ""  # the document as stored, JSON (ok only)
    new_payee: str = ""  # '1': none of the customer's consumed challenges paid this payee
    required: str = ""  # JSON array of the methods that must all verify ('' any one of them)


def create_challenge_call(
    keys: CustomerKeys,
    *,
    now: Now,
    events_ms: int,
    record_ttl_ms: int,
    challenge_id: str,
    client: str,
    customer_id: str,
    doc: str,
    methods: str,
    attempts: int,
    expires_ms: int,
    expires_iso: str,
    request_hash: str,
    idempotency_key: str | None,
    numbers: Sequence[str],
    code: str,
    policy: Sequence[Any],
) -> Call:
    """The KEYS and ARGV of ``create_challenge.lua`` (the bench loaders pipeline them).
    ``policy``: limits and step-up, as ``authgw.challenges.limits.create_args`` makes it."""
    script_keys = [
        keys.customer,
        keys.open,
        keys.events,
        keys.lines,
        keys.challenge(challenge_id),
        keys.usage(),
        keys.payees(),
    ]
    if request_hash:
        if idempotency_key is None:
            raise TypeError("a request hash comes with its idempotency key")
        script_keys.append(idempotency_key)
    script_keys.extend(keys.bucket_keys)
    return script_keys, [
        now.ms,
        now.iso,
        events_ms,
        record_ttl_ms,
        challenge_id,
        client,
        customer_id,
        doc,
        methods,
        attempts,
        expires_ms,
        expires_iso,
        request_hash,
        json.dumps(list(numbers)),
        code,
        *policy,
    ]


def created_outcome(result: Any) -> Created:
    """The outcome of one ``create_challenge.lua`` answer."""
    if _retrying(result, "replay"):
        return Created("replay", result[1])
    methods, line, doc, new_payee, required = expect_ok(result)
    return Created("ok", "", methods, line, doc, new_payee, required)


create_challenge = _runs("create_challenge", create_challenge_call, created_outcome)


def read_challenge(
    store: Store,
    keys: CustomerKeys,
    *,
    challenge_id: str,
    now: Now,
    events_ms: int,
    client: str,
    any_client: bool,
) -> Record:
    """A read (it settles an expiry time already decided): with any held counters."""
    result = store.read(
        "read_challenge",
        [keys.challenge(challenge_id), keys.open, keys.events, keys.lines, *keys.bucket_keys],
        [now.ms, events_ms, client, challenge_id, _flag(any_client)],
    )
    return _record(result)


def verify_totp_call(
    keys: CustomerKeys,
    *,
    challenge_id: str,
    now: Now,
    events_ms: int,
    retention_ms: int,
    client: str,
    policy: str,
    sealed: str,
    steps: str,
) -> Call:
    """``now``: the store's time the codes were computed at (``totp_secret``)."""
    return (
        [keys.challenge(challenge_id), keys.customer, keys.open, keys.events, keys.lines, *keys.bucket_keys],
        [now.ms, now.iso, events_ms, retention_ms, client, policy, sealed, steps, challenge_id],
    )


def _judged_counting(result: Any) -> Judged:
    return judged_outcome(result, counts_attempts=True)


verify_totp = _runs("verify_totp", verify_totp_call, _judged_counting)


def consume(
    store: Store,
    keys: CustomerKeys,
    *,
    challenge_id: str,
    now: Now,
    events_ms: int,
    retention_ms: int,
    client: str,
    digest: str,
) -> Record:
    result = store.run(
        "consume",
        [
            keys.challenge(challenge_id),
            keys.open,
            keys.events,
            keys.lines,
            keys.customer,
            keys.usage(),
            keys.payees(),
            *keys.bucket_keys,
        ],
        [now.ms, now.iso, events_ms, retention_ms, client, digest, challenge_id],
    )
    return _record(result)


def cancel(
    store: Store,
    keys: CustomerKeys,
    *,
    challenge_id: str,
    now: Now,
    events_ms: int,
    retention_ms: int,
    client: str,
) -> Record:
    result = store.run(
        "cancel",
        [keys.challenge(challenge_id), keys.open, keys.events, keys.lines, *keys.bucket_keys],
        [now.ms, now.iso, events_ms, retention_ms, client, challenge_id],
    )
    return _record(result)


# -- calls ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sighting:
    """A call's record as ``receive_call.lua`` left it: this delivery's, or the first's."""

    state: Literal["new", "seen"]
    first_ms: int
    from_: str
    to: str
    candidates: list[str]  # customers it may speak for
    outcome: str  # 'withheld', 'unmatched', 'self_lock', or '' when the customers decide


def receive_call_call(
    record: str,
    *,
    now: Now,
    ttl_ms: int,
    from_: str,
    to: str,
    stir: str,
    candidates: Sequence[str],
    outcome: str,
    reason: str,
) -> tuple[list[str], list[Any]]:
    return [record], [now.ms, now.iso, ttl_ms, from_, to, stir, ",".join(candidates), outcome, reason]


def sighting(result: Any) -> Sighting:
    state, first_ms, from_, to, candidates, outcome = result
    return Sighting(state, int(first_ms), from_, to, candidates.split(",") if candidates else [], outcome)


receive_call = _runs("receive_call", receive_call_call, sighting)


def receive_call_and_holder(store: Store, call: Call, keys: CustomerKeys, to: str) -> tuple[Sighting, str]:
    """``receive_call`` (its ``receive_call_call``) and, in the same round trip, who holds
    ``to`` among the customer's numbers (``lines``: a hint ``answer_call`` re-checks)."""
    script_keys, argv = call
    result, holder = store.run_and_read("receive_call", script_keys, argv, "hget", keys.lines, to)
    return sighting(result), holder or ""


def receive_prepared(store: Store, call: Call) -> Sighting:
    """``receive_call`` from its ``receive_call_call``."""
    return sighting(store.run("receive_call", *call))


@dataclass(frozen=True)
class CallAnswer:
    """``answer_call.lua``'s judgement of a call for one customer."""

    status: Literal["stranger", "retry", "unmatched", "verified", "held", "gather", "replay"]
    reason: str = ""  # unmatched: why
    challenge_id: str = ""
    mode: str = ""  # gather: 'confirm' or 'code'
    doc: dict[str, Any] | None = None  # gather: the challenge's document
    gather_keys: int = 0  # gather: keys to gather
    replayed: str = ""  # replay: the first judgement's outcome


def answer_call(
    store: Store,
    keys: CustomerKeys,
    *,
    now: Now,
    events_ms: int,
    retention_ms: int,
    marker_ttl_ms: int,
    sid: str,
    from_: str,
    to: str,
    hint: str,
    first_ms: int,
    confirm_above: int,
    stir: str,
    refusal: str,
    hold_ms: int,
    ambiguous: bool = False,
) -> CallAnswer:
    """``ambiguous``: only record the call (``call.unmatched`` ambiguous_caller), judge nothing."""
    script_keys = [keys.customer, keys.open, keys.events, keys.lines, keys.call(sid)]
    if hint:
        script_keys.append(keys.challenge(hint))
    script_keys.extend(keys.bucket_keys)
    result = store.run(
        "answer_call",
        script_keys,
        [
            now.ms,
            now.iso,
            events_ms,
            retention_ms,
            marker_ttl_ms,
            sid,
            from_,
            to,
            hint,
            first_ms,
            confirm_above,
            stir,
            refusal,
            hold_ms,
            "1" if ambiguous else "",
        ],
    )
    status = status_of(result)
    if status in ("stranger", "retry"):
        return CallAnswer(status)  # type: ignore[arg-type]
    if status == "unmatched":
        return CallAnswer("unmatched", reason=result[1])
    if status == "verified":
        return CallAnswer("verified", challenge_id=result[1])
    if status == "held":  # the phone is within the new-phone hold
        return CallAnswer("held", challenge_id=result[1])
    if status == "gather":
        return CallAnswer(
            "gather",
            challenge_id=result[1],
            mode=result[2],
            doc=json.loads(result[3]),
            gather_keys=int(result[4]),
        )
    if status == "replay":
        return CallAnswer("replay", replayed=result[1], challenge_id=result[2])
    raise StoreUnavailable(f"unexpected answer_call status {status!r}")


def bind_call(
    store: Store, record: str, *, customer_id: str, challenge_id: str, outcome: str
) -> Literal["ok", "unknown_call"]:
    status = status_of(store.run("bind_call", [record], [customer_id, challenge_id, outcome]))
    return "ok" if status == "ok" else "unknown_call"


@dataclass(frozen=True)
class KeysJudged:
    """``confirm_call.lua``'s judgement of the keys pressed (the first one's, on a replay)."""

    status: str  # verified, denied, invalid_input, invalid_code, a contract code, unknown_call, retry
    attempts_left: int = 0
    locked: bool = False
    gather_keys: int = 0
    replay: bool = False


def confirm_call(
    store: Store,
    keys: CustomerKeys,
    *,
    challenge_id: str,
    open_ids: Sequence[str],
    now: Now,
    events_ms: int,
    retention_ms: int,
    policy: str,
    sid: str,
    digits: str,
    entry: int,
    fraud_report_locks: bool,
) -> KeysJudged:
    result = store.run(
        "confirm_call",
        [
            keys.challenge(challenge_id),
            keys.customer,
            keys.open,
            keys.events,
            keys.lines,
            keys.call(sid),
            *(keys.challenge(i) for i in open_ids),
            *keys.bucket_keys,
        ],
        [
            now.ms,
            now.iso,
            events_ms,
            retention_ms,
            policy,
            sid,
            challenge_id,
            digits,
            entry,
            _flag(fraud_report_locks),
            *open_ids,
        ],
    )
    status = status_of(result)
    if status == "replay":
        attempts, locked, gather = result[2], result[3], result[4]
        return KeysJudged(result[1], int(attempts), int(locked) == 1, int(gather), replay=True)
    if status == "invalid_code":
        return KeysJudged(status, int(result[1]), int(result[2]) == 1, int(result[3]))
    if status == "denied":
        return KeysJudged(status, locked=int(result[2]) == 1)
    return KeysJudged(status)


def call_status(store: Store, record: str, *, now: Now, ttl_ms: int, call_status: str, duration: str) -> None:
    store.run("call_status", [record], [now.ms, now.iso, ttl_ms, call_status, duration])


def self_lock(
    store: Store,
    keys: CustomerKeys,
    *,
    open_ids: Sequence[str],
    now: Now,
    events_ms: int,
    retention_ms: int,
    marker_ttl_ms: int,
    sid: str,
    from_: str,
    to: str,
) -> Literal["locked", "replay", "stranger", "retry"]:
    result = store.run(
        "self_lock",
        [
            keys.customer,
            keys.open,
            keys.events,
            keys.lines,
            keys.call(sid),
            *(keys.challenge(i) for i in open_ids),
            *keys.bucket_keys,
        ],
        [now.ms, events_ms, retention_ms, marker_ttl_ms, sid, from_, to, *open_ids],
    )
    status = status_of(result)
    if status not in ("locked", "replay", "stranger", "retry"):
        raise StoreUnavailable(f"unexpected self_lock status {status!r}")
    return status  # type: ignore[return-value]


# -- the console ----------------------------------------------------------------------------


def phones_viewed(store: Store, keys: CustomerKeys, *, events_ms: int, by: str) -> None:
    """``phones_viewed.lua``: the audit event of an operator seeing a customer's full numbers."""
    expect_ok(store.run("phones_viewed", [keys.customer, keys.events, *keys.bucket_keys], [events_ms, by]))


def console_count_many(store: Store, counts: Sequence[tuple[str, str, int, int]]) -> None:
    """``console_count.lua`` over (counter hash, field, amount, kept ms), in one pipeline."""
    store.run_many("console_count", [([key], [field, n, kept]) for key, field, n, kept in counts])


# -- rate limits ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    count: int  # requests counted in this window
    ttl_ms: int  # until the window ends


def rate_limit_call(counter: str, *, window_ms: int) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV of ``rate_limit.lua`` (the limiter sends several in one pipeline)."""
    return [counter], [window_ms]


def counts(answers: Sequence[Any]) -> list[Count]:
    """The outcomes of ``rate_limit.lua`` answers, in order."""
    return [Count(int(count), int(ttl)) for count, ttl in answers]


def rate_limit_many(store: Store, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Count]:
    """Count several requests in one round trip (independent counters, not one atomic step)."""
    return counts(store.run_many("rate_limit", calls))


def defer_rate_limits(
    store: Store, calls: Sequence[tuple[list[str], list[Any]]], judge: Callable[[list[Count]], None]
) -> None:
    """Hold the counters until the request's next store call (``Store.defer``)."""
    store.defer("rate_limit", calls, lambda answers: judge(counts(answers)))


# -- outbound webhooks ----------------------------------------------------------------------
# Every webhook key is in the ``{wh}`` slot; ``store.keys`` names them (``Keys.webhook``).


@dataclass(frozen=True)
class WebhookPut:
    status: Literal["created", "updated", "too_many"]  # too_many: max_endpoints exist already
    record: str = ""  # the endpoint's record, JSON (updated: its secret kept)


def webhook_put(
    store: Store,
    *,
    name: str,
    url: str,
    events: Sequence[str],
    enabled: bool,
    sealed: str,
    incarnation: str,
    max_endpoints: int,
    by: str,
    audit_ms: int,
) -> WebhookPut:
    """Create or update endpoint ``name``, audited under ``by`` (kept ``audit_ms``)."""
    result = store.run(
        "webhook_put",
        [store.keys.webhook_endpoints(), store.keys.webhook_audit()],
        [
            name,
            url,
            json.dumps(list(events)),
            _flag(enabled),
            sealed,
            incarnation,
            max_endpoints,
            by,
            audit_ms,
        ],
    )
    status = status_of(result)
    if status == "too_many_webhooks":
        return WebhookPut("too_many")
    if status not in ("created", "updated"):
        raise StoreUnavailable(f"unexpected webhook_put status {status!r}")
    return WebhookPut(status, result[1])  # type: ignore[arg-type]


def webhook_delete(store: Store, *, name: str, by: str, audit_ms: int) -> None:
    """Delete endpoint ``name`` and its deliveries, audited under ``by``; 404 raises."""
    keys = [store.keys.webhook_endpoints(), *store.keys.webhook(name).all(), store.keys.webhook_audit()]
    expect_ok(store.run("webhook_delete", keys, [name, by, audit_ms]))


def webhook_rotate(
    store: Store, *, name: str, incarnation: str, sealed: str, grace_ms: int, by: str, audit_ms: int
) -> Literal["stale"] | str:
    """The endpoint's record after the rotation (JSON), audited under ``by``; or ``stale``: it
    was made again since the caller read its incarnation."""
    result = store.run(
        "webhook_rotate",
        [store.keys.webhook_endpoints(), store.keys.webhook_audit()],
        [name, incarnation, sealed, grace_ms, by, audit_ms],
    )
    if _retrying(result, "stale"):
        return "stale"
    return str(expect_ok(result)[0])


@dataclass(frozen=True)
class FannedOut:
    status: Literal["ok", "retry"]  # retry: an endpoint that wants the event was not a candidate
    created: tuple[str, ...] = ()  # the endpoints that got a new delivery


def webhook_fan_out_call(
    keys: Keys,
    *,
    candidates: Sequence[tuple[str, str]],
    event_id: str,
    event_type: str,
    event_ms: int,
    body: str,
) -> Call:
    """The KEYS and ARGV of ``webhook_fan_out.lua`` (the deliverer pipelines a batch of them)."""
    script_keys = [keys.webhook_endpoints(), keys.webhook_doorbell()]
    for name, _ in candidates:
        script_keys.extend(keys.webhook(name).all())
    return script_keys, [
        event_id,
        event_type,
        event_ms,
        body,
        len(candidates),
        *(name for name, _ in candidates),
        *(delivery_id for _, delivery_id in candidates),
    ]


def fanned_out(result: Any) -> FannedOut:
    if _retrying(result, "retry"):
        return FannedOut("retry")
    _count, names = expect_ok(result)
    return FannedOut("ok", tuple(names.split(",")) if names else ())


def webhook_fan_out_many(store: Store, calls: Sequence[Call]) -> list[FannedOut]:
    """Events' fan-outs (``webhook_fan_out_call``) in one pipeline, each atomic alone; one by
    one, each followed by its WAIT, when the store waits for replicas."""
    if store.wait_replicas:
        return [fanned_out(store.run("webhook_fan_out", *call)) for call in calls]
    return [fanned_out(answer) for answer in store.run_many("webhook_fan_out", calls)]


@dataclass(frozen=True)
class Claim:
    delivery_id: str
    event_id: str
    body: str
    attempt: int


@dataclass(frozen=True)
class Claims:
    endpoint: str  # the endpoint's record as it was at the claim, JSON
    claims: list[Claim]


def webhook_claim(
    store: Store, *, name: str, limit: int, lease_ms: int, tries: int, keep_ms: int
) -> Claims | None:
    """None when there is no such endpoint. ``tries``: one round of the schedule (waits + 1)."""
    keys = store.keys.webhook(name)
    result = store.run(
        "webhook_claim",
        [store.keys.webhook_endpoints(), *keys.all()],
        [name, limit, lease_ms, tries, keep_ms],
    )
    if _retrying(result, "webhook_not_found"):
        return None
    payload = expect_ok(result)
    rest = payload[1:]
    claims = [Claim(rest[i], rest[i + 1], rest[i + 2], int(rest[i + 3])) for i in range(0, len(rest), 4)]
    return Claims(payload[0], claims)


def webhook_record(
    store: Store,
    *,
    name: str,
    delivery_id: str,
    attempt: int,
    ok: bool,
    status: int | None,
    error: str,
    retry_after_ms: int,
    schedule: Sequence[int],
    keep_ms: int,
) -> Literal["delivered", "retry", "failed", "ignored"]:
    keys = store.keys.webhook(name)
    result = store.run(
        "webhook_record",
        [store.keys.webhook_endpoints(), *keys.all()],
        [
            name,
            delivery_id,
            attempt,
            _flag(ok),
            "" if status is None else str(status),
            error,
            retry_after_ms,
            ",".join(str(s) for s in schedule),
            keep_ms,
        ],
    )
    outcome = status_of(result)
    if outcome not in ("delivered", "retry", "failed", "ignored"):
        raise StoreUnavailable(f"unexpected webhook_record status {outcome!r}")
    return outcome  # type: ignore[return-value]


def webhook_retry(store: Store, *, name: str, delivery_id: str, by: str, audit_ms: int) -> str:
    """The delivery's record, queued again (JSON), audited under ``by``; the contract's 404s
    and 409 raise."""
    keys = store.keys.webhook(name)
    result = store.run(
        "webhook_retry",
        [
            store.keys.webhook_endpoints(),
            store.keys.webhook_doorbell(),
            *keys.all(),
            store.keys.webhook_audit(),
        ],
        [name, delivery_id, by, audit_ms],
    )
    return str(expect_ok(result)[0])


def webhook_test(
    store: Store,
    *,
    name: str,
    event_id: str,
    event_type: str,
    event_ms: int,
    body: str,
    delivery_id: str,
    by: str,
    audit_ms: int,
) -> str:
    """A test event's delivery to endpoint ``name`` (its record, JSON), audited under ``by``;
    ``webhook_not_found`` raises."""
    keys = store.keys.webhook(name)
    result = store.run(
        "webhook_test",
        [
            store.keys.webhook_endpoints(),
            store.keys.webhook_doorbell(),
            *keys.all(),
            store.keys.webhook_audit(),
        ],
        [name, event_id, event_type, event_ms, body, delivery_id, by, audit_ms],
    )
    return str(expect_ok(result)[0])


@dataclass(frozen=True)
class WebhookRead:
    record: str  # the endpoint's record, JSON
    oldest_pending_event_ms: int | None
    next_due_ms: int | None
    now_ms: int  # the store's clock as it read


def webhook_read(store: Store, *, name: str) -> WebhookRead:
    """A read; ``webhook_not_found`` raises."""
    keys = store.keys.webhook(name)
    record, oldest, due, now_ms = expect_ok(
        store.read("webhook_read", [store.keys.webhook_endpoints(), keys.lag, keys.due], [name])
    )
    return WebhookRead(record, int(oldest) if oldest else None, int(due) if due else None, int(now_ms))


def webhook_deliveries(store: Store, *, name: str, state: str | None, limit: int) -> list[str]:
    """A read: the newest ``limit`` delivery records (JSON), of one state or all."""
    keys = store.keys.webhook(name)
    result = store.read(
        "webhook_deliveries",
        [store.keys.webhook_endpoints(), keys.records, keys.pending, keys.delivered, keys.failed],
        [name, state or "", limit],
    )
    return [str(record) for record in expect_ok(result)]


# -- limits ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LimitsAnswer:
    """A customer's limits as ``read_limits.lua`` and ``put_limits.lua`` answer them: ``stale``
    means the store's clock fell outside the local days it was given (``day_of``)."""

    status: Literal["ok", "stale"]
    fields: Record  # '<kind>:<field>', 'raise:<kind>:<field>', '<kind>:used_today' (ok only)


def _limits_answer(result: Any) -> LimitsAnswer:
    if _retrying(result, "stale"):
        return LimitsAnswer("stale", {})
    return LimitsAnswer("ok", _record(result))


def read_limits(store: Store, keys: CustomerKeys, *, now: Now, defaults: str, days: str) -> LimitsAnswer:
    """A read: it travels with any held rate-limit counters (``Store.read``). ``defaults`` and
    ``days``: ``authgw.challenges.limits.defaults_arg`` and ``day_windows``."""
    result = store.read("read_limits", [keys.customer, keys.usage(), keys.open], [now.ms, defaults, days])
    return _limits_answer(result)


def put_limits(
    store: Store,
    keys: CustomerKeys,
    *,
    now: Now,
    events_ms: int,
    client: str,
    defaults: str,
    days: str,
    raise_delay_ms: int,
    changes: Sequence[tuple[str, str, str]],
) -> LimitsAnswer:
    """``changes``: (kind, field, value digits or 'null' for the default), in order."""
    result = store.run(
        "put_limits",
        [keys.customer, keys.events, keys.usage(), keys.open, *keys.bucket_keys],
        [
            now.ms,
            events_ms,
            client,
            defaults,
            days,
            raise_delay_ms,
            len(changes),
            *(item for change in changes for item in change),
        ],
    )
    return _limits_answer(result)
