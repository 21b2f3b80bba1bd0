"""Phone numbers: parsed with libphonenumber, kept and compared in E.164.

A registered phone must prove a device: a mobile or fixed line. VoIP numbers (Japan's 050
range) are refused unless the bank allows them (NIST SP 800-63B: VoIP is no out-of-band
device); toll-free, premium-rate, pager and shared-cost numbers never originate a
customer's call and are refused too.
"""

from __future__ import annotations

import functools
import unicodedata

import phonenumbers
from phonenumbers import PhoneNumberType

from authgw.errors import PhoneError

DEVICE_TYPES = {
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
}


def to_e164(raw: str, region: str) -> phonenumbers.PhoneNumber:
    """Parse ``raw`` (any format, full-width digits too) or raise ``PhoneError``."""
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        raise PhoneError("is empty")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise PhoneError("is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneError("is not a valid phone number")
    return number


def registrable(raw: str, region: str, allow_voip: bool) -> str:
    """The E.164 form of a phone a customer may register, or ``PhoneError``."""
    number = to_e164(raw, region)
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.VOIP:
        if not allow_voip:
            raise PhoneError("is a VoIP number, which proves no device")
    elif kind not in DEVICE_TYPES:
        raise PhoneError("is not a mobile or fixed-line number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=1024)
def display(e164: str) -> str:
    """The national format a customer would dial, e.g. ``050-1234-5678``. Cached: it is shown
    for the few designated numbers on every challenge read, and libphonenumber's parse and
    format cost more than the rest of such a read's own work."""
    number = phonenumbers.parse(e164)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
