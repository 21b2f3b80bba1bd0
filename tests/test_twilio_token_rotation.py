"""Rotating the Twilio auth token without downtime: ``AUTHGW_TWILIO_AUTH_TOKEN`` is a list.

The first token is the current one (``simulate-call`` signs with it); a webhook signed with
any token of the list is Twilio's. One signed with a token not in the list is 403 and changes
nothing, like any other bad signature.
"""

from __future__ import annotations

import argparse
import http.server
import secrets
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
from twilio.request_validator import RequestValidator

from authgw.app import create_app
from authgw.settings import load_settings
from authgw.webhooks import simulate
from tests.helpers.api import Api, assert_problem, new_challenge, register
from tests.helpers.settings import PUBLIC_URL, settings_for_tests
from tests.helpers.stores import every_key

NEW_TOKEN = "new-twilio-auth-token-0000000002"
OLD_TOKEN = "old-twilio-auth-token-0000000001"
VOICE = "/webhooks/twilio/voice"
PHONE = "+819012345678"  # register()'s default phone, as Twilio sends it


@pytest.fixture
def rotating_app(store: Any, clock: Any) -> Any:
    settings = settings_for_tests(twilio_auth_token=f" {NEW_TOKEN} , {OLD_TOKEN} ")
    return create_app({**settings, "redis_client": store, "clock": clock})


@pytest.fixture
def api_of(rotating_app: Any) -> Any:
    return Api(rotating_app.test_client())


def snapshot(client: Any) -> dict[str, Any]:
    """Every key and its value, on every primary of a cluster too."""
    state: dict[str, Any] = {}
    for key in every_key(client):
        kind = client.type(key)
        if kind == "hash":
            state[key] = client.hgetall(key)
        elif kind == "stream":
            state[key] = client.xrange(key)
        elif kind == "set":
            state[key] = client.smembers(key)
        elif kind == "zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            state[key] = client.lrange(key, 0, -1)
        else:
            state[key] = client.get(key)
    return state


def voice_call(app: Any, to: str, token: str) -> Any:
    params = simulate.call_parameters("CA" + secrets.token_hex(16), PHONE, to)
    signature = RequestValidator(token).compute_signature(PUBLIC_URL + VOICE, params)
    return app.test_client().post(VOICE, data=params, headers={"X-Twilio-Signature": signature})


@pytest.mark.parametrize("token", [NEW_TOKEN, OLD_TOKEN], ids=["current", "previous"])
def test_a_call_signed_with_any_listed_token_is_accepted(rotating_app, api_of, token):
    register(api_of)
    challenge = new_challenge(api_of)
    rv = voice_call(rotating_app, challenge["callback"]["number"], token)
    assert rv.status_code == 200 and rv.mimetype == "text/xml", rv.get_data(as_text=True)
    assert "<Reject" in rv.get_data(as_text=True)
    assert api_of.get(f"/v1/challenges/{challenge['id']}").get_json()["status"] == "verified"


@pytest.mark.parametrize(
    "token",
    [
        "retired-twilio-auth-token-000000",
        f"{NEW_TOKEN},{OLD_TOKEN}",  # the setting itself is not a token
        NEW_TOKEN[:-1],
        "",
    ],
)
def test_a_call_signed_with_a_token_not_listed_is_403_and_changes_nothing(rotating_app, api_of, store, token):
    register(api_of)
    challenge = new_challenge(api_of)
    before = snapshot(store)
    rv = voice_call(rotating_app, challenge["callback"]["number"], token)
    assert_problem(rv, 403, "forbidden")
    assert NEW_TOKEN not in rv.get_data(as_text=True) and OLD_TOKEN not in rv.get_data(as_text=True)
    assert snapshot(store) == before
    assert api_of.get(f"/v1/challenges/{challenge['id']}").get_json()["status"] == "pending"


def test_the_list_is_parsed_first_token_current():
    settings = load_settings(settings_for_tests(twilio_auth_token=f"{NEW_TOKEN}, {OLD_TOKEN},"))
    assert settings.twilio_auth_token == NEW_TOKEN
    assert settings.twilio_auth_tokens == (NEW_TOKEN, OLD_TOKEN)
    assert NEW_TOKEN not in repr(settings) and OLD_TOKEN not in repr(settings)


# -- simulate-call signs with the current token ---------------------------------------------


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every POST with an empty TwiML response and keeps what it was sent."""

    seen: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, self.headers["X-Twilio-Signature"], body))
        answer = b"<?xml version='1.0' encoding='UTF-8'?><Response><Reject/></Response>"
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    seen: list[tuple[str, str, bytes]] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize("complete", [True, False], ids=["settings-load", "simulator-only-env"])
def test_simulate_call_signs_with_the_first_token(monkeypatch, recorder, complete):
    url, seen = recorder
    for name in ("AUTHGW_API_KEYS", "AUTHGW_SECRET_KEY", "AUTHGW_CALLBACK_NUMBERS", "AUTHGW_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    if complete:  # the whole gateway configuration: load_settings() succeeds
        for name, value in settings_for_tests().items():
            if name != "twilio_auth_token":
                monkeypatch.setenv(f"AUTHGW_{name.upper()}", value)
    monkeypatch.setenv("AUTHGW_TWILIO_AUTH_TOKEN", f"{NEW_TOKEN},{OLD_TOKEN}")
    monkeypatch.setenv("AUTHGW_PUBLIC_URL", PUBLIC_URL)
    args = argparse.Namespace(from_="090-1234-5678", to="050-3000-0001", digits=None, url=url, call_sid=None)
    assert simulate.run(args) == 0
    ((path, signature, body),) = seen
    params = dict(parse_qsl(body.decode()))
    assert path == VOICE
    assert signature == RequestValidator(NEW_TOKEN).compute_signature(PUBLIC_URL + VOICE, params)
