"""``authgw simulate-call``: play Twilio's part for the test harness and for people trying it.

It builds the parameters Twilio posts for an inbound call, signs them exactly as Twilio does
(HMAC-SHA1 with the auth token, the first of ``AUTHGW_TWILIO_AUTH_TOKEN``'s list, over
``AUTHGW_PUBLIC_URL`` + path and the sorted parameters, via
``RequestValidator.compute_signature``), posts them to the gateway and prints the TwiML that
came back. With ``--digits`` it then follows the answer's ``<Gather>`` to its action, as
Twilio does when the caller presses keys, with the same CallSid. ``--url`` sends the requests
somewhere other than the public URL (the gateway on loopback behind the public name); the
signature is still over the public URL, as Twilio's would be.

Exit status: 0 when every request got a 2xx answer, 1 on an HTTP error or an unreachable
gateway (with the reason on stderr), 2 on a usage or configuration problem.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import secrets
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from urllib.parse import urlencode, urljoin

import phonenumbers
from twilio.request_validator import RequestValidator

from authgw.errors import ConfigError, SimulationError
from authgw.settings import load_settings, parse_twilio_tokens

VOICE_PATH = "/webhooks/twilio/voice"
ACCOUNT_SID = "AC" + "0" * 32  # a simulated account
CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
DEV_TOKEN = "dev-twilio-auth-token"  # noqa: S105 (what `authgw serve --dev` fills in)
DEV_URL = "http://127.0.0.1:8000"
TIMEOUT = 15  # Twilio's own limit for a webhook answer


def _say(text: str) -> None:
    print(f"authgw: {text}", file=sys.stderr, flush=True)


def _signing(url: str | None) -> tuple[str, str, str]:
    """The auth token (the first, current one of the list), public URL and region, as the
    gateway is configured.

    Unset, they default to what `authgw serve --dev` fills in, the public URL to ``url``.
    """
    try:
        settings = load_settings()
        token, public_url, region = settings.twilio_auth_token, settings.public_url, settings.default_region
    except ConfigError:
        # The simulator needs only these: the API keys and secrets it cannot see do not matter.
        tokens = parse_twilio_tokens(os.environ.get("AUTHGW_TWILIO_AUTH_TOKEN", ""))
        token = tokens[0] if tokens else ""
        public_url = os.environ.get("AUTHGW_PUBLIC_URL", "").strip().rstrip("/")
        region = os.environ.get("AUTHGW_DEFAULT_REGION", "JP").upper()
    if not token:
        token = DEV_TOKEN
        _say(
            "AUTHGW_TWILIO_AUTH_TOKEN is not set: signing with the development token of `authgw serve --dev`"
        )
    if not public_url:
        public_url = (url or DEV_URL).strip().rstrip("/")
        _say(f"AUTHGW_PUBLIC_URL is not set: signing for {public_url}")
    return token, public_url, region


def as_twilio_sends(number: str, region: str) -> str:
    """A number as Twilio would post it: E.164 when it is one, else as given (``anonymous``)."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return number
    if not phonenumbers.is_valid_number(parsed):
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def call_parameters(sid: str, from_: str, to: str) -> dict[str, str]:
    """What Twilio posts for an inbound call (the geographic fields left out)."""
    return {
        "CallSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": from_,
        "To": to,
        "Caller": from_,
        "Called": to,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }


def post(public_url: str, base_url: str, signed_url: str, params: dict[str, str], token: str) -> str:
    """Sign ``params`` for ``signed_url`` and post them where that URL really lives."""
    signature = RequestValidator(token).compute_signature(signed_url, params)
    target = signed_url
    if base_url != public_url and signed_url.startswith(public_url):
        target = base_url + signed_url[len(public_url) :]
    request = urllib.request.Request(  # noqa: S310 (the gateway given)
        target,
        data=urlencode(params).encode(),
        method="POST",
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1 (authgw simulate-call)",
        },
    )
    _say(f"POST {target}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 (the gateway given)
            return str(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        with exc:
            try:
                body = exc.read().decode("utf-8", "replace")
            except (OSError, http.client.HTTPException) as unread:  # a body cut off or stalled
                body = f"(its body could not be read: {type(unread).__name__})"
        raise SimulationError(f"the gateway answered HTTP {exc.code}: {body}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SimulationError(f"cannot reach {target}: {reason}") from None


def run(args: argparse.Namespace) -> int:
    token, public_url, region = _signing(args.url)
    base_url = (args.url or public_url).strip().rstrip("/")
    sid = args.call_sid or "CA" + secrets.token_hex(16)
    if not CALL_SID.fullmatch(sid):
        _say("--call-sid must be CA followed by 32 hex digits")
        return 2
    if args.digits is not None and not re.fullmatch(r"[0-9*#]{1,12}", args.digits):
        _say("--digits must be 1 to 12 of 0-9 * #")
        return 2
    params = call_parameters(sid, as_twilio_sends(args.from_, region), as_twilio_sends(args.to, region))
    _say(f"call {sid} from {params['From']} to {params['To']}")
    try:
        answer = post(public_url, base_url, public_url + VOICE_PATH, params, token)
        print(answer, flush=True)
        if args.digits is None:
            return 0
        try:
            gather = ET.fromstring(answer).find("Gather")  # noqa: S314 (TwiML of the gateway under test)
        except ET.ParseError:
            _say("the answer is not TwiML")
            return 1
        if gather is None or not gather.get("action"):
            _say("the call asked for no keys: --digits not sent")
            return 0
        action = urljoin(public_url + VOICE_PATH, gather.get("action", ""))
        pressed = {**params, "CallStatus": "in-progress", "Digits": args.digits}
        _say(f"pressing {args.digits}")
        print(post(public_url, base_url, action, pressed, token), flush=True)
    except SimulationError as exc:
        _say(str(exc))
        return 1
    return 0
