"""``authgw simulate-call`` against a running ``authgw serve``: real processes, real HTTP.

The gateway runs on the suite's redis-server (``AUTHGW_REDIS_URL``, a database of its own) in
each callback mode; a transfer is created over HTTP as core banking would, and the simulated
caller approves it, signing as Twilio does for the public URL while posting to loopback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from authgw.embedded import EmbeddedStore
from tests.helpers.api import TRANSFER_PAYEE
from tests.helpers.ports import free_ports
from tests.helpers.serving import http, serving
from tests.helpers.settings import API_KEY, SECRET_KEY, TWILIO_TOKEN

pytestmark = pytest.mark.real_redis

PUBLIC = "https://gw.example.jp"
NUMBERS = "050-3000-0001,050-3000-0002"
LOCK_LINE = "050-3000-0009"
DATABASES = {"reject": 11, "confirm": 12, "code": 13}


def gateway_env(mode: str, redis_url: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGW_")}
    env.update(
        {
            "AUTHGW_REDIS_URL": redis_url,
            "AUTHGW_API_KEYS": f"corebank={API_KEY}",
            "AUTHGW_SECRET_KEY": SECRET_KEY,
            "AUTHGW_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "AUTHGW_PUBLIC_URL": PUBLIC,
            "AUTHGW_CALLBACK_NUMBERS": NUMBERS,
            "AUTHGW_CALLBACK_MODE": mode,
            "AUTHGW_LOCK_NUMBERS": LOCK_LINE,
        }
    )
    env.update(overrides)
    return env


class Gateway:
    def __init__(self, mode: str, base: str, env: dict[str, str]) -> None:
        self.mode, self.base, self.env = mode, base, env

    def simulate(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "authgw.cli", "simulate-call", "--url", self.base, *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def transfer(
        self, customer_id: str, amount: int = 150000, phone: str = "090-1234-5678"
    ) -> dict[str, Any]:
        """A customer with ``phone`` and a transfer of theirs. Customers of one gateway who
        share a phone and a live number make its calls ambiguous: a test that expects its call
        to verify gives its customer a phone of their own."""
        status, body = http("PUT", f"{self.base}/v1/customers/{customer_id}", {"phones": [phone]})
        assert status == 200, body
        status, body = http(
            "POST",
            f"{self.base}/v1/challenges",
            {
                "customer_id": customer_id,
                "kind": "transfer",
                "amount": amount,
                "currency": "JPY",
                "payee": TRANSFER_PAYEE,
            },
        )
        assert status == 201, body
        return body

    def challenge(self, challenge_id: str) -> dict[str, Any]:
        status, body = http("GET", f"{self.base}/v1/challenges/{challenge_id}")
        assert status == 200, body
        return body


@pytest.fixture(scope="module", params=list(DATABASES))
def gateway(request: pytest.FixtureRequest, redis_server: EmbeddedStore) -> Iterator[Gateway]:
    mode = str(request.param)
    redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{DATABASES[mode]}"
    env = gateway_env(mode, redis_url)
    with serving([sys.executable, "-m", "authgw.cli", "serve", "--workers", "1"], env) as (base, _log):
        yield Gateway(mode, base, env)


def test_simulated_call_approves_a_transfer_created_over_http(gateway):
    challenge = gateway.transfer(f"sim-{gateway.mode}", phone="090-1234-0001")
    args = ["--from", "090-1234-0001", "--to", challenge["callback"]["display"]]
    if gateway.mode == "confirm":
        args += ["--digits", "1"]
    elif gateway.mode == "code":
        args += ["--digits", challenge["callback"]["code"]]
    done = gateway.simulate(*args)
    assert done.returncode == 0, done.stderr
    if gateway.mode == "reject":
        assert "<Reject" in done.stdout
    else:
        assert "<Gather" in done.stdout and "15万円" in done.stdout
        assert "確認ができました" in done.stdout
    body = gateway.challenge(challenge["id"])
    assert body["status"] == "verified" and body["verified_by"] == "callback"
    status, consumed = http(
        "POST",
        f"{gateway.base}/v1/challenges/{challenge['id']}/consume",
        {"transaction_digest": challenge["transaction_digest"]},
    )
    assert status == 200 and consumed["status"] == "consumed"


def test_simulated_stranger_approves_nothing(gateway):
    challenge = gateway.transfer(f"stranger-{gateway.mode}")
    done = gateway.simulate(
        "--from", "090-9999-8888", "--to", challenge["callback"]["number"], "--digits", "1"
    )
    assert done.returncode == 0, done.stderr
    assert "<Reject" in done.stdout
    assert "asked for no keys" in done.stderr
    assert gateway.challenge(challenge["id"])["status"] == "pending"


@pytest.mark.parametrize("gateway", ["reject"], indirect=True)
def test_same_call_sid_simulated_twice_verifies_once(gateway):
    first = gateway.transfer("replay-1", phone="090-1234-0002")
    sid = "CA" + "ab" * 16
    args = ["--from", "090-1234-0002", "--to", first["callback"]["number"], "--call-sid", sid]
    assert gateway.simulate(*args).returncode == 0
    second = gateway.transfer("replay-1", amount=2000, phone="090-1234-0002")
    assert gateway.simulate(*args).returncode == 0
    assert gateway.challenge(first["id"])["status"] == "verified"
    assert gateway.challenge(second["id"])["status"] == "pending"


@pytest.mark.parametrize("gateway", ["confirm"], indirect=True)
def test_simulated_nine_reports_fraud_and_locks_the_customer(gateway):
    challenge = gateway.transfer("sim-fraud", phone="090-1234-0003")
    done = gateway.simulate(
        "--from", "090-1234-0003", "--to", challenge["callback"]["number"], "--digits", "9"
    )
    assert done.returncode == 0, done.stderr
    assert "承認されていません" in done.stdout and "停止しました" in done.stdout
    assert gateway.challenge(challenge["id"])["status"] == "denied"
    status, body = http("GET", f"{gateway.base}/v1/customers/sim-fraud")
    assert status == 200 and body["lock"]["reason"] == "fraud_report"
    http("POST", f"{gateway.base}/v1/customers/sim-fraud/unlock")


@pytest.mark.parametrize("gateway", ["reject"], indirect=True)
def test_simulated_call_on_a_lock_number_self_locks(gateway):
    # A phone of its own: pressing 1 locks every customer that registered the caller's phone.
    status, _ = http("PUT", f"{gateway.base}/v1/customers/sim-self", {"phones": ["090-5555-0101"]})
    assert status == 200
    done = gateway.simulate("--from", "090-5555-0101", "--to", LOCK_LINE, "--digits", "1")
    assert done.returncode == 0, done.stderr
    assert "<Gather" in done.stdout and "停止しました" in done.stdout
    status, body = http("GET", f"{gateway.base}/v1/customers/sim-self")
    assert body["locked"] is True and body["lock"]["reason"] == "self_lock"
    stranger = gateway.simulate("--from", "090-5555-0199", "--to", LOCK_LINE, "--digits", "1")
    assert stranger.returncode == 0 and "ご登録がありません" in stranger.stdout


def test_wrong_token_exits_non_zero_with_the_gateways_answer(gateway):
    challenge = gateway.transfer(f"token-{gateway.mode}")
    done = gateway.simulate(
        "--from",
        "090-1234-5678",
        "--to",
        challenge["callback"]["number"],
        AUTHGW_TWILIO_AUTH_TOKEN="not-the-token",
    )
    assert done.returncode == 1
    assert "HTTP 403" in done.stderr and "forbidden" in done.stderr
    assert gateway.challenge(challenge["id"])["status"] == "pending"


@pytest.mark.parametrize("gateway", ["reject"], indirect=True)
def test_unreachable_gateway_exits_non_zero(gateway):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "authgw.cli",
            "simulate-call",
            "--url",
            f"http://127.0.0.1:{free_ports(1)[0]}",
            "--from",
            "090-1234-5678",
            "--to",
            "050-3000-0001",
        ],
        env=gateway.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "cannot reach" in done.stderr


@pytest.mark.parametrize("gateway", ["reject"], indirect=True)
@pytest.mark.parametrize("args", [["--call-sid", "CA123"], ["--digits", "1x"]])
def test_bad_arguments_exit_2(gateway, args):
    done = gateway.simulate("--from", "090-1234-5678", "--to", "050-3000-0001", *args)
    assert done.returncode == 2


def test_an_error_answer_whose_body_stalls_is_a_simulation_error(monkeypatch: Any) -> None:
    """simulate-call (and the demo's phone) say the gateway's status even when its body never
    comes, instead of a traceback (the demo would answer 500)."""
    from authgw.errors import SimulationError
    from authgw.webhooks import simulate
    from tests.helpers.stalling import stalled_error_answer

    monkeypatch.setattr(simulate, "TIMEOUT", 0.5)
    params = {"CallSid": "CA" + "0" * 32}
    with stalled_error_answer() as url, pytest.raises(SimulationError) as failed:
        simulate.post(url, url, url + "/webhooks/twilio/voice", params, TWILIO_TOKEN)
    assert str(failed.value) == "the gateway answered HTTP 503: (its body could not be read: TimeoutError)"
