"""Helpers (not fixtures) for the console tests: a signed-in test client, CSRF tokens."""

from __future__ import annotations

import re
from typing import Any

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: Any) -> str:
    """The CSRF token of a page's first form."""
    match = TOKEN.search(page.get_data(as_text=True))
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def sign_in(client: Any, key: str) -> Any:
    """Sign ``client`` (a Flask test client) in with ``key``; returns the answer to the POST."""
    token = csrf_of(client.get("/console/sign-in"))
    return client.post("/console/sign-in", data={"api_key": key, "csrf_token": token})


def post_form(client: Any, path: str, from_page: str, **fields: str) -> Any:
    """Post a form of the console as a person would: with the token of the page it is on."""
    token = csrf_of(client.get(from_page))
    return client.post(path, data={"csrf_token": token, **fields})
