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
   takes the call.

Calls that no customer's trail can hold (withheld caller ID, unknown callers) and Twilio's
status callbacks go to the gateway's call stream, ``call.withheld``, ``call.unmatched`` and
``call.status`` events with the CallSid and the numbers; a customer's own calls are on their
trail (``call.received``, ``call.unmatched`` with a reason, ``challenge.verified`` ...).

Round trips to Redis per webhook: withheld or not a phone 2 (call record, call stream);
unknown caller 3 (index, call record, call stream); a matched call 3 (index; call record with
the first candidate's line holder; the judgement), 4 in confirm and code modes (the call is
bound to its challenge for the digits webhook); the digits webhook 2 (binding, judgement); a
status callback 2 (record, stream).
The per-caller rate limit (``rate_limit_caller``) is counted in the same round trip as the index.

Every script status becomes the caller's answer in ``_spoken`` and nowhere else.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from authgw.challenges.domain import Domain, Now
from authgw.challenges.locks import policy_arg, with_open
from authgw.challenges.outcomes import RETRIES, status_of
from authgw.errors import StoreUnavailable, ValidationFailed
from authgw.http import whole_number
from authgw.keys import customer_tag, tag_of_challenge
from authgw.webhooks.callerid import attestation_refusal, caller_id, dialled
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
        """TwiML for an inbound call."""
        sid = _call_sid(form)
        raw_from = _field(form, "From", 256)
        stir = _field(form, "StirVerstat")
        caller = caller_id(raw_from)
        to = dialled(_field(form, "To", 256), self.s.default_region) or ""
        now = self.d.now()
        record = self.keys.call_status(sid)

        if caller.e164 is None:
            # Withheld: asked to redial with 186. Not a phone (client:, sip:, not E.164): a
            # stranger. Neither reaches any customer.
            outcome, reason = ("withheld", "withheld") if caller.withheld else ("unmatched", "not_a_phone")
            seen = self.store.run(
                "receive_call",
                [record],
                [now.ms, now.iso, self._call_ttl_ms, raw_from, to, stir, "", outcome, reason],
            )
            if seen[0] == "new":
                self._log(now, f"call.{outcome}", sid, raw_from, to, reason=reason, stir=stir)
            log.info("call %s: %s caller ID", sid, "withheld" if caller.withheld else "not a phone's")
            return self.voice.withheld() if caller.withheld else self.voice.reject()

        if to in self.s.lock_numbers:
            return self.lock_line.answer(sid, caller.e164, to, stir, now)
        index = self.keys.phone_index(caller.e164)
        if self.limiter is not None:
            # The caller's counter and the phone index travel in one round trip.
            decision, members = self.limiter.check_and_read("caller", caller.e164, "smembers", index)
            if not decision.allowed:
                # A number calling in a loop: refused unanswered, nothing recorded or judged.
                log.warning("call %s: over the per-caller rate limit; rejected", sid)
                return self.voice.reject()
        else:
            members = self.store.read_command("smembers", index)
        candidates = sorted(members)
        known = "" if candidates and to else "unmatched"
        reason = "" if not known else ("unknown_caller" if not candidates else "not_a_number")
        receive_args = [
            now.ms,
            now.iso,
            self._call_ttl_ms,
            caller.e164,
            to,
            stir,
            ",".join(candidates),
            known,
            reason,
        ]
        held: tuple[str, str] | None = None  # (customer, holder of the dialled number)
        if known:
            seen = self.store.run("receive_call", [record], receive_args)
        else:
            # The first candidate's holder of the dialled number, read in the same round trip.
            first = candidates[0]
            seen, holder = self.store.run_and_read(
                "receive_call", [record], receive_args, "hget", self.keys.for_customer(first).lines, to
            )
            held = (first, holder or "")
        state, first_ms, seen_from, seen_to, seen_candidates, outcome = seen
        if state == "seen":
            if seen_from != caller.e164 or seen_to != to:
                log.warning("call %s: delivered again with other numbers; refused", sid)
                return self.voice.reject()
            if outcome == "withheld":
                return self.voice.withheld()
            candidates = seen_candidates.split(",") if seen_candidates else []
        if outcome or not candidates:
            if state == "new":
                self._log(now, "call.unmatched", sid, caller.e164, to, reason=reason, stir=stir)
            log.info("call %s: unmatched (%s)", sid, reason or outcome)
            return self.voice.reject()

        told = False  # whether some customer's trail has the call
        for customer_id in candidates:
            hint = held[1] if held and held[0] == customer_id else None
            result = self._judge(customer_id, sid, caller.e164, to, int(first_ms), stir, now, hint)
            told = told or result[0] != "stranger"
            answer = self._spoken_call(customer_id, sid, result)
            if answer is not None:
                return answer
        if not told and state == "new":
            self._log(now, "call.unmatched", sid, caller.e164, to, reason="unknown_caller", stir=stir)
        log.info("call %s: unmatched", sid)
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
        with self.store.boundary():
            self.store.client.xadd(
                self.keys.call_events(),
                {k: v for k, v in fields.items() if v},
                maxlen=CALL_EVENTS_MAX,
                approximate=True,
            )

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
    ) -> list[Any]:
        """``held``: the customer's lines entry for ``to`` if already read (a hint, like any)."""
        keys = self.keys.for_customer(customer_id)
        refusal = attestation_refusal(stir, self.s.callback_min_attestation)
        for _ in range(RETRIES):
            if held is None:
                with self.store.boundary():
                    held = self.store.client.hget(keys.lines, to) or ""
            hint = held.partition("|")[2]
            held = None  # a retry reads it again
            call_keys = [keys.customer, keys.open, keys.events, keys.lines, keys.call(sid)]
            if hint:
                call_keys.append(keys.challenge(hint))
            result = self.store.run(
                "answer_call",
                call_keys,
                [
                    now.ms,
                    now.iso,
                    self.d.maxlen,
                    self.d.retention_ms,
                    self._marker_ttl_ms,
                    sid,
                    from_,
                    to,
                    hint,
                    first_ms,
                    self.s.callback_confirm_above,
                    stir,
                    refusal,
                    self.s.new_phone_hold_seconds * 1000,
                ],
            )
            if status_of(result) != "retry":
                return list(result)
        raise StoreUnavailable("the designated number kept changing hands")

    def _spoken_call(self, customer_id: str, sid: str, result: list[Any]) -> str | None:
        """The answer to a call judged for one customer; None: try the next customer."""
        status = result[0]
        log.info("call %s: %s", sid, status if status != "unmatched" else f"unmatched ({result[1]})")
        if status in ("stranger", "unmatched"):
            return None
        if status == "verified":
            return self.voice.reject()
        if status == "held":
            return self.voice.result("new_phone_hold")
        if status == "gather":
            challenge_id, mode, doc, keys = result[1], result[2], json.loads(result[3]), int(result[4])
            bound = self.store.run(
                "bind_call", [self.keys.call_status(sid)], [customer_id, challenge_id, "gather"]
            )
            if status_of(bound) != "ok":
                return self.voice.result("unknown_call")
            return self.voice.ask(doc, mode, self._action(1), keys)
        if status == "replay":
            outcome = result[1]
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
        with self.store.boundary():
            customer_id, challenge_id = self.store.client.hmget(
                self.keys.call_status(sid), ["customer_id", "challenge_id"]
            )
        if not customer_id or not challenge_id or tag_of_challenge(challenge_id) != customer_tag(customer_id):
            log.info("call %s: keys pressed on a call with no dialogue", sid)
            return self.voice.result("unknown_call")
        keys = self.keys.for_customer(customer_id)

        def run(now: Now, open_ids: list[str]) -> Any:
            return self.store.run(
                "confirm_call",
                [
                    keys.challenge(challenge_id),
                    keys.customer,
                    keys.open,
                    keys.events,
                    keys.lines,
                    keys.call(sid),
                    *(keys.challenge(i) for i in open_ids),
                ],
                [
                    now.ms,
                    now.iso,
                    self.d.maxlen,
                    self.d.retention_ms,
                    policy_arg(self.s),
                    sid,
                    challenge_id,
                    digits,
                    n,
                    "1" if self.s.fraud_report_locks else "0",
                    *open_ids,
                ],
            )

        if digits == "9" and self.s.fraud_report_locks:
            # A fraud report locks and cancels every open challenge: the script needs them.
            result = with_open(self.d, keys, run)
        else:
            result = run(self.d.now(), [])
        return self._spoken_keys(sid, list(result), n)

    def _spoken_keys(self, sid: str, result: list[Any], n: int) -> str:
        status = status_of(result)
        attempts, locked, keys = 0, 0, 0
        if status == "replay":
            status, attempts, locked, keys = result[1], int(result[2]), int(result[3]), int(result[4])
        elif status == "invalid_code":
            attempts, locked, keys = int(result[1]), int(result[2]), int(result[3])
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
            locked = int(result[3] if result[0] == "replay" else result[2])
            return self.voice.fraud_reported(bool(locked), self.s.bank_contact_number)
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
        self.store.run(
            "call_status",
            [self.keys.call_status(sid)],
            [now.ms, now.iso, self._call_ttl_ms, call_status, duration],
        )
        self._log(now, "call.status", sid, from_, to, status=call_status)
