"""Operations: health, readiness, metrics, the OpenAPI document, request ids and JSON logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from authgw.logs import JsonFormatter, mask_phone, scrub
from authgw.openapi import openapi_document
from tests.helpers.api import Api, enrol_totp, new_challenge, register, totp_code, wrong_code
from tests.helpers.apps import close_apps, open_app
from tests.helpers.settings import API_KEY, settings_for_tests
from tests.helpers.stores import redis_binary


@pytest.fixture(autouse=True)
def _close_apps() -> Iterator[None]:
    yield
    close_apps()


def samples(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    rv = client.get("/metrics")
    assert rv.status_code == 200 and rv.mimetype == "text/plain"
    out = {}
    for family in text_string_to_metric_families(rv.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_healthz_and_readyz(app: Any) -> None:
    client = app.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_readyz_is_503_when_the_store_is_gone() -> None:
    from tests.helpers.ports import free_ports

    app = open_app(settings_for_tests(redis_url=f"redis://127.0.0.1:{free_ports(1)[0]}/0", redis_timeout=0.2))
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    rv = client.get("/readyz")
    assert rv.status_code == 503 and rv.get_json()["code"] == "store_unavailable"
    rv = Api(client).get("/v1/customers/cust-001")
    assert rv.status_code == 503 and rv.get_json()["code"] == "store_unavailable"
    assert rv.headers["Retry-After"] == "1"
    assert samples(client)[("authgw_store_errors_total", ())] >= 1


def test_metrics_count_requests_transitions_and_lockouts(api: Any, app: Any, clock: Any) -> None:
    register(api)
    secret = enrol_totp(api, clock)
    challenge = new_challenge(api)
    assert (
        api.post(f"/v1/challenges/{challenge['id']}/totp", {"code": totp_code(secret, clock())}).status_code
        == 200
    )
    assert (
        api.post(
            f"/v1/challenges/{challenge['id']}/consume",
            {"transaction_digest": challenge["transaction_digest"]},
        ).status_code
        == 200
    )
    for _ in range(2):  # 3 attempts per challenge, 6 failures lock the customer
        ch = new_challenge(api)
        for _ in range(3):
            api.post(f"/v1/challenges/{ch['id']}/totp", {"code": wrong_code(secret, clock())})
    assert api.get("/v1/customers/cust-001").get_json()["locked"] is True

    m = samples(app.test_client())
    assert m[("authgw_transitions_total", (("result", "ok"), ("script", "consume")))] == 1
    assert m[("authgw_transitions_total", (("result", "ok"), ("script", "verify_totp")))] == 1
    assert m[("authgw_transitions_total", (("result", "invalid_code"), ("script", "verify_totp")))] == 6
    assert m[("authgw_transitions_total", (("result", "ok"), ("script", "create_challenge")))] == 3
    assert m[("authgw_lockouts_total", ())] == 1
    route = "/v1/challenges/<challenge_id>/consume"
    assert m[("authgw_requests_total", (("method", "POST"), ("route", route), ("status", "200")))] == 1
    assert m[("authgw_request_seconds_count", (("route", route),))] == 1


def test_openapi_is_valid_3_1_and_covers_every_v1_route(app: Any) -> None:
    from openapi_spec_validator import validate

    doc = app.test_client().get("/openapi.json").get_json()
    assert doc == json.loads(json.dumps(openapi_document()))
    assert doc["openapi"].startswith("3.1")
    validate(doc)
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1/"):
            path = rule.rule.replace("<", "{").replace(">", "}")
            routes |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, m) for path, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert {"401", "429", "503"} <= set(op["responses"]), (path, method)


@pytest.mark.parametrize("given", ["abc-123", "req_01:x.y", "A" * 128])
def test_a_sane_request_id_is_echoed(app: Any, given: str) -> None:
    rv = app.test_client().get("/healthz", headers={"X-Request-Id": given})
    assert rv.headers["X-Request-Id"] == given


@pytest.mark.parametrize("given", [None, "", "A" * 129, "has space", "a\u3042", "semi;colon"])
def test_a_missing_or_odd_request_id_is_replaced(app: Any, given: str | None) -> None:
    headers = {"X-Request-Id": given} if given is not None else {}
    rv = Api(app.test_client()).get("/v1/customers/nobody", headers=headers)
    rid = rv.headers["X-Request-Id"]
    assert rid != given and len(rid) == 32 and rid.isalnum()


def test_log_lines_are_json_with_the_request_id_and_no_secret(api: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="authgw")
    rv = api.put(
        "/v1/customers/cust-001", {"phones": ["090-1234-5678"]}, headers={"X-Request-Id": "trace-42"}
    )
    assert rv.status_code == 200
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    access = [line for line in lines if line["logger"] == "authgw.access"]
    assert access and access[-1]["request_id"] == "trace-42"
    assert access[-1]["route"] == "/v1/customers/<customer_id>" and access[-1]["status"] == 200
    assert access[-1]["client"] == "corebank"
    text = "\n".join(json.dumps(line) for line in lines)
    assert API_KEY not in text and "1234-5678" not in text and "+819012345678" not in text


def test_log_messages_are_scrubbed() -> None:
    assert mask_phone("from +819012345678 to 050-3000-0001") == "from +81******5678 to *******0001"
    assert mask_phone("０９０１２３４５６７８") == "*******５６７８"
    assert mask_phone("attempts 3 of 6, port 6379") == "attempts 3 of 6, port 6379"
    assert scrub("Authorization: Bearer corebank-test-key-0001") == "Authorization: Bearer [redacted]"
    assert "s3cr3t" not in scrub('{"secret": "s3cr3t", "code": "123456"}')
    assert "123456" not in scrub('{"secret": "s3cr3t", "code": "123456"}')


def test_an_error_line_is_json_without_leaking() -> None:
    record = logging.LogRecord(
        "authgw.app",
        logging.ERROR,
        __file__,
        1,
        "failed for %s with Bearer %s",
        ("+819012345678", API_KEY),
        None,
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "error" and "+819012345678" not in line["message"]
    assert API_KEY not in line["message"]


def test_metrics_add_up_across_gunicorn_workers_under_serve() -> None:
    """``authgw serve`` with 2 workers: /metrics adds up what each worker counted."""
    import urllib.request

    from tests.topology import start_gateway, start_server

    server = start_server(redis_binary("metrics across workers"))
    env = {f"AUTHGW_{k.upper()}": str(v) for k, v in settings_for_tests().items()}
    env["AUTHGW_REDIS_URL"] = server.url
    gateway = start_gateway(env, workers=2, threads=2)
    try:
        for _ in range(20):
            with urllib.request.urlopen(gateway.url + "/healthz", timeout=5) as rv:
                assert rv.status == 200
        with urllib.request.urlopen(gateway.url + "/metrics", timeout=5) as rv:
            text = rv.read().decode()
        total = sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "authgw_requests_total" and s.labels.get("route") == "/healthz"
        )
        assert total >= 20
    finally:
        gateway.stop()
        server.stop()
        log = gateway.log.read_text()
        gateway.log.unlink()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(line.get("logger") == "authgw.access" and line.get("request_id") for line in lines)
