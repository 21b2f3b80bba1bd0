"""The console's webhooks page and the overview's endpoints with their lag, through Flask's test
client on every store: roles, CSRF, the retry of a failed delivery behind its confirmation and
its audit in the store (shown on the page), the refusal of a retry of one that is not failed.
Deliveries are queued as test events and failed by the deliverer's own calls on the test's
clock (no HTTP here; the browser test delivers for real)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from authgw.app import create_app
from tests.helpers.api import Api
from tests.helpers.console import csrf_of, post_form, sign_in
from tests.helpers.delivering import deliveries, endpoint, fail_due
from tests.helpers.outbound import audit_trail
from tests.helpers.settings import API_KEY, OTHER_KEY, settings_for_tests

OPERATOR_KEY = OTHER_KEY  # the client named ops
SETTINGS = {"operators": "ops", "webhook_retry_schedule": "5"}  # two tries, then failed


@pytest.fixture
def settings() -> dict[str, Any]:
    return settings_for_tests(**SETTINGS)


@pytest.fixture
def ops(other_api: Api) -> Api:
    return other_api


@pytest.fixture
def signed_in(app: Any) -> Any:
    web = app.test_client()
    assert sign_in(web, OPERATOR_KEY).status_code == 302
    return web


def retries_audited(app: Any, store: Any) -> list[dict[str, str]]:
    """The store's audit entries of retried deliveries, newest first."""
    return [a for a in audit_trail(app, store) if a["action"] == "webhook.delivery_retried"]


def queue_test_event(ops: Api, name: str) -> str:
    rv = ops.post(f"/v1/webhooks/{name}/test")
    assert rv.status_code == 202, rv.get_data(as_text=True)
    return str(rv.get_json()["id"])


def failed_delivery(app: Any, ops: Api, clock: Any, name: str = "core") -> str:
    """A new endpoint ``name`` (unless it exists) with one delivery driven to ``failed``."""
    if ops.get(f"/v1/webhooks/{name}").status_code == 404:
        endpoint(ops, name, f"https://bank.example.jp/{name}", ["customer.*"])
    delivery_id = queue_test_event(ops, name)
    assert fail_due(app, clock, name) == [delivery_id]
    return delivery_id


def state_of(ops: Api, name: str, delivery_id: str) -> str:
    return next(d["state"] for d in deliveries(ops, name) if d["id"] == delivery_id)


def retry_path(name: str, delivery_id: str) -> str:
    return f"/console/webhooks/{name}/deliveries/{delivery_id}/retry"


def confirm_path(name: str, delivery_id: str) -> str:
    return f"/console/webhooks/{name}/deliveries/{delivery_id}/confirm-retry"


# -- who sees it ---------------------------------------------------------------------------


def test_anonymous_visitor_is_sent_to_sign_in(app: Any, ops: Api, clock: Any) -> None:
    delivery_id = failed_delivery(app, ops, clock)
    web = app.test_client()
    for path in ("/console/webhooks", confirm_path("core", delivery_id)):
        rv = web.get(path)
        assert rv.status_code == 302 and rv.headers["Location"].endswith("/console/sign-in")
    assert state_of(ops, "core", delivery_id) == "failed"


def test_a_corebank_key_is_refused_with_403(app: Any) -> None:
    web = app.test_client()
    assert sign_in(web, API_KEY).status_code == 403
    assert web.get("/console/webhooks").status_code == 302


def test_operator_sees_every_endpoint_and_its_failed_deliveries_newest_first(
    signed_in: Any, app: Any, ops: Api, clock: Any
) -> None:
    first = failed_delivery(app, ops, clock)
    clock.advance(1)
    second = failed_delivery(app, ops, clock)
    endpoint(
        ops, "archive", "https://archive.example.jp/in", ["challenge.*", "customer.locked"], enabled=False
    )
    rv = signed_in.get("/console/webhooks")
    assert rv.status_code == 200
    assert "unsafe-inline" not in rv.headers["Content-Security-Policy"]
    page = rv.get_data(as_text=True)
    assert "銀行への Webhook" in page  # Japanese first
    core = page.split('id="webhook-core"', 1)[1].split("</section>", 1)[0]
    archive = page.split('id="webhook-archive"', 1)[1].split("</section>", 1)[0]
    assert "https://bank.example.jp/core" in core and "customer.*" in core and "有効" in core
    assert "https://archive.example.jp/in" in archive and "customer.locked" in archive and "無効" in archive
    for section, name in ((core, "core"), (archive, "archive")):
        created = ops.get(f"/v1/webhooks/{name}").get_json()["created_at"]
        assert created in section and 'data-lag="0.0"' in section
    failed = core.split("配信失敗（新しい順）", 1)[1].split("最近の配信", 1)[0]
    assert re.findall(r'data-delivery="([^"]+)"', failed) == [second, first]
    rows = {d["id"]: d for d in deliveries(ops, "core")}
    for delivery_id in (first, second):
        row = failed.split(f'data-delivery="{delivery_id}"', 1)[1].split("</tr>", 1)[0]
        assert rows[delivery_id]["event_id"] in row and "webhook.test" in row
        assert '<td data-label="試行回数"><div class="v">2</div></td>' in row and "HTTP 500" in row
        assert confirm_path("core", delivery_id) in row
    assert "配信失敗はありません" in archive


def test_the_page_in_english_when_switched(signed_in: Any, app: Any, ops: Api, clock: Any) -> None:
    failed_delivery(app, ops, clock)
    post_form(signed_in, "/console/language", "/console/webhooks", lang="en", next="/console/webhooks")
    page = signed_in.get("/console/webhooks").get_data(as_text=True)
    assert "Failed deliveries (newest first)" in page and "Retry…" in page and "Enabled" in page


def test_no_endpoints_says_so(signed_in: Any) -> None:
    page = signed_in.get("/console/webhooks").get_data(as_text=True)
    assert 'id="no-webhooks"' in page


def test_the_notice_echoes_only_a_delivery_id(signed_in: Any) -> None:
    page = signed_in.get("/console/webhooks?retried=Call+0120-000-000+now").get_data(as_text=True)
    assert 'id="done"' not in page  # (the path is in the language form's next, escaped)


# -- retry ---------------------------------------------------------------------------------


def test_a_retry_needs_the_confirmation_then_queues_it_and_is_audited(
    signed_in: Any, app: Any, ops: Api, store: Any, clock: Any
) -> None:
    delivery_id = failed_delivery(app, ops, clock)
    confirm = signed_in.get(confirm_path("core", delivery_id))
    assert confirm.status_code == 200 and delivery_id in confirm.get_data(as_text=True)
    assert state_of(ops, "core", delivery_id) == "failed"  # the question alone changes nothing
    assert not retries_audited(app, store)
    clock.advance(7)
    rv = signed_in.post(retry_path("core", delivery_id), data={"csrf_token": csrf_of(confirm)})
    assert rv.status_code == 302
    assert rv.headers["Location"].endswith(f"/console/webhooks?retried={delivery_id}#webhook-core")
    assert state_of(ops, "core", delivery_id) == "pending"
    # The audit is in the store, written by the retry's own script: who, when, what.
    [audited] = retries_audited(app, store)
    event_id = deliveries(ops, "core")[0]["event_id"]
    assert audited == {
        "at": app.extensions["authgw"].domain.now().iso,
        "by": "ops",
        "action": "webhook.delivery_retried",
        "webhook": "core",
        "delivery_id": delivery_id,
        "event_id": event_id,
        "event_type": "webhook.test",
    }
    page = signed_in.get(rv.headers["Location"]).get_data(as_text=True)
    assert 'id="done"' in page
    assert f'data-delivery="{delivery_id}" data-state="pending"' in page
    assert confirm_path("core", delivery_id) not in page  # no longer failed: no retry offered
    # The page's recent operator actions, newest first: the retry, then the test event and the
    # endpoint's creation (by the same operator, through the API).
    actions = page.split('id="webhook-audit"', 1)[1].split("</section>", 1)[0]
    assert "オペレーターの最近の操作（新しい順）" in actions
    rows = re.findall(r'<tr data-action="([^"]+)" data-webhook="core"', actions)
    assert rows == ["webhook.delivery_retried", "webhook.test_sent", "webhook.created"]
    retried = actions.split('data-action="webhook.delivery_retried"', 1)[1].split("</tr>", 1)[0]
    assert "配信を再送" in retried and delivery_id in retried and ">ops<" in retried
    assert f'datetime="{audited["at"]}"' in retried


def test_a_forged_retry_without_csrf_is_refused_and_retries_nothing(
    signed_in: Any, app: Any, ops: Api, store: Any, clock: Any
) -> None:
    delivery_id = failed_delivery(app, ops, clock)
    for data in ({}, {"csrf_token": "forged"}):
        rv = signed_in.post(retry_path("core", delivery_id), data=data)
        assert rv.status_code == 400 and 'id="refused"' in rv.get_data(as_text=True)
    assert state_of(ops, "core", delivery_id) == "failed"
    assert not retries_audited(app, store)


def test_a_delivery_not_failed_offers_no_retry_and_a_forged_one_is_refused_clearly(
    signed_in: Any, app: Any, ops: Api, store: Any
) -> None:
    endpoint(ops, "core", "https://bank.example.jp/core", ["customer.*"])
    pending = queue_test_event(ops, "core")
    page = signed_in.get("/console/webhooks").get_data(as_text=True)
    assert f'data-delivery="{pending}" data-state="pending"' in page
    assert pending not in page.split("配信失敗（新しい順）", 1)[1].split("最近の配信", 1)[0]
    assert "confirm-retry" not in page
    confirm = signed_in.get(confirm_path("core", pending))
    assert confirm.status_code == 409
    token = csrf_of(signed_in.get("/console/webhooks"))
    rv = signed_in.post(retry_path("core", pending), data={"csrf_token": token})
    assert rv.status_code == 409
    for answer in (confirm, rv):
        refused = answer.get_data(as_text=True).split('id="refused">', 1)[1].split("<", 1)[0]
        assert (
            refused
            == f"配信 {pending} は失敗していません（状態：配信待ち）。再送できるのは配信失敗のものだけです。"
        )
    assert state_of(ops, "core", pending) == "pending"
    assert not retries_audited(app, store)


def test_an_unknown_delivery_or_endpoint_is_404(signed_in: Any, app: Any, ops: Api, clock: Any) -> None:
    delivery_id = failed_delivery(app, ops, clock)
    token = csrf_of(signed_in.get("/console/webhooks"))
    unknown = "dl_" + "a" * 26
    for name, did, maybe_deleted in (
        ("core", unknown, True),
        ("nobody", delivery_id, True),
        ("core", "not-an-id", False),  # a mistyped address: a plain not found
        ("bad%20name", delivery_id, False),
    ):
        for rv in (
            signed_in.get(confirm_path(name, did)),
            signed_in.post(retry_path(name, did), data={"csrf_token": token}),
        ):
            assert rv.status_code == 404
            assert ("削除された可能性" in rv.get_data(as_text=True)) is maybe_deleted, (name, did)
    assert state_of(ops, "core", delivery_id) == "failed"


def test_a_retry_of_a_deleted_endpoint_says_so_and_retries_nothing(
    signed_in: Any, app: Any, ops: Api, store: Any, clock: Any
) -> None:
    """The operator opened the confirmation; someone deleted the endpoint before the click."""
    delivery_id = failed_delivery(app, ops, clock)
    confirm = signed_in.get(confirm_path("core", delivery_id))
    assert confirm.status_code == 200
    assert ops.delete("/v1/webhooks/core").status_code == 204
    rv = signed_in.post(retry_path("core", delivery_id), data={"csrf_token": csrf_of(confirm)})
    assert rv.status_code == 404
    page = rv.get_data(as_text=True)
    refused = page.split('id="refused">', 1)[1].split("<", 1)[0]
    assert refused == (
        "この配信は見つかりません。画面を表示した後に、配信先または配信そのものが削除された可能性が"
        "あります。再送はしていません。"
    )
    assert 'id="back" href="/console/webhooks"' in page or 'href="/console/webhooks" id="back"' in page
    assert not retries_audited(app, store)
    assert ops.get("/v1/webhooks/core").status_code == 404  # and the retry recreated nothing


def test_an_endpoint_deleted_between_the_lookup_and_the_retry_is_said_so(
    signed_in: Any, app: Any, ops: Api, store: Any, clock: Any, monkeypatch: Any
) -> None:
    """The race the retry script settles: the endpoint is deleted (for real, through the API)
    after the console found the delivery and before its retry ran."""
    delivery_id = failed_delivery(app, ops, clock)
    webhooks = app.extensions["authgw.webhooks"]
    real_retry = webhooks.retry

    def deleted_first(name: str, did: str, by: str) -> Any:
        assert ops.delete(f"/v1/webhooks/{name}").status_code == 204
        return real_retry(name, did, by)

    monkeypatch.setattr(webhooks, "retry", deleted_first)
    token = csrf_of(signed_in.get("/console/webhooks"))
    rv = signed_in.post(retry_path("core", delivery_id), data={"csrf_token": token})
    assert rv.status_code == 404 and "削除された可能性" in rv.get_data(as_text=True)
    assert not retries_audited(app, store)
    assert ops.get("/v1/webhooks/core").status_code == 404


# -- the overview --------------------------------------------------------------------------


def lag_cells(page: str) -> dict[str, str]:
    table = page.split('id="webhook-lag"', 1)[1].split("</table>", 1)[0]
    return dict(re.findall(r'<tr data-webhook="([^"]+)">.*?data-lag="[^"]*">([^<]*)</td>', table, re.S))


def test_the_overview_lists_the_endpoints_with_their_lag_from_the_store(
    signed_in: Any, app: Any, ops: Api, store: Any, clock: Any
) -> None:
    endpoint(ops, "core", "https://bank.example.jp/core", ["customer.*"])
    endpoint(ops, "archive", "https://archive.example.jp/in", ["*"])
    queue_test_event(ops, "core")  # pending: it counts in the lag
    clock.advance(90)
    page = signed_in.get("/console/").get_data(as_text=True)
    assert lag_cells(page) == {"core": "1 分 30 秒", "archive": "0 秒"}
    assert 'href="/console/webhooks#webhook-core"' in page
    # Another gateway host reads the same from the store.
    other_host = create_app({**settings_for_tests(**SETTINGS), "redis_client": store, "clock": clock})
    web = other_host.test_client()
    assert sign_in(web, OPERATOR_KEY).status_code == 302
    assert lag_cells(web.get("/console/").get_data(as_text=True)) == {"core": "1 分 30 秒", "archive": "0 秒"}
    # A failed delivery is no lag (API.md: lag counts pending deliveries).
    fail_due(app, clock, "core")
    assert lag_cells(signed_in.get("/console/").get_data(as_text=True))["core"] == "0 秒"


def test_the_overview_without_endpoints(signed_in: Any) -> None:
    page = signed_in.get("/console/").get_data(as_text=True)
    assert '<p id="webhook-lag">なし</p>' in page
