"""The operator console (/console/) through Flask's test client, on every store."""

from __future__ import annotations

import re
from typing import Any

import pytest

from authgw.app import create_app
from tests.helpers.api import Api, new_challenge, register
from tests.helpers.console import csrf_of, post_form, sign_in
from tests.helpers.settings import API_KEY, OTHER_KEY, settings_for_tests

OPERATOR_KEY = OTHER_KEY  # the client named ops


@pytest.fixture
def settings() -> dict[str, Any]:
    return settings_for_tests(operators="ops")


@pytest.fixture
def web(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def signed_in(web: Any) -> Any:
    assert sign_in(web, OPERATOR_KEY).status_code == 302
    return web


def events_of(api: Api, customer_id: str = "cust-001") -> list[dict[str, Any]]:
    rv = Api(api.client, OPERATOR_KEY).get(f"/v1/customers/{customer_id}/events?limit=100")
    return list(rv.get_json()["events"])


# -- sign-in, roles, session ---------------------------------------------------------------


def test_anonymous_visitor_is_sent_to_sign_in(web: Any) -> None:
    for path in ("/console/", "/console/customers/cust-001"):
        rv = web.get(path)
        assert rv.status_code == 302
        assert rv.headers["Location"].endswith("/console/sign-in")


def test_operator_key_signs_in_with_a_strict_httponly_secure_cookie(web: Any) -> None:
    rv = sign_in(web, OPERATOR_KEY)
    assert rv.status_code == 302 and rv.headers["Location"].endswith("/console/")
    cookie = rv.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    assert OPERATOR_KEY not in cookie
    assert web.get("/console/").status_code == 200


def test_corebank_key_is_refused(web: Any) -> None:
    rv = sign_in(web, API_KEY)
    assert rv.status_code == 403
    assert web.get("/console/").status_code == 302


def test_wrong_key_is_refused(web: Any) -> None:
    assert sign_in(web, "not-a-key-at-all").status_code == 401
    assert web.get("/console/").status_code == 302


def test_sign_in_without_csrf_token_is_refused(web: Any) -> None:
    web.get("/console/sign-in")
    rv = web.post("/console/sign-in", data={"api_key": OPERATOR_KEY})
    assert rv.status_code == 400
    assert web.get("/console/").status_code == 302


def test_idle_session_times_out_after_15_minutes(signed_in: Any, clock: Any) -> None:
    clock.advance(14 * 60)
    assert signed_in.get("/console/").status_code == 200  # a request keeps it alive
    clock.advance(14 * 60)
    assert signed_in.get("/console/").status_code == 200
    clock.advance(15 * 60 + 1)
    rv = signed_in.get("/console/")
    assert rv.status_code == 302 and "expired=1" in rv.headers["Location"]
    assert signed_in.get("/console/").status_code == 302  # the session is gone


def test_removed_key_ends_its_sessions(store: Any, clock: Any) -> None:
    before = create_app({**settings_for_tests(operators="ops"), "redis_client": store, "clock": clock})
    web = before.test_client()
    assert sign_in(web, OPERATOR_KEY).status_code == 302
    rotated = settings_for_tests(operators="ops", api_keys=f"corebank={API_KEY},ops=ops-new-key-000000001")
    after = create_app({**rotated, "redis_client": store, "clock": clock})
    moved = after.test_client()
    session = web.get_cookie("authgw_console")
    assert session is not None
    moved.set_cookie("authgw_console", session.value)
    assert moved.get("/console/").status_code == 302


def test_sign_out_ends_the_session(signed_in: Any) -> None:
    rv = post_form(signed_in, "/console/sign-out", "/console/")
    assert rv.status_code == 302
    assert signed_in.get("/console/").status_code == 302


def test_pages_carry_a_csp_without_inline_script(signed_in: Any) -> None:
    for path in ("/console/sign-in", "/console/"):
        csp = signed_in.get(path).headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "<script>" not in signed_in.get(path).get_data(as_text=True)


def test_the_api_is_untouched_by_the_console(api: Api) -> None:
    rv = api.put("/v1/customers/cust-001", json={"phones": ["090-1234-5678"]})
    assert rv.status_code == 200
    assert "Set-Cookie" not in rv.headers
    assert "Content-Security-Policy" not in rv.headers


# -- find a customer -----------------------------------------------------------------------


TYPED = ["090-1234-5678", "０９０－１２３４－５６７８", "+81 90 1234 5678", "09012345678"]


@pytest.mark.parametrize("typed", TYPED)
def test_find_a_customer_by_a_phone_number_as_typed(signed_in: Any, api: Api, typed: str) -> None:
    register(api, "cust-001", ("090-1234-5678",))
    rv = signed_in.get("/console/", query_string={"q": typed})
    assert rv.status_code == 302
    assert rv.headers["Location"].endswith("/console/customers/cust-001")


def test_find_a_customer_by_id_and_a_miss(signed_in: Any, api: Api) -> None:
    register(api, "cust-001")
    assert signed_in.get("/console/?q=cust-001").headers["Location"].endswith("/customers/cust-001")
    rv = signed_in.get("/console/?q=nobody")
    assert rv.status_code == 200 and 'id="no-match"' in rv.get_data(as_text=True)


def test_a_phone_shared_by_two_customers_lists_both(signed_in: Any, api: Api) -> None:
    register(api, "cust-001", ("090-1234-5678",))
    register(api, "cust-002", ("090-1234-5678",))
    page = signed_in.get("/console/?q=09012345678").get_data(as_text=True)
    assert "cust-001" in page and "cust-002" in page


# -- the customer page ---------------------------------------------------------------------


def test_customer_page_masks_phones_until_asked_and_audits_the_reveal(signed_in: Any, api: Api) -> None:
    register(api, "cust-001", ("090-1234-5678",))
    page = signed_in.get("/console/customers/cust-001").get_data(as_text=True)
    assert "•••-••••-5678" in page and "090-1234-5678" not in page
    rv = post_form(signed_in, "/console/customers/cust-001/phones", "/console/customers/cust-001")
    assert rv.status_code == 200 and "090-1234-5678" in rv.get_data(as_text=True)
    viewed = [e for e in events_of(api) if e["type"] == "customer.phones_viewed"]
    assert len(viewed) == 1 and viewed[0]["by"] == "ops"


def test_reveal_without_csrf_changes_nothing(signed_in: Any, api: Api) -> None:
    register(api, "cust-001")
    rv = signed_in.post("/console/customers/cust-001/phones", data={"csrf_token": "forged"})
    assert rv.status_code == 400
    assert not [e for e in events_of(api) if e["type"] == "customer.phones_viewed"]


def test_unknown_customer_is_404(signed_in: Any) -> None:
    assert signed_in.get("/console/customers/nobody").status_code == 404
    assert signed_in.get("/console/customers/bad%20id").status_code == 404


def test_customer_page_shows_open_challenges_and_the_trail(signed_in: Any, api: Api) -> None:
    register(api, "cust-001")
    challenge = new_challenge(api)
    page = signed_in.get("/console/customers/cust-001").get_data(as_text=True)
    assert challenge["id"] in page
    assert "challenge.created" in page and "customer.phones_changed" in page


def test_trail_pages_newest_first(signed_in: Any, api: Api) -> None:
    register(api, "cust-001")
    for _ in range(25):
        post_form(signed_in, "/console/customers/cust-001/phones", "/console/customers/cust-001")
    ids = [e["id"] for e in events_of(api)]
    assert len(ids) == 26
    first = signed_in.get("/console/customers/cust-001").get_data(as_text=True)
    assert 'id="older"' in first
    second = signed_in.get(f"/console/customers/cust-001?before={ids[19]}").get_data(as_text=True)
    # The first page holds the 20 newest, newest first; the second the 6 older than the 20th.
    assert re.findall(r'data-event="([^"]+)"', first) == ids[:20]
    assert re.findall(r'data-event="([^"]+)"', second) == ids[20:]
    assert 'id="older"' not in second


# -- actions -------------------------------------------------------------------------------


def test_lock_needs_the_confirmation_then_locks_with_the_note_and_operator(signed_in: Any, api: Api) -> None:
    register(api, "cust-001")
    confirm = signed_in.get("/console/customers/cust-001/confirm/lock?note=顧客から紛失の連絡")
    assert confirm.status_code == 200
    assert api.get("/v1/customers/cust-001").get_json()["lock"] is None  # the question alone locks nothing
    token = csrf_of(confirm)
    rv = signed_in.post(
        "/console/customers/cust-001/lock", data={"csrf_token": token, "note": "顧客から紛失の連絡"}
    )
    assert rv.status_code == 302
    lock = api.get("/v1/customers/cust-001").get_json()["lock"]
    assert lock["reason"] == "operator" and lock["by"] == "ops"
    locked = [e for e in events_of(api) if e["type"] == "customer.locked"]
    assert locked[0]["by"] == "ops" and locked[0].get("note") == "顧客から紛失の連絡"
    page = signed_in.get("/console/customers/cust-001").get_data(as_text=True)
    assert 'id="lock-by">ops' in page


def test_forged_lock_form_is_refused(signed_in: Any, api: Api) -> None:
    register(api, "cust-001")
    rv = signed_in.post("/console/customers/cust-001/lock", data={"note": "x"})
    assert rv.status_code == 400
    assert api.get("/v1/customers/cust-001").get_json()["lock"] is None


def test_unlock_and_remove_totp_are_audited(signed_in: Any, api: Api, clock: Any) -> None:
    from tests.helpers.api import enrol_totp

    register(api, "cust-001")
    enrol_totp(api, clock)
    base = "/console/customers/cust-001"
    for action in ("lock", "unlock", "remove_totp"):
        assert post_form(signed_in, f"{base}/{action}", f"{base}/confirm/{action}").status_code == 302
    customer = api.get("/v1/customers/cust-001").get_json()
    assert customer["lock"] is None and customer["totp"] == "none"
    trail = {e["type"]: e for e in events_of(api)}
    assert trail["customer.unlocked"]["by"] == "ops" and trail["totp.removed"]["by"] == "ops"


def test_an_unknown_action_is_404(signed_in: Any, api: Api) -> None:
    register(api, "cust-001")
    assert signed_in.get("/console/customers/cust-001/confirm/delete").status_code == 404


# -- language ------------------------------------------------------------------------------


def test_japanese_by_default_whatever_the_browser_asks(web: Any) -> None:
    page = web.get("/console/sign-in", headers={"Accept-Language": "en-US,en"}).get_data(as_text=True)
    assert "サインイン" in page and 'lang="ja"' in page


def test_switching_to_english_is_remembered(signed_in: Any) -> None:
    rv = post_form(signed_in, "/console/language", "/console/", lang="en", next="/console/")
    assert rv.status_code == 302
    assert "Find a customer" in signed_in.get("/console/").get_data(as_text=True)
    post_form(signed_in, "/console/language", "/console/", lang="ja", next="https://evil.example/")
    rv = signed_in.get("/console/")
    assert "顧客を検索" in rv.get_data(as_text=True)


def test_language_setting_sets_the_default(store: Any, clock: Any) -> None:
    app = create_app(
        {**settings_for_tests(operators="ops", console_language="en"), "redis_client": store, "clock": clock}
    )
    assert "Sign in" in app.test_client().get("/console/sign-in").get_data(as_text=True)


def test_the_demo_is_only_in_development_mode(web: Any) -> None:
    assert web.get("/demo/").status_code == 404


@pytest.mark.parametrize(
    "dev, public_url, secure",
    [
        (True, "http://127.0.0.1:8000", False),
        (True, "http://localhost:8000", False),
        (True, "https://gw.example.jp", True),
        (True, "http://gw.example.jp", True),
        (False, "http://127.0.0.1:8000", True),
    ],
)
def test_the_cookie_goes_without_secure_only_on_a_dev_loopback(
    store: Any, clock: Any, dev: bool, public_url: str, secure: bool
) -> None:
    settings = settings_for_tests(operators="ops", dev=dev, public_url=public_url)
    web = create_app({**settings, "redis_client": store, "clock": clock}).test_client()
    cookie = sign_in(web, OPERATOR_KEY).headers["Set-Cookie"]
    assert ("Secure" in cookie) is secure
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
