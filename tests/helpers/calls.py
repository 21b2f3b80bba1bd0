"""The phone callback tests' side of Twilio: a ``Phone`` that posts to any URL with any token
and remembers the sids it called with, ``approve`` (call, and answer in confirm and code
modes), and what a challenge and the trail say afterwards.

Calls are signed exactly as Twilio signs them (``RequestValidator.compute_signature`` over
``AUTHGW_PUBLIC_URL`` + path and the form), so they go through the same door as Twilio.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator

from authgw.webhooks.simulate import call_parameters
from tests.helpers.api import Api
from tests.helpers.phone import PHONE, twiml
from tests.helpers.settings import CALLBACK_NUMBERS, PUBLIC_URL, TWILIO_TOKEN
from tests.helpers.webhooks import new_sid

LINE_1, LINE_2, LINE_3 = CALLBACK_NUMBERS
MODES = ("reject", "confirm", "code")


def spoken(root: ET.Element) -> str:
    """Everything said (any language: see ``tests.helpers.phone.spoken`` for the ja-JP check)."""
    return "".join(say.text or "" for say in root.iter("Say"))


@dataclass
class Phone:
    """Twilio's side of a call, over the app's test client."""

    client: Any
    token: str = TWILIO_TOKEN
    public_url: str = PUBLIC_URL
    sids: list[str] = field(default_factory=list)

    def post(self, url: str, params: dict[str, str], *, signature: str | None = None) -> Any:
        if signature is None:
            signature = RequestValidator(self.token).compute_signature(url, params)
        if url.startswith(self.public_url):  # the proxy in front strips the public base
            path = url[len(self.public_url) :]
        else:
            parts = urlsplit(url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.client.post(path, data=params, headers={"X-Twilio-Signature": signature})

    def call(self, from_: str = PHONE, to: str = LINE_1, sid: str | None = None, **extra: str) -> Any:
        sid = sid or new_sid()
        self.sids.append(sid)
        params = {**call_parameters(sid, from_, to), **extra}
        return self.post(f"{self.public_url}/webhooks/twilio/voice", params)

    def press(self, gather: ET.Element, digits: str, sid: str | None = None) -> Any:
        """Follow a <Gather> to its action with the keys pressed, as Twilio does."""
        sid = sid or self.sids[-1]
        return self.post(
            gather.attrib["action"], {"CallSid": sid, "Digits": digits, "From": PHONE, "To": LINE_1}
        )

    def status(self, sid: str, call_status: str = "completed", **extra: str) -> Any:
        return self.post(
            f"{self.public_url}/webhooks/twilio/status", {"CallSid": sid, "CallStatus": call_status, **extra}
        )


def approve(
    phone: Phone,
    mode: str,
    challenge: dict[str, Any],
    from_: str = PHONE,
    to: str | None = None,
    sid: str | None = None,
) -> ET.Element:
    """Call the challenge's number and, in confirm and code modes, answer as the customer."""
    root = twiml(phone.call(from_, to or challenge["callback"]["number"], sid))
    if mode == "reject":
        return root
    gather = root.find("Gather")
    assert gather is not None, ET.tostring(root)
    keys = "1" if mode == "confirm" else challenge["callback"]["code"]
    return twiml(phone.press(gather, keys, sid))


def other_code(code: str) -> str:
    """A six-digit code that is not ``code``."""
    return "000000" if code != "000000" else "111111"


def status_of(api: Api, challenge: dict[str, Any]) -> dict[str, Any]:
    rv = api.get(f"/v1/challenges/{challenge['id']}")
    assert rv.status_code == 200
    return rv.get_json()


def events(api: Api, customer_id: str = "cust-001") -> list[dict[str, Any]]:
    """The customer's events, newest first."""
    return api.get(f"/v1/customers/{customer_id}/events?limit=100").get_json()["events"]


def types(api: Api, customer_id: str = "cust-001") -> list[str]:
    """The customer's event types, oldest first."""
    return [e["type"] for e in reversed(events(api, customer_id))]
