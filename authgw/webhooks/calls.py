"""Inbound calls: which challenge a call speaks for, and what the caller hears.

A call reaches a challenge in three steps, each re-checked by the next:

1. ``From`` must be E.164 (``callerid``); a withheld caller ID, or one that is not a phone,
   stops here (it proves nothing).
2. The phone index (a hint written with the customer) names the customers who registered
   that number. ``receive_call.lua`` records, once per CallSid, when the call was first seen
   and which customers it may speak for; a second delivery of the CallSid reuses that record.
3. For each of those customers, the holder of the dialled number (``lines``, another hint)
   names at most one challenge, and ``answer_call.lua`` judges the call against the truth in
   one atomic step: challenge pending and not expired, its number is ``To``, ``From`` still
   registered, callback allowed, customer not locked, CallSid not seen before by this
   customer, challenge created before the call. The first customer whose challenge matches
   takes the call. A phone registered to several customers first reads each one's holder of
   the dialled number (one round trip): when more than one holds it for a live challenge the
   call is ambiguous (``call.unmatched`` ambiguous_caller on the call stream and each holder's
   trail; nothing verified, no dialogue); when exactly one does, only that one is judged.

Calls that no customer's trail can hold (withheld caller ID, unknown callers) and Twilio's
status callbacks go to the gateway's call stream, ``call.withheld``, ``call.unmatched`` and
``call.status`` events with the CallSid and the numbers; a customer's own calls are on their
trail (``call.received``, ``call.unmatched`` with a reason, ``challenge.verified`` ...).

Round trips to Redis per webhook: withheld or not a phone 2 (call record, call stream);
unknown caller 3 (index, call record, call stream); a matched call 3 (index; call record with
the first candidate's line holder; the judgement), 4 in confirm and code modes (the call is
bound to its challenge for the digits webhook), one more for a shared phone's holders; the
digits webhook 2 (binding, judgement); a
status callback 2 (record, stream).
The per-caller rate limit (``rate_limit_caller``) is counted in the same round trip as the index.

Every script status becomes the caller's answer in ``_spoken`` and nowhere else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authgw import scripts
from authgw.challenges.domain import Domain, Now
from authgw.challenges.locks import policy_arg, with_open
from authgw.challenges.outcomes import RETRIES
from authgw.errors import StoreUnavailable, ValidationFailed
from authgw.http import whole_number
from authgw.identifiers import customer_tag, tag_of_challenge
from authgw.webhooks.callerid import CallerId, attestation_refusal, caller_id, dialled, rate_limit_identity
from authgw.webhooks.selflock import SelfLock
from authgw.webhooks.speech import INVALID_INPUT, WRONG_CODE, Voice

log = logging.getLogger(__name__)

CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
DIGITS = re.compile(r"^[0-9*#]{0,12}$")
CALL_STATUSES = {
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "answered",
    "completed",
    "busy",
    "failed",
    "no-answer",
    "canceled",
}
CALL_RECORD_MARGIN = 86400  # seconds a call's record outlives the events retention
CALL_EVENTS_MAX = 100_000  # the gateway's call stream is trimmed to about this many entries
MAX_ENTRIES = 6  # keys a caller may enter in one call before it is ended
CONFIRM_PATH = "/webhooks/twilio/confirm"


@dataclass(frozen=True)
class Inbound:
    """An inbound call's fields as ``voice_call`` reads them."""

    sid: str
    raw_from: str
    stir: str
    caller: CallerId
    to: str  # the dialled number, E.164 ('' when it is none)
    now: Now


@dataclass(frozen=True)
class Candidates:
    """The customers a call may speak for, as the phone index says (a hint)."""

    customers: list[str]
    known: str  # 'unmatched' when no customer can take it, else ''
    reason: str  # why it is unmatched ('' when not)


@dataclass(frozen=True)
class Sighting:
    """The call's record, and the first candidate's holder of the dialled number if read."""

    seen: scripts.Sighting
    held: tuple[str, str] | None  # (customer, holder)


def _field(form: Mapping[str, str], name: str, limit: int = 64) -> str:
    value = form.get(name, "") or ""
    if len(value) > limit or not value.isprintable():
        raise ValidationFailed([{"field": name, "message": f"must be at most {limit} printable characters"}])
    return value


def _call_sid(form: Mapping[str, str]) -> str:
    sid = form.get("CallSid", "") or ""
    if not CALL_SID.fullmatch(sid):
        raise ValidationFailed([{"field": "CallSid", "message": "must be CA followed by 32 hex digits"}])
    return sid


class Calls:
    """The phone side of the gateway, over the same store and clock as the API."""

    def __init__(self, domain: Domain, limiter: Any = None) -> None:
        """``limiter``: the gateway's rate limiter (``check(kind, identity)``), if it has one."""
        self.d = domain
        self.limiter = limiter
        self.s = domain.settings
        self.store = domain.store
        self.keys = domain.store.keys
        self.voice = Voice(self.s.callback_voice)
        self.lock_line = SelfLock(self)

    @property
    def _call_ttl_ms(self) -> int:
        """How long a call's record (when it was first seen) is kept: Twilio's signatures carry
        no timestamp, so it is what keeps a captured request from approving a later challenge.
        It outlives every event of the call on the trail (all written within Twilio's 4-hour
        call limit of the first sight) and ``AUTHGW_CALL_RETENTION_SECONDS``; docs/phone.md."""
        return max(self.s.call_retention_seconds, self.s.events_retention_seconds + CALL_RECORD_MARGIN) * 1000

    @property
    def _marker_ttl_ms(self) -> int:
        """How long a customer's marker of a call (its dialogue, the effect of one call) is kept."""
        return self.s.call_retention_seconds * 1000

    def _action(self, n: int) -> str:
        return f"{self.s.public_url}{CONFIRM_PATH}?n={n}"

    # -- POST /voice ----------------------------------------------------------------------

    def voice_call(self, form: Mapping[str, str]) -> str:
        """TwiML for an inbound call: read the call, record its first sight, judge it for each
        customer it may speak for, answer."""
        call = self._inbound(form)
        if call.caller.e164 is None:
            return self._no_caller_id(call)
        if call.to in self.s.lock_numbers:
            return self.lock_line.answer(call.sid, call.caller.e164, call.to, call.stir, call.now)
        found = self._candidates(call, call.caller.e164)
        if found is None:
            return self.voice.reject()
        sight = self._receive(call, call.caller.e164, found)
        return self._answer(call, call.caller.e164, found, sight)

    def _inbound(self, form: Mapping[str, str]) -> Inbound:
        """Step 1: the call's fields, checked and normalised."""
        sid = _call_sid(form)
        raw_from = _field(form, "From", 256)
        stir = _field(form, "StirVerstat")
        to = dialled(_field(form, "To", 256), self.s.default_region) or ""
        return Inbound(sid, raw_from, stir, caller_id(raw_from), to, self.d.now())

    def _no_caller_id(self, call: Inbound) -> str:
        """A withheld caller ID is asked to redial with 186; one that is not a phone (client:,
        sip:, not E.164) is a stranger. Neither reaches any customer."""
        withheld = call.caller.withheld
        outcome, reason = ("withheld", "withheld") if withheld else ("unmatched", "not_a_phone")
        sight = scripts.receive_call(
            self.store,
            self.keys.call_status(call.sid),
            now=call.now,
            ttl_ms=self._call_ttl_ms,
            from_=call.raw_from,
            to=call.to,
            stir=call.stir,
            candidates=[],
            outcome=outcome,
            reason=reason,
        )
        if sight.state == "new":
            self._log(
                call.now, f"call.{outcome}", call.sid, call.raw_from, call.to, reason=reason, stir=call.stir
            )
        log.info("call %s: %s caller ID", call.sid, "withheld" if withheld else "not a phone's")
        return self.voice.withheld() if withheld else self.voice.reject()

    def _candidates(self, call: Inbound, caller: str) -> Candidates | None:
        """Step 2: the customers the phone index names (a hint), and whether the call is
        unmatched already; None when the caller is over the rate limit."""
        if self.limiter is not None:
            # The caller's counter and the phone index travel in one round trip.
            decision, members = self.limiter.check_and_read(
                "caller",
                rate_limit_identity(caller, call.stir),
                lambda: self.store.customers_of_phone(caller),
            )
            if not decision.allowed:
                # A number calling in a loop: refused unanswered, nothing recorded or judged.
                log.warning("call %s: over the per-caller rate limit; rejected", call.sid)
                return None
        else:
            members = self.store.customers_of_phone(caller)
        candidates = sorted(members)
        known = "" if candidates and call.to else "unmatched"
        reason = "" if not known else ("unknown_caller" if not candidates else "not_a_number")
        return Candidates(candidates, known, reason)

    def _receive(self, call: Inbound, caller: str, found: Candidates) -> Sighting:
        """Step 3: the call's record (its first sight fixes who it may speak for); with the
        first candidate's holder of the dialled number read in the same round trip."""
        receive = scripts.receive_call_call(
            self.keys.call_status(call.sid),
            now=call.now,
            ttl_ms=self._call_ttl_ms,
            from_=caller,
            to=call.to,
            stir=call.stir,
            candidates=found.customers,
            outcome=found.known,
            reason=found.reason,
        )
        if found.known:
            return Sighting(scripts.receive_prepared(self.store, receive), None)
        first = found.customers[0]
        seen, holder = scripts.receive_call_and_holder(
            self.store, receive, self.keys.for_customer(first), call.to
        )
        return Sighting(seen, (first, holder))

    def _answer(self, call: Inbound, caller: str, found: Candidates, sight: Sighting) -> str:
        """Step 4: judge the call for each customer it may speak for; the first that takes it
        answers."""
        seen = sight.seen
        candidates = found.customers
        if seen.state == "seen":
            if seen.from_ != caller or seen.to != call.to:
                log.warning("call %s: delivered again with other numbers; refused", call.sid)
                return self.voice.reject()
            if seen.outcome == "withheld":
                return self.voice.withheld()
            candidates = seen.candidates
        if seen.outcome or not candidates:
            if seen.state == "new":
                self._log(
                    call.now, "call.unmatched", call.sid, caller, call.to, reason=found.reason, stir=call.stir
                )
            log.info("call %s: unmatched (%s)", call.sid, found.reason or seen.outcome)
            return self.voice.reject()

        held = dict([sight.held]) if sight.held else {}
        if len(candidates) > 1:
            # A shared phone: the call may speak only for the one customer holding the number.
            held = self._live_holders(candidates, call.to, seen.first_ms)
            if len(held) > 1:
                return self._ambiguous(call, caller, seen, held)
            if held:
                candidates = list(held)
        told = False  # whether some customer's trail has the call
        for customer_id in candidates:
            hint = held.get(customer_id)
            judged = self._judge(
                customer_id, call.sid, caller, call.to, seen.first_ms, call.stir, call.now, hint
            )
            told = told or judged.status != "stranger"
            answer = self._spoken_call(customer_id, call.sid, judged)
            if answer is not None:
                return answer
        if not told and seen.state == "new":
            self._log(
                call.now, "call.unmatched", call.sid, caller, call.to, reason="unknown_caller", stir=call.stir
            )
        log.info("call %s: unmatched", call.sid)
        return self.voice.reject()

    def _live_holders(self, candidates: list[str], to: str, at_ms: int) -> dict[str, str]:
        """The candidates whose ``lines`` bind ``to`` to a challenge at ``at_ms`` (the call's
        first sight), with their entries, read in one round trip: hints ``answer_call``
        re-checks."""
        entries = self.store.line_holders([self.keys.for_customer(c) for c in candidates], to)
        live = {}
        for customer_id, entry in zip(candidates, entries, strict=True):
            until, _, challenge_id = entry.partition("|")
            if challenge_id and until.isdigit() and int(until) > at_ms:
                live[customer_id] = entry
        return live

    def _ambiguous(self, call: Inbound, caller: str, seen: scripts.Sighting, held: dict[str, str]) -> str:
        """A shared phone calling a number that more than one of its customers holds: the call
        cannot say whose transaction the caller was shown, so it verifies nothing and opens no
        dialogue. Each holder's trail records it (``call.unmatched`` ambiguous_caller, which
        also marks the CallSid as judged for that customer: a second delivery is a replay)."""
        if seen.state == "new":
            self._log(
                call.now,
                "call.unmatched",
                call.sid,
                caller,
                call.to,
                reason="ambiguous_caller",
                stir=call.stir,
            )
        for customer_id, entry in held.items():
            self._judge(
                customer_id,
                call.sid,
                caller,
                call.to,
                seen.first_ms,
                call.stir,
                call.now,
                entry,
                ambiguous=True,
            )
        log.warning(
            "call %s: a shared phone, the number held by %d of its customers; rejected", call.sid, len(held)
        )
        return self.voice.reject()

    def _log(
        self,
        now: Now,
        event_type: str,
        sid: str,
        from_: str,
        to: str,
        *,
        reason: str | None = None,
        stir: str = "",
        status: str = "",
    ) -> None:
        """An event no customer's trail can hold, on the gateway's call stream (append only)."""
        fields = {
            "at": now.iso,
            "type": event_type,
            "call_sid": sid,
            "from": from_,
            "to": to,
            "reason": reason or "",
            "stir_verstat": stir,
            "status": status,
        }
        self.store.log_call_event({k: v for k, v in fields.items() if v}, CALL_EVENTS_MAX)

    def _judge(
        self,
        customer_id: str,
        sid: str,
        from_: str,
        to: str,
        first_ms: int,
        stir: str,
        now: Now,
        held: str | None = None,
        *,
        ambiguous: bool = False,
    ) -> scripts.CallAnswer:
        """``held``: the customer's lines entry for ``to`` if already read (a hint, like any);
        ``ambiguous``: only record the call on the customer's trail (``_ambiguous``)."""
        keys = self.keys.for_customer(customer_id)
        refusal = attestation_refusal(stir, self.s.callback_min_attestation)
        for _ in range(RETRIES):
            if held is None:
                held = self.store.line_holder(keys, to)
            hint = held.partition("|")[2]
            held = None  # a retry reads it again
            judged = scripts.answer_call(
                self.store,
                keys,
                now=now,
                events_ms=self.d.maxlen,
                retention_ms=self.d.retention_ms,
                marker_ttl_ms=self._marker_ttl_ms,
                sid=sid,
                from_=from_,
                to=to,
                hint=hint,
                first_ms=first_ms,
                confirm_above=self.s.callback_confirm_above,
                stir=stir,
                refusal=refusal,
                hold_ms=self.s.new_phone_hold_seconds * 1000,
                ambiguous=ambiguous,
            )
            if judged.status != "retry":
                return judged
        raise StoreUnavailable("the designated number kept changing hands")

    def _spoken_call(self, customer_id: str, sid: str, judged: scripts.CallAnswer) -> str | None:
        """The answer to a call judged for one customer; None: try the next customer."""
        status = judged.status
        log.info("call %s: %s", sid, status if status != "unmatched" else f"unmatched ({judged.reason})")
        if status in ("stranger", "unmatched"):
            return None
        if status == "verified":
            return self.voice.reject()
        if status == "held":
            return self.voice.result("new_phone_hold")
        if status == "gather":
            bound = scripts.bind_call(
                self.store,
                self.keys.call_status(sid),
                customer_id=customer_id,
                challenge_id=judged.challenge_id,
                outcome="gather",
            )
            if bound != "ok":
                return self.voice.result("unknown_call")
            if judged.doc is None:
                raise StoreUnavailable("answer_call asked for a dialogue without its document")
            return self.voice.ask(judged.doc, judged.mode, self._action(1), judged.gather_keys)
        if status == "replay":
            outcome = judged.replayed
            if outcome == "unmatched":
                return None
            if outcome == "verified":
                return self.voice.reject()
            if outcome == "held":
                return self.voice.result("new_phone_hold")
            return self.voice.result("challenge_not_pending")
        raise StoreUnavailable(f"unexpected answer_call status {status!r}")

    # -- POST /confirm --------------------------------------------------------------------

    def keys_pressed(self, form: Mapping[str, str], n_arg: str | None) -> str:
        """TwiML for the keys a caller pressed in the dialogue."""
        sid = _call_sid(form)
        digits = _field(form, "Digits", 12)
        if not DIGITS.fullmatch(digits):
            raise ValidationFailed([{"field": "Digits", "message": "must be keypad keys"}])
        digits = digits.rstrip("#")
        n = whole_number(n_arg, 1, MAX_ENTRIES)
        if n is None:
            raise ValidationFailed([{"field": "n", "message": f"must be 1 to {MAX_ENTRIES}"}])
        customer_id, challenge_id = self.store.call_fields(sid, "customer_id", "challenge_id")
        if not customer_id or not challenge_id or tag_of_challenge(challenge_id) != customer_tag(customer_id):
            log.info("call %s: keys pressed on a call with no dialogue", sid)
            return self.voice.result("unknown_call")
        keys = self.keys.for_customer(customer_id)

        def judge(now: Now, open_ids: list[str]) -> scripts.KeysJudged:
            return scripts.confirm_call(
                self.store,
                keys,
                challenge_id=challenge_id,
                open_ids=open_ids,
                now=now,
                events_ms=self.d.maxlen,
                retention_ms=self.d.retention_ms,
                policy=policy_arg(self.s),
                sid=sid,
                digits=digits,
                entry=n,
                fraud_report_locks=self.s.fraud_report_locks,
            )

        def unless_retry(now: Now, open_ids: list[str]) -> scripts.KeysJudged | None:
            judged = judge(now, open_ids)
            return None if judged.status == "retry" else judged

        if digits == "9" and self.s.fraud_report_locks:
            # A fraud report locks and cancels every open challenge: the script needs them.
            judged = with_open(self.d, keys, unless_retry)
        else:
            judged = judge(self.d.now(), [])
        return self._spoken_keys(sid, judged, n)

    def _spoken_keys(self, sid: str, judged: scripts.KeysJudged, n: int) -> str:
        status, attempts, locked, keys = (
            judged.status,
            judged.attempts_left,
            judged.locked,
            judged.gather_keys,
        )
        log.info("call %s: keys judged: %s", sid, status)
        last_entry = n >= MAX_ENTRIES
        if status == "invalid_input":
            if last_entry:
                return self.voice.result("unknown_call")
            return self.voice.ask_again("confirm", self._action(n + 1), 1, INVALID_INPUT)
        if status == "invalid_code":
            if locked:
                return self.voice.result("customer_locked")
            if attempts <= 0 or last_entry:
                return self.voice.result("failed")
            return self.voice.ask_again("code", self._action(n + 1), keys, WRONG_CODE)
        if status == "denied":
            return self.voice.fraud_reported(locked, self.s.bank_contact_number)
        return self.voice.result(status)

    # -- POST /status ---------------------------------------------------------------------

    def status(self, form: Mapping[str, str]) -> None:
        sid = _call_sid(form)
        call_status = _field(form, "CallStatus")
        if call_status not in CALL_STATUSES:
            raise ValidationFailed([{"field": "CallStatus", "message": "is not a Twilio call status"}])
        duration = _field(form, "CallDuration", 10)
        if duration and whole_number(duration, 0, 10**10) is None:
            raise ValidationFailed([{"field": "CallDuration", "message": "must be whole seconds"}])
        region = self.s.default_region
        now = self.d.now()
        caller = caller_id(_field(form, "From", 256))
        from_ = caller.e164 or ("withheld" if caller.withheld else "not_a_phone")
        to = dialled(_field(form, "To", 256), region) or ""
        scripts.call_status(
            self.store,
            self.keys.call_status(sid),
            now=now,
            ttl_ms=self._call_ttl_ms,
            call_status=call_status,
            duration=duration,
        )
        self._log(now, "call.status", sid, from_, to, status=call_status)
