"""Caller ID as Twilio delivers it: withheld spellings, and numbers in E.164.

Twilio marks a withheld caller ID with words or with their keypad spellings
(``+266696687`` is ANONYMOUS); a Japanese caller shows their number again by dialling 186
before the number. A PSTN caller's number arrives in E.164, and only that is a phone: exactly
``+[1-9][0-9]{1,14}`` in ASCII digits (surrounding whitespace aside), valid for libphonenumber
and formatted back to the same text. Anything else (a ``client:`` or ``sip:`` caller, a
``tel:`` URI, an extension, a national number, other digits) is no registered phone: it proves
nothing, so it can approve nothing.

STIR/SHAKEN (``StirVerstat``, which Twilio sends only for US calls with SHAKEN attestation) is
judged here and only here, by ``attestation_refusal``; ``answer_call.lua`` acts on its answer.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from dataclasses import dataclass

import phonenumbers

from authgw.challenges.phones import to_e164
from authgw.errors import PhoneError

WITHHELD_WORDS = {"", "anonymous", "restricted", "unavailable", "unknown", "private", "blocked"}
# Keypad spellings: ANONYMOUS, RESTRICTED, UNAVAILABLE, UNKNOWN, BLOCKED.
WITHHELD_SPELLINGS = {"+266696687", "+7378742833", "+86282452253", "+8656696", "+2562533"}
_SEPARATORS = re.compile(r"[\s\-().]")
E164 = re.compile(r"\+[1-9][0-9]{1,14}", re.ASCII)
# AUTHGW_CALLBACK_MIN_ATTESTATION: the StirVerstat values that pass at each level, exactly as
# Twilio spells them. At "none" every value passes, absent included, unless it failed.
PASSING_ATTESTATIONS = {
    "A": frozenset({"TN-Validation-Passed-A"}),
    "B": frozenset({"TN-Validation-Passed-A", "TN-Validation-Passed-B"}),
    "C": frozenset({"TN-Validation-Passed-A", "TN-Validation-Passed-B", "TN-Validation-Passed-C"}),
}


@dataclass(frozen=True)
class CallerId:
    """``e164`` is set for a phone number; ``withheld`` when the caller hid it. Neither: the
    caller ID is not a phone (a ``client:``/``sip:`` caller, a malformed value)."""

    e164: str | None
    withheld: bool = False


def _e164(text: str) -> str | None:
    """``text`` when it is a valid number written exactly in E.164, else None."""
    if not E164.fullmatch(text):
        return None
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    # libphonenumber forgives (e.g. the national 0 kept after the country code); Twilio's
    # E.164 needs no forgiving, so only a number that formats back to itself is one.
    if phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) != text:
        return None
    return text


# Both are pure and their answers immutable, so each worker keeps its last few thousand: the
# same numbers call and are dialled again and again, and libphonenumber is a webhook's
# costliest step after the signature.
@functools.lru_cache(maxsize=4096)
def caller_id(raw: str | None) -> CallerId:
    """What ``From`` says about the caller."""
    loose = unicodedata.normalize("NFKC", raw or "").strip()
    if loose.lower() in WITHHELD_WORDS or _SEPARATORS.sub("", loose) in WITHHELD_SPELLINGS:
        return CallerId(None, withheld=True)
    return CallerId(_e164((raw or "").strip(string.whitespace)))


@functools.lru_cache(maxsize=4096)
def dialled(raw: str | None, region: str) -> str | None:
    """The number dialled (``To``) in E.164, or None when it is not a number."""
    try:
        number = to_e164(raw or "", region)
    except PhoneError:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def rate_limit_identity(e164: str, stir: str) -> str:
    """Who the per-caller rate limit counts a call against: the number, and whether its carrier
    fully attested it (``TN-Validation-Passed-A``). Someone spoofing a customer's number cannot
    get that attestation for it, so a flood of spoofed calls spends the number's unattested
    counter and leaves the customer's own attested call its own. Where the customer's carrier
    attests nothing, both share one counter, as before."""
    return f"{e164} {'A' if stir in PASSING_ATTESTATIONS['A'] else '-'}"


def attestation_refusal(stir: str, minimum: str) -> str:
    """Why a call with this ``StirVerstat`` ('' absent) may not verify at this minimum level
    (``A``, ``B``, ``C`` or ``none``): ``attestation_failed``, ``attestation_insufficient``, or
    '' when it may."""
    if "failed" in stir.lower():
        return "attestation_failed"  # whatever the minimum, and however it is spelled
    if minimum == "none" or stir in PASSING_ATTESTATIONS[minimum]:
        return ""
    # Absent, No-TN-Validation, a lower level, or a value Twilio does not send: a level was
    # asked for and this call does not prove it.
    return "attestation_insufficient"
