"""The webhook endpoints API over HTTP (API.md Additions, "Webhooks to the bank"): every row of
the table with its errors, on every store. Every call is an operator's; a secret is shown in
the 201 that made it (and a rotation's 200) and nowhere else; a refused request writes nothing.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from authgw.app import create_app
from tests.helpers.api import Api, assert_problem, field_errors
from tests.helpers.outbound import (
    URL,
    answer,
    audit_key,
    create,
    deliveries,
    endpoint_body,
    event,
    operator,
    roles_on,
    webhook_keys,
    webhooks,
)
from tests.helpers.settings import SECRET_KEY, settings_for_tests
from tests.helpers.stores import every_key

DAY = 86400
DELIVERY_FIELDS = (
    *("id", "event_id", "type", "state", "attempts"),
    *("last_status", "last_error", "next_attempt_at", "created_at"),
)


@pytest.fixture
def settings() -> dict[str, Any]:
    return roles_on()


@pytest.fixture
def ops(app: Any) -> Api:
    return operator(app)


def snapshot(store: Any) -> dict[str, Any]:
    """The ``{wh}`` slot's state, comparable."""
    state: dict[str, Any] = {}
    for key in sorted(webhook_keys(store)):
        kind = store.type(key)
        if kind == "hash":
            state[key] = store.hgetall(key)
        elif kind == "stream":  # the audit of operators' actions
            state[key] = store.xrange(key)
        else:
            state[key] = store.zrange(key, 0, -1, withscores=True)
    return state


def calls(name: str = "core", delivery: str = "dl_" + "a" * 26) -> list[tuple[str, str, Any]]:
    """Every webhook call: method, path, body."""
    return [
        ("get", "/v1/webhooks", None),
        ("put", f"/v1/webhooks/{name}", endpoint_body()),
        ("get", f"/v1/webhooks/{name}", None),
        ("delete", f"/v1/webhooks/{name}", None),
        ("post", f"/v1/webhooks/{name}/rotate-secret", None),
        ("get", f"/v1/webhooks/{name}/deliveries", None),
        ("post", f"/v1/webhooks/{name}/deliveries/{delivery}/retry", None),
        ("post", f"/v1/webhooks/{name}/test", None),
    ]


def send(client: Api, method: str, path: str, body: Any) -> Any:
    if method in ("put", "post"):
        return getattr(client, method)(path, body)
    return getattr(client, method)(path)


def failed_delivery(app: Any, ops: Api, clock: Any) -> str:
    """A delivery of endpoint ``core`` that used up every try; its id."""
    wh = webhooks(app)
    clock.advance(1)
    assert wh.fan_out(event(wh)) == 1
    for _ in range(len(wh.schedule) + 1):
        (claimed,) = wh.claim_due("core", 10, 30)
        answer(wh, claimed, ok=False, status=503)
        clock.advance(36000)
    (failed,) = deliveries(ops, query="?state=failed")
    return str(failed["id"])


# -- roles ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), calls())
def test_every_webhook_call_is_refused_to_a_corebank_key_once_roles_are_on(
    api, ops, store, method, path, body
):
    create(ops)
    before = snapshot(store)
    body = assert_problem(send(api, method, path, body), 403, "forbidden")
    assert "operator" in body["detail"]
    assert snapshot(store) == before
    assert "secret" not in str(body)


@pytest.mark.parametrize(("method", "path", "body"), calls("nobody"))
def test_a_corebank_key_learns_nothing_of_which_endpoints_exist(api, method, path, body):
    assert_problem(send(api, method, path, body), 403, "forbidden")


@pytest.mark.parametrize("store", ["fake"], indirect=True)
def test_with_roles_off_any_client_manages_webhooks(store, clock):
    app = create_app({**settings_for_tests(), "redis_client": store, "clock": clock})
    corebank = Api(app.test_client())
    create(corebank)
    assert corebank.get("/v1/webhooks/core").status_code == 200
    assert corebank.delete("/v1/webhooks/core").status_code == 204


def test_every_webhook_call_needs_an_api_key(app, ops, store):
    create(ops)
    before = snapshot(store)
    client = app.test_client()
    for method, path, body in calls():
        rv = getattr(client, method)(path, json=body) if body else getattr(client, method)(path)
        assert_problem(rv, 401, "unauthorized")
    assert snapshot(store) == before


# -- create, update, read, list, delete -----------------------------------------------------


def test_a_new_endpoint_is_201_with_its_secret_shown_this_once(ops, store):
    rv = ops.put("/v1/webhooks/core", {"url": URL, "events": ["challenge.verified", "customer.*"]})
    assert rv.status_code == 201
    assert rv.headers["Cache-Control"] == "no-store"
    body = rv.get_json()
    secret = body.pop("secret")
    assert body == {
        "name": "core",
        "url": URL,
        "events": ["challenge.verified", "customer.*"],
        "enabled": True,
        "created_at": body["created_at"],
    }
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[len("whsec_") :], validate=True)) == 24
    # Never again: not in a read, a list, an update; and not in the store as it is.
    read = ops.get("/v1/webhooks/core").get_json()
    listed = ops.get("/v1/webhooks").get_json()
    updated = ops.put("/v1/webhooks/core", endpoint_body(events=["*"]))
    assert updated.status_code == 200
    for shown in (read, listed, updated.get_json()):
        assert "secret" not in str(shown)
        assert secret not in str(shown)
    stored = " ".join(str(v) for v in snapshot(store).values())
    assert secret not in stored and secret[len("whsec_") :] not in stored


def test_the_secret_signs_what_the_deliverer_is_given(app, ops):
    secret = create(ops)["secret"]
    (endpoint,) = webhooks(app).endpoints()
    assert endpoint.secrets == (secret,)


def test_no_log_line_holds_the_secret(ops, caplog):
    caplog.set_level(logging.DEBUG)
    secret = create(ops)["secret"]
    ops.post("/v1/webhooks/core/rotate-secret")
    assert secret not in caplog.text
    assert "whsec_" not in caplog.text


def test_an_update_replaces_url_events_and_enabled_and_keeps_secret_and_creation(app, ops, clock):
    made = create(ops, events=["customer.*"])
    clock.advance(60)
    rv = ops.put("/v1/webhooks/core", {"url": URL + "/v2", "events": ["challenge.*"], "enabled": False})
    assert rv.status_code == 200
    assert rv.get_json() == {
        "name": "core",
        "url": URL + "/v2",
        "events": ["challenge.*"],
        "enabled": False,
        "created_at": made["created_at"],
    }
    (endpoint,) = webhooks(app).endpoints()
    assert endpoint.secrets == (made["secret"],) and not endpoint.enabled
    # enabled left out of a PUT is true again (a PUT says the whole endpoint).
    assert ops.put("/v1/webhooks/core", endpoint_body()).get_json()["enabled"] is True


def test_get_lists_and_reads_with_lag(ops):
    create(ops, "a-core")
    create(ops, "b.archive", events=["challenge.*"])
    listed = ops.get("/v1/webhooks").get_json()["webhooks"]
    assert [w["name"] for w in listed] == ["a-core", "b.archive"]
    assert all(set(w) == {"name", "url", "events", "enabled", "created_at"} for w in listed)
    read = ops.get("/v1/webhooks/b.archive").get_json()
    assert read["lag_seconds"] == 0
    assert read["events"] == ["challenge.*"]


def test_an_empty_registry_lists_nothing(ops):
    assert ops.get("/v1/webhooks").get_json() == {"webhooks": []}


def test_delete_removes_the_endpoint_and_every_delivery(app, ops, store, clock):
    create(ops)
    wh = webhooks(app)
    clock.advance(1)
    wh.fan_out(event(wh, n=1))
    wh.fan_out(event(wh, n=2))
    ops.post("/v1/webhooks/core/test")
    assert len(deliveries(ops)) == 3
    assert ops.delete("/v1/webhooks/core").status_code == 204
    assert webhook_keys(store) == {audit_key(app)}  # only the record of what operators did
    assert_problem(ops.get("/v1/webhooks/core"), 404, "webhook_not_found")
    assert wh.claim_due("core", 10, 30) == []
    assert wh.endpoints() == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/webhooks/nobody"),
        ("delete", "/v1/webhooks/nobody"),
        ("post", "/v1/webhooks/nobody/rotate-secret"),
        ("get", "/v1/webhooks/nobody/deliveries"),
        ("post", "/v1/webhooks/nobody/test"),
        ("post", "/v1/webhooks/nobody/deliveries/dl_aaaaaaaaaaaaaaaaaaaaaaaaaa/retry"),
        ("get", "/v1/webhooks/not%20a%20name"),
        ("delete", "/v1/webhooks/" + "x" * 65),
    ],
)
def test_an_unknown_endpoint_is_404_webhook_not_found_and_changes_nothing(ops, store, method, path):
    before = every_key(store)
    assert_problem(getattr(ops, method)(path), 404, "webhook_not_found")
    assert {k for k in every_key(store) - before if ":{r:" not in k} == set()


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a b", "x" * 65, "core:1", "c%C3%A9", "core{wh}", "*", "a,b", "%00", "core%0A"]
)
def test_a_bad_name_is_a_validation_error_that_writes_nothing(ops, store, name):
    rv = ops.put(f"/v1/webhooks/{name}", endpoint_body())
    assert_problem(rv, 422, "validation_error")
    assert field_errors(rv) == ["name"]
    assert webhook_keys(store) == set()


@pytest.mark.parametrize("name", ["a", "x" * 64, "core-bank.archive_2", "A.B-c_9"])
def test_names_like_customer_ids_are_accepted(ops, name):
    assert create(ops, name)["name"] == name


BAD_URLS = [
    "http://bank.example.jp/hook",  # http without AUTHGW_WEBHOOK_ALLOW_HTTP
    "HTTP://bank.example.jp/hook",
    "ftp://bank.example.jp/hook",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "data:text/plain,hi",
    "gopher://bank.example.jp:70/",
    "ws://bank.example.jp/",
    "https:bank.example.jp/hook",
    "//bank.example.jp/hook",
    "bank.example.jp/hook",
    "/hook",
    "https://",
    "https:///hook",
    "https://user:password@bank.example.jp/hook",
    "https://user@bank.example.jp/hook",
    "https://bank.example.jp@evil.example/hook",
    "https://:@bank.example.jp/",
    "https://bank.example.jp:99999/hook",
    "https://bank.example.jp:0/hook",
    "https://bank.example.jp:port/hook",
    "https://bank.example.jp/hook#fragment",
    "https://bank example.jp/hook",
    "https://bank.example.jp/ho ok",
    "https://bank.example.jp\\@evil.example/",
    "https://bank.example.jp/\u0000",
    "https://bank.example.jp/\n",
    "https://銀行.jp/hook",
    "https://bank.example.jp/フック",
    "https://[::1/hook",
    "https://[not-ipv6]/hook",
    "https://-bank.example.jp/",
    "https://bank_.example.jp/",
    "https://ex%41mple.jp/",
    "https://bank.example.jp/" + "a" * 2100,
    "",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_url_is_a_validation_error_that_writes_nothing(ops, store, url):
    rv = ops.put("/v1/webhooks/core", endpoint_body(url=url))
    body = assert_problem(rv, 422, "validation_error")
    assert field_errors(rv) == ["url"], body
    assert webhook_keys(store) == set()


@pytest.mark.parametrize("url", BAD_URLS[:2])
def test_a_bad_url_does_not_replace_a_good_one(ops, url):
    create(ops)
    assert_problem(ops.put("/v1/webhooks/core", endpoint_body(url=url)), 422, "validation_error")
    assert ops.get("/v1/webhooks/core").get_json()["url"] == URL


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.0.0.5:8443/authgw?x=1&y=2",
        "https://[::1]:8443/hook",
        "https://core.bank.internal/hook",
        "https://localhost/",
        "https://BANK.example.jp/Hook/%E3%81%82",
    ],
)
def test_loopback_private_and_plain_urls_are_accepted(ops, url):
    assert create(ops, url=url)["url"] == url


@pytest.mark.parametrize("store", ["fake"], indirect=True)
def test_http_is_accepted_only_with_allow_http(store, clock):
    app = create_app({**roles_on(webhook_allow_http="1"), "redis_client": store, "clock": clock})
    ops = operator(app)
    assert create(ops, url="http://127.0.0.1:8080/hook")["url"] == "http://127.0.0.1:8080/hook"
    assert create(ops, "other", url=URL)["url"] == URL
    for url in ("ftp://127.0.0.1/", "http://u:p@127.0.0.1/", "http:127.0.0.1/"):
        rv = ops.put("/v1/webhooks/third", endpoint_body(url=url))
        assert_problem(rv, 422, "validation_error")
        assert field_errors(rv) == ["url"]


@pytest.mark.parametrize(
    "events",
    [
        [],
        ["*"] * 2,
        [f"challenge.type{i}" for i in range(51)],
        ["*x"],
        ["**"],
        ["customer.*.*"],
        ["customer.**"],
        [".*"],
        ["customer"],
        ["Customer.locked"],
        ["customer.locked "],
        ["challenge.verified*"],
        ["challenge..verified"],
        [""],
        ["a." + "b" * 100],
        [1],
        [None],
        "*",
        None,
        {"challenge.verified": True},
    ],
)
def test_bad_events_are_a_validation_error_that_writes_nothing(ops, store, events):
    rv = ops.put("/v1/webhooks/core", {"url": URL, "events": events})
    assert_problem(rv, 422, "validation_error")
    assert {f.split("[")[0] for f in field_errors(rv)} == {"events"}
    assert webhook_keys(store) == set()


@pytest.mark.parametrize(
    "events",
    [
        ["*"],
        ["customer.*"],
        ["challenge.verified", "customer.*"],
        ["webhook.test"],
        [f"challenge.type{i}" for i in range(50)],
    ],
)
def test_good_events_are_accepted(ops, events):
    assert create(ops, events=events)["events"] == events


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"events": ["*"]}, ["url"]),
        ({"url": URL}, ["events"]),
        ({"url": URL, "events": ["*"], "enabled": "yes"}, ["enabled"]),
        ({"url": URL, "events": ["*"], "enabled": None}, ["enabled"]),
        ({"url": URL, "events": ["*"], "secret": "whsec_mine"}, ["secret"]),
        ({"url": 42, "events": ["*"]}, ["url"]),
        ({"url": "ftp://x", "events": []}, ["url", "events"]),
    ],
)
def test_every_bad_field_of_a_put_is_named(ops, store, body, fields):
    rv = ops.put("/v1/webhooks/core", body)
    assert_problem(rv, 422, "validation_error")
    assert field_errors(rv) == fields
    assert webhook_keys(store) == set()


def test_a_bad_name_and_a_bad_body_are_both_named(ops):
    rv = ops.put("/v1/webhooks/a%20b", {"url": "ftp://x", "events": ["*"]})
    assert field_errors(rv) == ["name", "url"]


@pytest.mark.parametrize("raw", [b"", b"[]", b"not json", b'"*"', b"{", b"\xff"])
def test_a_put_body_that_is_not_a_json_object_is_a_validation_error(ops, store, raw):
    rv = ops.client.put(
        "/v1/webhooks/core", data=raw, headers=ops.headers({"Content-Type": "application/json"})
    )
    assert_problem(rv, 422, "validation_error")
    assert webhook_keys(store) == set()


@pytest.mark.parametrize("path", ["/v1/webhooks/core/rotate-secret", "/v1/webhooks/core/test"])
def test_calls_without_a_body_refuse_fields(ops, store, path):
    create(ops)
    before = snapshot(store)
    assert_problem(ops.post(path, {"x": 1}), 422, "validation_error")
    assert snapshot(store) == before


# -- rotation -------------------------------------------------------------------------------


def test_rotation_signs_with_both_secrets_for_24_hours_then_the_new_one(app, ops, clock):
    old = create(ops)["secret"]
    rv = ops.post("/v1/webhooks/core/rotate-secret")
    assert rv.status_code == 200
    assert rv.headers["Cache-Control"] == "no-store"
    new = rv.get_json()["secret"]
    assert rv.get_json() == {"secret": new}
    assert new != old and new.startswith("whsec_")
    wh = webhooks(app)
    assert wh.endpoints()[0].secrets == (new, old)
    clock.advance(DAY - 1)
    assert wh.endpoints()[0].secrets == (new, old)
    clock.advance(1)
    assert wh.endpoints()[0].secrets == (new,)
    assert "secret" not in str(ops.get("/v1/webhooks/core").get_json())


def test_a_second_rotation_keeps_only_the_one_before_it(app, ops):
    create(ops)
    first = ops.post("/v1/webhooks/core/rotate-secret").get_json()["secret"]
    second = ops.post("/v1/webhooks/core/rotate-secret").get_json()["secret"]
    assert webhooks(app).endpoints()[0].secrets == (second, first)


def test_a_secret_sealed_for_one_endpoint_opens_for_no_other(app, ops, store):
    create(ops, "a")
    create(ops, "b")
    key = webhooks(app).store.keys.webhook_endpoints()
    records = store.hgetall(key)
    a, b = json.loads(records["a"]), json.loads(records["b"])
    b["secret"] = a["secret"]
    store.hset(key, "b", json.dumps(b))
    assert [e.name for e in webhooks(app).endpoints()] == ["a"]


# -- test event ------------------------------------------------------------------------------


def test_a_test_event_is_queued_whatever_the_patterns(app, ops, clock):
    create(ops, events=["customer.locked"])
    rv = ops.post("/v1/webhooks/core/test")
    assert rv.status_code == 202
    queued = rv.get_json()
    assert queued["type"] == "webhook.test" and queued["state"] == "pending"
    assert queued["event_id"].startswith("ev_test_")
    (claimed,) = webhooks(app).claim_due("core", 10, 30)
    assert claimed.event_id == queued["event_id"] and claimed.delivery_id == queued["id"]
    body = json.loads(claimed.body)
    assert body["type"] == "webhook.test"
    assert body["data"]["id"] == queued["event_id"]
    assert body["data"]["type"] == "webhook.test"
    assert body["timestamp"] == body["data"]["at"]


def test_each_test_event_is_a_new_event(ops):
    create(ops)
    first = ops.post("/v1/webhooks/core/test").get_json()
    second = ops.post("/v1/webhooks/core/test").get_json()
    assert first["event_id"] != second["event_id"] and first["id"] != second["id"]


# -- deliveries and retry --------------------------------------------------------------------


def test_deliveries_are_listed_newest_first_with_a_state_filter_and_a_limit(app, ops, clock):
    create(ops)
    wh = webhooks(app)
    clock.advance(1)
    for n in range(1, 6):
        wh.fan_out(event(wh, n=n))
    ids = [d["event_id"] for d in deliveries(ops)]
    assert len(ids) == 5 and ids == sorted(ids, key=lambda i: int(i.rsplit("-", 1)[1]), reverse=True)
    claimed = {c.event_id: c for c in wh.claim_due("core", 2, 30)}
    for c in claimed.values():
        answer(wh, c, ok=True, status=204)
    delivered = deliveries(ops, query="?state=delivered")
    assert {d["event_id"] for d in delivered} == set(claimed)
    assert all(d["state"] == "delivered" and d["last_status"] == 204 for d in delivered)
    assert all(d["next_attempt_at"] is None for d in delivered)
    pending = deliveries(ops, query="?state=pending")
    assert [d["event_id"] for d in pending] == [i for i in ids if i not in claimed]
    assert deliveries(ops, query="?state=failed") == []
    assert [d["event_id"] for d in deliveries(ops, query="?limit=2")] == ids[:2]
    assert [d["event_id"] for d in deliveries(ops, query="?limit=100")] == ids
    one = deliveries(ops, query="?limit=1")[0]
    assert set(one) == set(DELIVERY_FIELDS)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?state=done", "state"),
        ("?state=", "state"),
        ("?state=PENDING", "state"),
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=-1", "limit"),
        ("?limit=１", "limit"),
        ("?limit=", "limit"),
        ("?limit=1e2", "limit"),
    ],
)
def test_a_bad_deliveries_query_is_a_validation_error(ops, query, field):
    create(ops)
    rv = ops.get(f"/v1/webhooks/core/deliveries{query}")
    assert_problem(rv, 422, "validation_error")
    assert field_errors(rv) == [field]


def test_lag_is_the_age_of_the_oldest_pending_event_and_not_of_failed_ones(app, ops, clock):
    create(ops)
    wh = webhooks(app)
    clock.advance(1)
    first = event(wh, n=1)
    wh.fan_out(first)
    clock.advance(10)
    wh.fan_out(event(wh, n=2))
    clock.advance(2.5)
    assert ops.get("/v1/webhooks/core").get_json()["lag_seconds"] == 12.5
    # The oldest delivered: the lag is the next one's.
    (oldest,) = [c for c in wh.claim_due("core", 10, 30) if c.event_id == first["id"]]
    answer(wh, oldest, ok=True, status=200)
    assert ops.get("/v1/webhooks/core").get_json()["lag_seconds"] == 2.5


def test_a_failed_delivery_counts_for_no_lag_and_is_retried_on_request(app, ops, clock):
    create(ops)
    failed_id = failed_delivery(app, ops, clock)
    assert ops.get("/v1/webhooks/core").get_json()["lag_seconds"] == 0
    (failed,) = deliveries(ops, query="?state=failed")
    assert failed["attempts"] == 8 and failed["last_status"] == 503 and failed["next_attempt_at"] is None
    rv = ops.post(f"/v1/webhooks/core/deliveries/{failed_id}/retry")
    assert rv.status_code == 202
    queued = rv.get_json()
    assert queued["id"] == failed_id and queued["state"] == "pending" and queued["attempts"] == 8
    assert deliveries(ops, query="?state=failed") == []
    assert ops.get("/v1/webhooks/core").get_json()["lag_seconds"] > 0
    # Due at once, with a whole new round of the schedule: its attempts go on counting.
    wh = webhooks(app)
    (claimed,) = wh.claim_due("core", 10, 30)
    assert claimed.delivery_id == failed_id and claimed.attempt == 9
    assert answer(wh, claimed, ok=False, status=500) == "retry"
    clock.advance(5)
    (claimed,) = wh.claim_due("core", 10, 30)
    assert answer(wh, claimed, ok=True, status=200) == "delivered"


def test_only_a_failed_delivery_can_be_retried(app, ops, clock, store):
    create(ops)
    wh = webhooks(app)
    clock.advance(1)
    wh.fan_out(event(wh, n=1))
    (pending,) = deliveries(ops)
    before = snapshot(store)
    retry = f"/v1/webhooks/core/deliveries/{pending['id']}/retry"
    assert_problem(ops.post(retry), 409, "delivery_not_failed")
    assert snapshot(store) == before
    (claimed,) = wh.claim_due("core", 1, 30)
    answer(wh, claimed, ok=True, status=200)
    before = snapshot(store)
    assert_problem(ops.post(retry), 409, "delivery_not_failed")
    assert snapshot(store) == before


@pytest.mark.parametrize("delivery_id", ["dl_" + "a" * 26, "dl_nope", "x" * 300, "dl_" + "A" * 26])
def test_an_unknown_delivery_is_404_delivery_not_found(ops, store, delivery_id):
    create(ops)
    before = snapshot(store)
    assert_problem(ops.post(f"/v1/webhooks/core/deliveries/{delivery_id}/retry"), 404, "delivery_not_found")
    assert snapshot(store) == before


def test_a_delivery_of_another_endpoint_is_not_found(app, ops, clock):
    create(ops, "a")
    create(ops, "b")
    wh = webhooks(app)
    clock.advance(1)
    wh.fan_out(event(wh))
    (of_a,) = deliveries(ops, "a")
    assert_problem(ops.post(f"/v1/webhooks/b/deliveries/{of_a['id']}/retry"), 404, "delivery_not_found")


@pytest.mark.parametrize("store", ["fake"], indirect=True)
def test_at_most_100_endpoints_exist_and_the_101st_writes_nothing(ops, store):
    for n in range(100):
        create(ops, f"ep-{n}")
    before = snapshot(store)
    rv = ops.put("/v1/webhooks/one-more", endpoint_body())
    assert_problem(rv, 422, "validation_error")
    assert field_errors(rv) == ["name"]
    assert snapshot(store) == before
    # An update of one that exists is still an update.
    assert ops.put("/v1/webhooks/ep-0", endpoint_body(events=["customer.*"])).status_code == 200


@pytest.mark.parametrize("store", ["fake"], indirect=True)
def test_secrets_still_open_after_the_secret_key_is_rotated(store, clock):
    first = create_app({**roles_on(), "redis_client": store, "clock": clock})
    secret = create(operator(first))["secret"]
    rotated = create_app(
        {**roles_on(secret_key=f"{'n' * 40},{SECRET_KEY}"), "redis_client": store, "clock": clock}
    )
    assert webhooks(rotated).endpoints()[0].secrets == (secret,)
    # A gateway without the key that sealed it signs nothing with it.
    other = create_app({**roles_on(secret_key="o" * 40), "redis_client": store, "clock": clock})
    assert webhooks(other).endpoints() == []
