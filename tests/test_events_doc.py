"""docs/events.md: the few lines of hmac it gives a receiver, run as written against deliveries
signed by the ``standardwebhooks`` package (what the gateway signs with)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from tests.helpers.delivery_signing import new_secret

DOC = Path(__file__).resolve().parent.parent / "docs" / "events.md"
BODY = b'{"type":"customer.locked","timestamp":"2026-12-02T03:00:00.000Z","data":{"id":"ev_x"}}'


def hmac_block() -> str:
    blocks = [b.split("\n```", 1)[0] for b in DOC.read_text("utf-8").split("```python\n")[1:]]
    (block,) = [b for b in blocks if "def verified(" in b]
    return block


@pytest.fixture(scope="module")
def verified():
    scope: dict = {}
    exec(hmac_block(), scope)
    return scope["verified"]


def library_headers(secrets: list[str], at: float | None = None, msg_id: str = "ev_x") -> dict[str, str]:
    when = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    signatures = [Webhook(s).sign(msg_id, when, BODY.decode()) for s in secrets]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


def test_the_docs_check_is_about_six_lines(verified):
    assert len(hmac_block().strip().splitlines()) <= 10


def test_the_docs_check_accepts_what_the_library_signs(verified):
    secret = new_secret()
    assert verified(library_headers([secret]), BODY, secret)


def test_the_docs_check_accepts_either_secret_of_a_rotation(verified):
    old, new = new_secret(), new_secret()
    headers = library_headers([new, old])
    assert verified(headers, BODY, old) and verified(headers, BODY, new)


def test_the_docs_check_refuses_a_tampered_body_a_wrong_secret_and_a_stale_timestamp(verified):
    secret = new_secret()
    assert not verified(library_headers([secret]), BODY.replace(b"locked", b"unlocked"), secret)
    assert not verified(library_headers([secret]), BODY, new_secret())
    assert not verified(library_headers([secret], at=time.time() - 600), BODY, secret)
