"""Self-lock numbers (IBロック): a customer calls one to stop their own internet banking.

A call on a number of ``AUTHGW_LOCK_NUMBERS``:

1. A withheld caller ID hears the 186 advice (``Calls.voice_call``, before this module).
2. ``receive_call.lua`` records the CallSid once, with the customers the phone index names
   (a hint). A caller the index does not know hears that the number is not registered, and
   nothing else: no hint of whose number it could be.
3. A known caller is asked to press 1. The digits come to ``/webhooks/twilio/lock``: 1 runs
   ``self_lock.lua`` for each customer the call record names, which re-checks the phone,
   locks the customer (reason ``self_lock``) and cancels their open challenges in one step;
   any other key changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from authgw import scripts
from authgw.challenges.domain import Now
from authgw.challenges.locks import with_open
from authgw.errors import StoreUnavailable, ValidationFailed

if TYPE_CHECKING:
    from authgw.webhooks.calls import Calls

log = logging.getLogger(__name__)

LOCK_PATH = "/webhooks/twilio/lock"
OUTCOME = "self_lock"  # the call record's outcome for a call on a self-lock number


class SelfLock:
    """The self-lock line, over the phone side's store, settings and voice."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.d = calls.d
        self.s = calls.s
        self.store = calls.store
        self.keys = calls.keys
        self.voice = calls.voice

    def answer(self, sid: str, caller: str, to: str, stir: str, now: Now) -> str:
        """TwiML for a call from ``caller`` (E.164) on the self-lock number ``to``."""
        if self.calls.limiter is not None:
            decision, members = self.calls.limiter.check_and_read(
                "caller", caller, lambda: self.store.customers_of_phone(caller)
            )
            if not decision.allowed:
                log.warning("call %s: over the per-caller rate limit; rejected", sid)
                return self.voice.reject()
        else:
            members = self.store.customers_of_phone(caller)
        candidates = sorted(members)
        seen = scripts.receive_call(
            self.store,
            self.keys.call_status(sid),
            now=now,
            ttl_ms=self.calls._call_ttl_ms,
            from_=caller,
            to=to,
            stir=stir,
            candidates=candidates,
            outcome=OUTCOME if candidates else "unmatched",
            reason="" if candidates else "unknown_caller",
        )
        if seen.state == "seen" and (seen.from_ != caller or seen.to != to):
            log.warning("call %s: delivered again with other numbers; refused", sid)
            return self.voice.reject()
        if seen.outcome != OUTCOME or not seen.candidates:
            if seen.state == "new":
                self.calls._log(now, "call.unmatched", sid, caller, to, reason="unknown_caller", stir=stir)
            log.info("call %s: self-lock line, unknown caller", sid)
            return self.voice.lock_not_registered()
        log.info("call %s: self-lock line, asking", sid)
        return self.voice.lock_ask(f"{self.s.public_url}{LOCK_PATH}?n=1")

    def keys_pressed(self, form: Mapping[str, str]) -> str:
        """TwiML for the key pressed on the self-lock line: 1 locks, anything else does not."""
        from authgw.webhooks.calls import DIGITS, _call_sid, _field

        sid = _call_sid(form)
        digits = _field(form, "Digits", 12)
        if not DIGITS.fullmatch(digits):
            raise ValidationFailed([{"field": "Digits", "message": "must be keypad keys"}])
        from_, to, candidates, outcome = self.store.call_fields(sid, "from", "to", "candidates", "outcome")
        if outcome != OUTCOME or not candidates or to not in self.s.lock_numbers:
            log.info("call %s: keys pressed on a call that is not on the self-lock line", sid)
            return self.voice.result("unknown_call")
        if digits.rstrip("#") != "1":
            log.info("call %s: self-lock line, not confirmed", sid)
            return self.voice.lock_not_done()
        if from_ is None or to is None:
            raise StoreUnavailable("the self-lock call's record lost its numbers")
        locked = [c for c in candidates.split(",") if self._lock(c, sid, from_, to) != "stranger"]
        log.info("call %s: self-lock line, %d customer(s) locked", sid, len(locked))
        if not locked:
            return self.voice.lock_not_registered()
        return self.voice.lock_done(self.s.bank_contact_number)

    def _lock(self, customer_id: str, sid: str, from_: str, to: str) -> str:
        keys = self.keys.for_customer(customer_id)

        def run(now: Now, ids: list[str]) -> str | None:
            status = scripts.self_lock(
                self.store,
                keys,
                open_ids=ids,
                now=now,
                events_ms=self.d.maxlen,
                retention_ms=self.d.retention_ms,
                marker_ttl_ms=self.calls._call_ttl_ms,
                sid=sid,
                from_=from_,
                to=to,
            )
            return None if status == "retry" else status

        return with_open(self.d, keys, run)
