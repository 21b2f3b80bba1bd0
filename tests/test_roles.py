"""Roles and the audit of factor changes (API.md Additions, "Roles"; issue 10, the takeover).

``AUTHGW_OPERATORS`` names the operator clients; every other client is ``corebank``. Once it is
set, unlock, delete-customer and TOTP removal are the operators' (403 ``forbidden`` for a
corebank key), and an operator reads every client's challenges. Unset, every client has both
roles, as in v1. Whoever may change a customer's factors, every change leaves an event naming
its author in ``by``: what a bank notifies its customer on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from authgw import cli
from authgw.challenges.customers import render_event
from tests.helpers.api import Api, assert_problem, enrol_totp, new_challenge, register, totp_code, wrong_code
from tests.helpers.settings import API_KEY, OTHER_KEY, settings_for_tests

MONITOR_KEY = "monitor-test-key-00001"  # a leaked key of some other integration: corebank
KEYS = f"corebank={API_KEY},ops={OTHER_KEY},monitor={MONITOR_KEY}"
OPERATOR_ONLY = [
    ("post", "/v1/customers/cust-001/lock"),
    ("post", "/v1/customers/cust-001/unlock"),
    ("delete", "/v1/customers/cust-001/totp"),
    ("delete", "/v1/customers/cust-001"),
]


@pytest.fixture(params=["roles_on", "roles_off"])
def roles(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(roles: str) -> dict[str, Any]:
    if roles == "roles_on":
        return settings_for_tests(api_keys=KEYS, operators="ops")
    return settings_for_tests(api_keys=KEYS)


@pytest.fixture
def ops(app: Any) -> Api:
    return Api(app.test_client(), OTHER_KEY)


@pytest.fixture
def monitor(app: Any) -> Api:
    return Api(app.test_client(), MONITOR_KEY)


def events(api: Api, customer_id: str = "cust-001") -> list[dict[str, Any]]:
    """The customer's trail, oldest first."""
    rv = api.get(f"/v1/customers/{customer_id}/events?limit=100")
    assert rv.status_code == 200, rv.get_data(as_text=True)
    return list(reversed(rv.get_json()["events"]))


def of_type(api: Api, event_type: str) -> list[dict[str, Any]]:
    return [e for e in events(api) if e["type"] == event_type]


# -- the takeover by another key ------------------------------------------------------------


def test_another_key_taking_over_the_factors_leaves_its_name_on_every_change(roles, api, monitor, clock):
    register(api)
    enrol_totp(api, clock)
    # The leaked key replaces the phones and enrols a secret of its own: allowed to any client
    # (core banking registers customers), but never unseen.
    rv = monitor.put("/v1/customers/cust-001", {"phones": ["080-1111-2222"]})
    assert rv.status_code == 200
    secret = monitor.post("/v1/customers/cust-001/totp").get_json()["secret"]
    rv = monitor.post("/v1/customers/cust-001/totp/confirm", {"code": totp_code(secret, clock())})
    assert rv.status_code == 200

    changed = of_type(api, "customer.phones_changed")
    assert [(e["by"], e["added"], e["removed"]) for e in changed] == [
        ("corebank", ["+********5678"], []),
        ("monitor", ["+********2222"], ["+********5678"]),
    ]
    assert [e["by"] for e in of_type(api, "totp.enrolment_started")] == ["corebank", "monitor"]
    assert [e["by"] for e in of_type(api, "totp.enrolled")] == ["corebank", "monitor"]


def test_operator_only_calls_are_refused_to_a_corebank_key_once_roles_are_on(roles, api, monitor, ops, clock):
    register(api)
    enrol_totp(api, clock)
    if roles == "roles_off":
        # v1 as it was: any client may make them.
        for method, path in OPERATOR_ONLY:
            assert getattr(monitor, method)(path).status_code in (200, 204)
        assert [e["by"] for e in trail(api) if e["type"] == "totp.removed"] == ["monitor"]
        return
    for method, path in OPERATOR_ONLY:
        for client in (api, monitor):
            body = assert_problem(getattr(client, method)(path), 403, "forbidden")
            assert "operator" in body["detail"]
    # Refused before anything happened: the customer and their secret are still there.
    assert api.get("/v1/customers/cust-001").get_json()["totp"] == "active"
    assert of_type(api, "totp.removed") == []
    for method, path in OPERATOR_ONLY:
        assert getattr(ops, method)(path).status_code in (200, 204)
    assert [e["by"] for e in trail(api) if e["type"] == "totp.removed"] == ["ops"]


def test_a_refused_operator_call_is_refused_before_the_customer_is_looked_up(roles, monitor):
    # No customer: a corebank key learns nothing about who exists.
    if roles == "roles_on":
        assert_problem(monitor.post("/v1/customers/nobody/unlock"), 403, "forbidden")
    else:
        assert_problem(monitor.post("/v1/customers/nobody/unlock"), 404, "customer_not_found")


def test_unlock_is_the_operators_and_names_them(roles, api, ops, clock):
    register(api)
    secret = enrol_totp(api, clock)
    for _ in range(6):
        challenge = new_challenge(api, methods=["totp"])
        api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": wrong_code(secret, clock())})
    assert api.get("/v1/customers/cust-001").get_json()["locked"] is True
    unlocker = ops if roles == "roles_on" else api
    if roles == "roles_on":
        assert_problem(api.post("/v1/customers/cust-001/unlock"), 403, "forbidden")
        assert api.get("/v1/customers/cust-001").get_json()["locked"] is True
    assert unlocker.post("/v1/customers/cust-001/unlock").status_code == 200
    assert [e["by"] for e in of_type(api, "customer.unlocked")] == [
        "ops" if roles == "roles_on" else "corebank"
    ]


def test_re_enrolment_by_any_key_never_resets_the_failure_count(roles, api, monitor, clock):
    register(api)
    secret = enrol_totp(api, clock)
    challenge = new_challenge(api, methods=["totp"])
    api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": wrong_code(secret, clock())})
    api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": wrong_code(secret, clock())})
    fresh = monitor.post("/v1/customers/cust-001/totp").get_json()["secret"]
    rv = monitor.post("/v1/customers/cust-001/totp/confirm", {"code": totp_code(fresh, clock())})
    assert rv.get_json()["failed_attempts"] == 2


# -- events for every factor change ----------------------------------------------------------


def test_phones_changed_is_written_only_when_the_set_changes(roles, api):
    register(api, phones=("090-1234-5678", "080-1111-2222"))
    register(api, phones=("+81 80 1111 2222", "090-1234-5678"))  # the same set, other order
    register(api, phones=("090-1234-5678", "070-3333-4444"))
    changed = of_type(api, "customer.phones_changed")
    assert [(e["added"], e["removed"]) for e in changed] == [
        (["+********5678", "+********2222"], []),
        (["+********4444"], ["+********2222"]),
    ]
    for event in changed:
        assert event["by"] == "corebank"
        assert event["customer_id"] == "cust-001"
        assert "+819012345678" not in str(event)


def test_removing_and_deleting_name_their_author(roles, api, ops, clock):
    register(api)
    enrol_totp(api, clock)
    actor = ops if roles == "roles_on" else api
    assert actor.delete("/v1/customers/cust-001").status_code == 204
    # The trail outlives the customer (it is the audit trail): read it from the store's side.
    kept = trail(actor)
    last = [e for e in kept if e["type"] in ("totp.removed", "customer.phones_changed")][-2:]
    by = "ops" if roles == "roles_on" else "corebank"
    assert [(e["type"], e["by"]) for e in last] == [("totp.removed", by), ("customer.phones_changed", by)]
    assert last[1]["removed"] == ["+********5678"] and last[1]["added"] == []


def trail(api: Api) -> list[dict[str, Any]]:
    app = api.client.application
    gateway = app.extensions["authgw"]
    key = gateway.store.keys.for_customer("cust-001").events
    return [render_event(i, f) for i, f in gateway.store.client.xrange(key)]


def test_list_fields_render_as_json_arrays():
    event = render_event(
        "1-0", {"at": "x", "type": "customer.phones_changed", "added": "[]", "removed": '["a"]'}
    )
    assert event["added"] == [] and event["removed"] == ["a"]


# -- who sees which challenges ---------------------------------------------------------------


def test_an_operator_reads_every_clients_challenges_once_roles_are_on(roles, api, ops, monitor):
    register(api)
    challenge = new_challenge(api)
    rv = ops.get(f"/v1/challenges/{challenge['id']}")
    if roles == "roles_on":
        assert rv.status_code == 200 and rv.get_json()["id"] == challenge["id"]
    else:
        assert_problem(rv, 404, "challenge_not_found")
    # A corebank client sees its own only, whatever the roles; reading is not acting.
    assert_problem(monitor.get(f"/v1/challenges/{challenge['id']}"), 404, "challenge_not_found")
    assert_problem(ops.post(f"/v1/challenges/{challenge['id']}/cancel"), 404, "challenge_not_found")


# -- start-up --------------------------------------------------------------------------------


@pytest.fixture
def serve_env(monkeypatch: pytest.MonkeyPatch, redis_server: Any) -> Iterator[pytest.MonkeyPatch]:
    """``authgw serve`` up to the point it would start gunicorn, in this process."""
    for name in list(os.environ):
        if name.startswith("AUTHGW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "unused")
    monkeypatch.setenv("AUTHGW_REDIS_URL", redis_server.url)
    monkeypatch.setattr(cli, "run_gunicorn", lambda options, factory: None)
    # Nor its deliverer: a real one would live on beside the rest of the suite, on its store.
    monkeypatch.setattr(cli, "_start_deliverer", lambda: None)
    monkeypatch.setattr("authgw.logs.configure", lambda: None)
    yield monkeypatch
    for name in list(os.environ):  # what --dev filled in, straight into os.environ
        if name.startswith("AUTHGW_"):
            del os.environ[name]


SERVE = ["serve", "--worker-class", "gthread", "--threads", "2"]


def test_serve_warns_when_no_operators_are_named(serve_env, capsys):
    for name, value in settings_for_tests().items():
        serve_env.setenv(f"AUTHGW_{name.upper()}", value)
    assert cli.main(SERVE) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "AUTHGW_OPERATORS" in line]
    assert len(warnings) == 1 and "warning" in warnings[0] and "every" in warnings[0]


def test_serve_names_the_operators_when_they_are_set(serve_env, capsys):
    for name, value in settings_for_tests(operators="ops").items():
        serve_env.setenv(f"AUTHGW_{name.upper()}", value)
    assert cli.main(SERVE) == 0
    err = capsys.readouterr().err
    assert "warning" not in err and "operators: ops" in err


def test_serve_dev_sets_the_ops_client_as_operator(serve_env, capsys):
    assert cli.main([*SERVE, "--dev"]) == 0
    assert os.environ["AUTHGW_OPERATORS"] == "ops"
    err = capsys.readouterr().err
    assert "AUTHGW_OPERATORS=ops" in err and "warning" not in err
    assert "ops=" in os.environ["AUTHGW_API_KEYS"]


def test_operators_must_be_configured_clients():
    from authgw.errors import ConfigError
    from authgw.settings import load_settings

    with pytest.raises(ConfigError, match="AUTHGW_OPERATORS"):
        load_settings(settings_for_tests(operators="opz"), environ={})
    assert load_settings(settings_for_tests(operators=" ops , corebank "), environ={}).operators == (
        "ops",
        "corebank",
    )
    assert load_settings(settings_for_tests(), environ={}).operators == ()
