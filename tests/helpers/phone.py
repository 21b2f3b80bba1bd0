"""Twilio's side of whole calls for the lock and fraud-response tests: TwiML, keys, races.

Calls are signed exactly as Twilio signs them, so they go through the same door as Twilio.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twilio.request_validator import RequestValidator

from tests.helpers.api import Api
from tests.helpers.settings import PUBLIC_URL, TWILIO_TOKEN
from tests.helpers.webhooks import new_sid as new_sid  # one sid maker for every helper

PHONE = "+819012345678"


def twiml(rv: Any) -> ET.Element:
    """The response as parsed TwiML (a parse error fails the test)."""
    assert rv.status_code == 200, rv.get_data(as_text=True)
    assert rv.mimetype == "text/xml"
    root = ET.fromstring(rv.get_data())
    assert root.tag == "Response"
    return root


def spoken(root: ET.Element) -> str:
    """Everything said, checking that every <Say> is in Japanese."""
    says = list(root.iter("Say"))
    assert says, ET.tostring(root, encoding="unicode")
    for say in says:
        assert say.attrib.get("language") == "ja-JP"
    return "".join(say.text or "" for say in says)


def verbs(root: ET.Element) -> list[str]:
    return [child.tag for child in root]


def gather_of(root: ET.Element) -> ET.Element:
    gather = root.find("Gather")
    assert gather is not None, ET.tostring(root, encoding="unicode")
    return gather


@dataclass
class Phone:
    """Twilio's side of calls, over an app's test client."""

    client: Any

    def post(self, url: str, params: dict[str, str]) -> Any:
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
        assert url.startswith(PUBLIC_URL)
        return self.client.post(
            url[len(PUBLIC_URL) :], data=params, headers={"X-Twilio-Signature": signature}
        )

    def call(self, from_: str, to: str, sid: str) -> Any:
        params = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": from_, "To": to}
        return self.post(f"{PUBLIC_URL}/webhooks/twilio/voice", {**params, "CallStatus": "ringing"})

    def press(self, gather: ET.Element, digits: str, sid: str, from_: str = PHONE) -> Any:
        """Follow a <Gather> to its action with the keys pressed, as Twilio does."""
        return self.post(gather.attrib["action"], {"CallSid": sid, "Digits": digits, "From": from_})


def events(api: Api, customer_id: str = "cust-001") -> list[dict[str, Any]]:
    """The customer's events, oldest first."""
    rv = api.get(f"/v1/customers/{customer_id}/events?limit=100")
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return list(reversed(rv.get_json()["events"]))


def of_type(api: Api, event_type: str, customer_id: str = "cust-001") -> list[dict[str, Any]]:
    return [e for e in events(api, customer_id) if e["type"] == event_type]


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run each call in its own thread, all released at once by a barrier."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = call()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racing request never returned"
    assert not errors, errors
    return results
