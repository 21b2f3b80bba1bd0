"""The README's walk-through, run as written against ``authgw serve --dev``, and its webhook step
after it (a receiver started, registered, sent the signed deliveries of a call).

Only what cannot be the same on a test machine is changed: the ports (free ones, not 8000 and
8001), ``.venv/bin/python`` (this interpreter) and ``/tmp/`` (a folder of the test's own, as
other runs may be using ``/tmp`` at the same time). Where ``bash`` or ``curl`` is missing the
test skips and says so; under ``CI=true`` or ``AUTHGW_REQUIRE_REAL_REDIS=1`` that is a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.ports import free_ports
from tests.helpers.serving import http, serving

pytestmark = pytest.mark.topology

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DELIVERY_STEP = "### Webhooks to the bank: a signed delivery"


def walk_through() -> str:
    text = README.read_text("utf-8")
    section = text.split("## A walk through with curl", 1)[1]
    return section.split("```sh\n", 1)[1].split("\n```", 1)[0]


def test_the_walk_through_computes_the_digest_and_never_echoes_the_gateways():
    script = walk_through()
    assert '["transaction_digest"]' not in script  # the gateway's own digest is never read back
    assert "hashlib.sha256" in script and "sort_keys=True" in script


def delivery_step() -> tuple[str, str]:
    """The webhook step's shell block and the client's Python block after it."""
    section = README.read_text("utf-8").split(DELIVERY_STEP, 1)[1]
    shell = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    python = section.split("```python\n", 1)[1].split("\n```", 1)[0]
    return shell, python


def needs_bash_and_curl() -> None:
    missing = [tool for tool in ("bash", "curl") if shutil.which(tool) is None]
    if missing:
        reason = f"no {' or '.join(missing)} on the PATH: the README's walk-through needs them"
        if os.environ.get("CI") == "true" or os.environ.get("AUTHGW_REQUIRE_REAL_REDIS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def test_the_walk_through_runs_word_for_word(tmp_path):
    needs_bash_and_curl()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGW_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with serving([sys.executable, "-m", "authgw.cli", "serve", "--dev"], env) as (base, _log):
        script = (
            walk_through()
            .replace("http://127.0.0.1:8000", base)
            # /tmp/ first: the checkout (and so sys.executable) may itself live under /tmp.
            .replace("/tmp/", f"{tmp_path}/")
            .replace(".venv/bin/python", sys.executable)
        )
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        challenge_id = json.loads((tmp_path / "challenge.json").read_text("utf-8"))["id"]
        status, body = http("GET", f"{base}/v1/challenges/{challenge_id}", key="dev-corebank-key-0001")
        assert (status, body["status"], body["verified_by"]) == (200, "consumed", "totp"), body
        assert '"status":"consumed"' in done.stdout


@pytest.mark.skipif(
    importlib.util.find_spec("authgw.outbound.deliverer") is None,
    reason="needs the deliverer (authgw.outbound.deliverer): the README's webhook step waits for a delivery",
)
def test_the_webhook_step_shows_a_signed_delivery_arriving(tmp_path):
    needs_bash_and_curl()
    shell, python = delivery_step()
    (receiver_port,) = free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGW_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)

    def local(text: str, base: str) -> str:
        return (
            text.replace("http://127.0.0.1:8000", base)
            .replace("127.0.0.1:8001", f"127.0.0.1:{receiver_port}")
            .replace("receiver.py 8001", f"receiver.py {receiver_port}")
            .replace("/tmp/", f"{tmp_path}/")
            .replace(".venv/bin/python", sys.executable)
        )

    with serving([sys.executable, "-m", "authgw.cli", "serve", "--dev"], env) as (base, _log):
        script = local(walk_through() + "\n" + shell, base)
        # Its own session, so the receiver it starts in the background goes with it whatever happens.
        shell_run = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = shell_run.communicate(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell_run.pid, signal.SIGTERM)
        assert shell_run.returncode == 0, out + err
        received = [
            json.loads(line) for line in (tmp_path / "received.jsonl").read_text("utf-8").splitlines()
        ]
        second = json.loads((tmp_path / "challenge2.json").read_text("utf-8"))["id"]
        by_type = {(r["type"], r["data"].get("challenge_id")): r for r in received}
        for wanted in ("challenge.created", "call.received", "challenge.verified"):
            assert (wanted, second) in by_type, received
        assert all(r["timestamp"] == r["data"]["at"] and r["type"] == r["data"]["type"] for r in received)
        ids = [r["data"]["id"] for r in received]
        assert len(ids) == len(set(ids))  # printed once each

        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(local(python, base), {})
        assert "('challenge.verified', 'delivered')" in printed.getvalue()
