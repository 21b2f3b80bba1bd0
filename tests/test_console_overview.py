"""The console overview: counts from the store, the same on every gateway host, by the hour
and the day on the injected clock."""

from __future__ import annotations

from typing import Any

import pytest

from authgw.app import create_app
from tests.helpers.api import Api, enrol_totp, new_challenge, register, totp_code
from tests.helpers.console import post_form, sign_in
from tests.helpers.phone import Phone, gather_of, new_sid, twiml
from tests.helpers.settings import OTHER_KEY, settings_for_tests


@pytest.fixture
def settings() -> dict[str, Any]:
    return settings_for_tests(operators="ops")


def overview(app: Any) -> dict[str, int]:
    web = app.test_client()
    assert sign_in(web, OTHER_KEY).status_code == 302
    page = web.get("/console/").get_data(as_text=True)
    counts = {}
    for name in ("verified", "failed", "fraud", "locks"):
        marker = f'id="count-{name}">'
        counts[name] = int(page.split(marker, 1)[1].split("<", 1)[0])
    return counts


def test_verifications_and_wrong_codes_count_for_an_hour(app: Any, api: Api, clock: Any) -> None:
    register(api)
    secret = enrol_totp(api, clock)
    first = new_challenge(api, methods=["totp"])
    wrong = "000000" if totp_code(secret, clock()) != "000000" else "111111"
    assert api.post(f"/v1/challenges/{first['id']}/totp", json={"code": wrong}).status_code == 422
    clock.advance(30)
    code = totp_code(secret, clock())
    assert api.post(f"/v1/challenges/{first['id']}/totp", json={"code": code}).status_code == 200
    assert overview(app) == {"verified": 1, "failed": 1, "fraud": 0, "locks": 0}
    clock.advance(59 * 60)
    assert overview(app)["verified"] == 1
    clock.advance(2 * 60)
    assert overview(app) == {"verified": 0, "failed": 0, "fraud": 0, "locks": 0}


def test_a_call_that_verifies_counts(app: Any, api: Api) -> None:
    register(api)
    challenge = new_challenge(api, methods=["callback"])
    Phone(app.test_client()).call("+819012345678", challenge["callback"]["number"], new_sid())
    assert api.get(f"/v1/challenges/{challenge['id']}").get_json()["status"] == "verified"
    assert overview(app)["verified"] == 1


def test_counts_are_shared_by_every_gateway_host(app: Any, store: Any, clock: Any, api: Api) -> None:
    register(api)
    web = api.client
    assert sign_in(web, OTHER_KEY).status_code == 302
    base = "/console/customers/cust-001"
    post_form(web, f"{base}/lock", f"{base}/confirm/lock", note="test")
    other_host = create_app({**settings_for_tests(operators="ops"), "redis_client": store, "clock": clock})
    # Each host sends its counts every few seconds (here by hand): until then only it has them.
    assert overview(other_host)["locks"] == 0
    app.extensions["authgw_console_stats"].flush()
    assert overview(other_host)["locks"] == 1


def test_a_host_sends_its_counts_by_itself_in_the_background(store: Any, monkeypatch: Any) -> None:
    from authgw.console import stats

    monkeypatch.setattr(stats, "FLUSH_SECONDS", 0.01)  # the wait is not what is tested
    served = create_app({**settings_for_tests(operators="ops"), "redis_client": store})
    counter = served.extensions["authgw_console_stats"]
    Api(served.test_client(), OTHER_KEY).put("/v1/customers/cust-bg", json={"phones": ["090-1234-5678"]})
    Api(served.test_client(), OTHER_KEY).post("/v1/customers/cust-bg/lock", json={})
    flusher = counter._flusher
    assert flusher is not None  # started by the count, sends after FLUSH_SECONDS
    flusher.join(30)
    assert not counter._pending  # sent by the thread, not by the overview below
    assert counter.overview()["locks"] == 1


@pytest.mark.parametrize("settings", [settings_for_tests(operators="ops", callback_mode="confirm")])
def test_a_fraud_report_counts_today_with_its_lock(app: Any, api: Api, clock: Any) -> None:
    register(api)
    challenge = new_challenge(api, methods=["callback"])
    phone = Phone(app.test_client())
    sid = new_sid()
    gather = gather_of(twiml(phone.call("+819012345678", challenge["callback"]["number"], sid)))
    twiml(phone.press(gather, "9", sid))
    assert api.get("/v1/customers/cust-001").get_json()["lock"]["reason"] == "fraud_report"
    counts = overview(app)
    assert counts["fraud"] == 1 and counts["locks"] == 1
    clock.advance(86400)
    assert overview(app)["fraud"] == 0
