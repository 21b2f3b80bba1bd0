"""The suite's keys, tokens and numbers, the settings every app starts from, and the clock."""

from __future__ import annotations

import time
from typing import Any

API_KEY = "corebank-test-key-0001"
OTHER_KEY = "ops-test-key-000000001"
SECRET_KEY = "test-secret-key-with-at-least-32-characters"
TWILIO_TOKEN = "test-twilio-auth-token"
PUBLIC_URL = "https://gw.example.jp"
CALLBACK_NUMBERS = ("+815030000001", "+815030000002", "+815030000003")


class Clock:
    """A clock the test moves by hand; starts at the real time so TTLs stay sensible."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def settings_for_tests(**overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "api_keys": f"corebank={API_KEY},ops={OTHER_KEY}",
        "secret_key": SECRET_KEY,
        "twilio_auth_token": TWILIO_TOKEN,
        "public_url": PUBLIC_URL,
        "callback_numbers": ",".join(CALLBACK_NUMBERS),
    }
    settings.update(overrides)
    return settings
