"""``authgw serve`` as an operator runs it: a real process, real HTTP, real configuration errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import AbstractContextManager

import pyotp
import pytest

from tests.helpers.api import transfer
from tests.helpers.ports import free_ports
from tests.helpers.serving import http
from tests.helpers.serving import serving as serving_argv
from tests.helpers.settings import API_KEY, OTHER_KEY, SECRET_KEY, TWILIO_TOKEN

pytestmark = pytest.mark.real_redis

SERVE = [sys.executable, "-m", "authgw.cli", "serve", "--host", "127.0.0.1"]


def base_env(**overrides: str) -> dict[str, str]:
    """The environment without any AUTHGW_ setting of the caller's, plus what the test sets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGW_")}
    env.update(
        {
            "AUTHGW_API_KEYS": f"corebank={API_KEY},ops={OTHER_KEY}",
            "AUTHGW_SECRET_KEY": SECRET_KEY,
            "AUTHGW_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "AUTHGW_PUBLIC_URL": "https://gw.example.jp",
            "AUTHGW_CALLBACK_NUMBERS": "050-3000-0001,050-3000-0002",
        }
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def serving(env: dict[str, str], *extra: str, workers: int = 1) -> AbstractContextManager[tuple[str, str]]:
    """``authgw serve`` (``tests.helpers.serving.serving``): (base URL, log so far)."""
    return serving_argv([*SERVE, "--workers", str(workers), *extra], env)


def walk_through(base: str) -> None:
    """register -> enrol -> confirm -> create -> verify -> consume, over real HTTP."""
    status, customer = http("PUT", f"{base}/v1/customers/cust-001", {"phones": ["090-1234-5678"]})
    assert (status, customer["phones"]) == (200, ["+819012345678"])

    status, enrolment = http("POST", f"{base}/v1/customers/cust-001/totp")
    assert status == 201
    totp = pyotp.TOTP(enrolment["secret"])
    # The server keeps the real time here: confirm with this step's code and verify with the
    # next step's, which the drift window accepts whenever the step turns in between.
    status, customer = http(
        "POST", f"{base}/v1/customers/cust-001/totp/confirm", {"code": totp.at(time.time())}
    )
    assert (status, customer["totp"]) == (200, "active")

    status, challenge = http("POST", f"{base}/v1/challenges", transfer("cust-001"))
    assert status == 201, challenge
    assert challenge["methods"] == ["callback", "totp"]
    assert challenge["callback"]["number"] == "+815030000001"

    status, body = http(
        "POST", f"{base}/v1/challenges/{challenge['id']}/totp", {"code": totp.at(time.time() + 30)}
    )
    assert (status, body["status"], body["verified_by"]) == (200, "verified", "totp"), body

    status, body = http(
        "POST",
        f"{base}/v1/challenges/{challenge['id']}/consume",
        {"transaction_digest": challenge["transaction_digest"]},
    )
    assert (status, body["status"]) == (200, "consumed")
    status, body = http(
        "POST",
        f"{base}/v1/challenges/{challenge['id']}/consume",
        {"transaction_digest": challenge["transaction_digest"]},
    )
    assert (status, body["code"]) == (409, "already_consumed")

    status, body = http("GET", f"{base}/v1/customers/cust-001/events")
    assert status == 200
    assert [e["type"] for e in body["events"]][:3] == [
        "challenge.consumed",
        "challenge.verified",
        "challenge.created",
    ]
    # Another client cannot see it; no key at all is refused.
    assert http("GET", f"{base}/v1/challenges/{challenge['id']}", key=OTHER_KEY)[0] == 404
    assert http("GET", f"{base}/v1/challenges/{challenge['id']}", key=None)[0] == 401


def test_serve_on_a_real_redis_walks_the_whole_flow(redis_server):
    # A database of its own on the suite's server, so no other test's data is touched.
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    with serving(base_env(AUTHGW_REDIS_URL=url)) as (base, _log):
        assert http("GET", f"{base}/healthz", key=None)[0] == 200
        walk_through(base)


def test_serve_without_a_redis_url_runs_on_the_embedded_store(redis_server):
    with serving(base_env(), workers=2) as (base, log):
        assert "embedded store" in log
        assert "memory only" in log
        walk_through(base)
        # Every worker sees the same store: each request is a new connection, which either
        # worker may take.
        for _ in range(20):
            assert http("GET", f"{base}/v1/customers/cust-001")[0] == 200


def test_serve_without_redis_server_on_the_path_runs_on_fakeredis(tmp_path):
    # A fresh machine with only Python: the same walk-through on fakeredis's server, pipelines
    # (the rate-limit counters) included, shared by both workers.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    with serving(base_env(PATH=str(bin_dir)), workers=2) as (base, log):
        assert "embedded store (fakeredis)" in log
        walk_through(base)
        for _ in range(20):
            assert http("GET", f"{base}/v1/customers/cust-001")[0] == 200


def test_serve_dev_fills_missing_secrets_and_says_so(redis_server):
    env = base_env(AUTHGW_REDIS_URL=redis_server.url.rsplit("/", 1)[0] + "/4")
    for name in ("AUTHGW_SECRET_KEY", "AUTHGW_API_KEYS"):
        del env[name]
    with serving(env, "--dev") as (base, log):
        assert "development values" in log
        assert "AUTHGW_SECRET_KEY" in log
        from authgw.cli import DEV_API_KEYS

        dev_key = DEV_API_KEYS.split(",")[0].split("=", 1)[1]
        assert (
            http("PUT", f"{base}/v1/customers/cust-dev", {"phones": ["090-1234-5678"]}, key=dev_key)[0] == 200
        )


def run_serve(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVE, "--port", str(free_ports(1)[0]), *extra], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("AUTHGW_LOCKOUT_THRESHOLD", "abc"),
        ("AUTHGW_LOCKOUT_THRESHOLD", "0"),
        ("AUTHGW_CHALLENGE_ATTEMPTS", "1.5"),
        ("AUTHGW_ALLOW_VOIP", "perhaps"),
        ("AUTHGW_CALLBACK_MODE", "shout"),
        ("AUTHGW_SECRET_KEY", "short"),
        ("AUTHGW_API_KEYS", "corebank"),
        ("AUTHGW_CALLBACK_NUMBERS", "not-a-number"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_it(name, value):
    result = run_serve(base_env(**{name: value}))
    assert result.returncode != 0
    assert name in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_redis_url_of_an_unknown_scheme_stops_start_up_naming_it():
    # Checked with the other settings, before gunicorn starts a worker.
    result = run_serve(base_env(AUTHGW_REDIS_URL="http://127.0.0.1:1"))
    assert result.returncode == 2
    assert "AUTHGW_REDIS_URL" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("missing", ["AUTHGW_SECRET_KEY", "AUTHGW_API_KEYS"])
def test_a_missing_secret_stops_start_up_without_dev(missing):
    env = base_env()
    del env[missing]
    result = run_serve(env)
    assert result.returncode != 0
    assert missing in result.stderr, result.stderr


def test_the_server_settings_spread_connections_and_freeze_what_workers_loaded():
    import gc

    from authgw.cli import gunicorn_options

    options = gunicorn_options("127.0.0.1", 8000, 2)
    assert (options["worker_class"], options["reuse_port"], options["workers"]) == ("gevent", True, 2)
    assert gunicorn_options("127.0.0.1", 8000, 2, "gthread", 3)["threads"] == 3
    before = gc.get_freeze_count()
    try:
        options["post_worker_init"](None)
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
