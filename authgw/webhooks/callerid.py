"""Caller ID as Twilio delivers it: withheld spellings, and numbers in E.164.

Twilio marks a withheld caller ID with words or with their keypad spellings
(``+266696687`` is ANONYMOUS); a Japanese caller shows their number again by dialling 186
before the number. Anything that is not a valid number is treated the same way: it proves
nothing, so it can approve nothing.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

import phonenumbers

from authgw.challenges.phones import PhoneError, to_e164

WITHHELD_WORDS = {"", "anonymous", "restricted", "unavailable", "unknown", "private", "blocked"}
# Keypad spellings: ANONYMOUS, RESTRICTED, UNAVAILABLE, UNKNOWN, BLOCKED.
WITHHELD_SPELLINGS = {"+266696687", "+7378742833", "+86282452253", "+8656696", "+2562533"}
_SEPARATORS = re.compile(r"[\s\-().]")


@dataclass(frozen=True)
class CallerId:
    """``e164`` is set for a usable number; otherwise ``withheld`` says why not."""

    e164: str | None
    withheld: str | None = None


# Both are pure and their answers immutable, so each worker keeps its last few thousand: the
# same numbers call and are dialled again and again, and libphonenumber is a webhook's
# costliest step after the signature.
@functools.lru_cache(maxsize=4096)
def caller_id(raw: str | None, region: str) -> CallerId:
    text = unicodedata.normalize("NFKC", raw or "").strip()
    if text.lower() in WITHHELD_WORDS:
        return CallerId(None, "withheld")
    if _SEPARATORS.sub("", text) in WITHHELD_SPELLINGS:
        return CallerId(None, "withheld")
    try:
        number = to_e164(text, region)
    except PhoneError:
        return CallerId(None, "unusable")
    return CallerId(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@functools.lru_cache(maxsize=4096)
def dialled(raw: str | None, region: str) -> str | None:
    """The number dialled (``To``) in E.164, or None when it is not a number."""
    try:
        number = to_e164(raw or "", region)
    except PhoneError:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
