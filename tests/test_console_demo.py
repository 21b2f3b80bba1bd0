"""The demo's routes (/demo/, development mode only) through Flask's test client.

The call itself goes over HTTP to the gateway's public URL, so it is tested against a served
gateway in tests/test_console_browser.py; here: the transfer, the polling read, the refusals.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.helpers.settings import settings_for_tests


@pytest.fixture
def settings() -> dict[str, Any]:
    return settings_for_tests(operators="ops", dev=True)


@pytest.fixture
def demo(app: Any) -> tuple[Any, str]:
    client = app.test_client()
    page = client.get("/demo/")
    assert page.status_code == 200
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.get_data(as_text=True))
    assert token
    return client, token.group(1)


def test_demo_page_has_no_inline_script(demo: tuple[Any, str]) -> None:
    client, _ = demo
    rv = client.get("/demo/")
    assert "unsafe-inline" not in rv.headers["Content-Security-Policy"]
    assert "<script>" not in rv.get_data(as_text=True)


def test_a_transfer_shows_the_number_to_call_and_is_read_back(demo: tuple[Any, str]) -> None:
    client, token = demo
    rv = client.post("/demo/transfers", json={"amount": 150000}, headers={"X-CSRFToken": token})
    assert rv.status_code == 201
    challenge = rv.get_json()
    assert challenge["status"] == "pending" and challenge["callback"]["number"].startswith("+8150")
    read = client.get(f"/demo/transfers/{challenge['id']}")
    assert read.status_code == 200 and read.get_json()["id"] == challenge["id"]


def test_demo_posts_without_csrf_are_refused(demo: tuple[Any, str]) -> None:
    client, _ = demo
    assert client.post("/demo/transfers", json={"amount": 1}).status_code == 400
    assert client.post("/demo/calls", json={"from": "registered", "to": "+815030000001"}).status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"from": "someone", "to": "+815030000001"},
        {"from": "registered", "to": "+819011112222"},  # not a designated number
        {
            "from": "registered",
            "to": "+815030000001",
            "digits": "1",
            "call_sid": "CA" + "0" * 32,
            "action": "https://elsewhere.example/steal",
        },
    ],
)
def test_demo_calls_go_only_to_this_gateways_numbers_and_webhooks(demo: tuple[Any, str], body: Any) -> None:
    client, token = demo
    assert client.post("/demo/calls", json=body, headers={"X-CSRFToken": token}).status_code == 422


@pytest.mark.parametrize("amount", [0, -5, "100", 10**12, True])
def test_a_bad_amount_is_refused(demo: tuple[Any, str], amount: Any) -> None:
    client, token = demo
    assert (
        client.post("/demo/transfers", json={"amount": amount}, headers={"X-CSRFToken": token}).status_code
        == 422
    )
