"""The README's walk-through, run as written against ``authgw serve --dev``.

Only what cannot be the same on a test machine is changed: the port (a free one, not 8000),
``.venv/bin/python`` (this interpreter) and ``/tmp/`` (a folder of the test's own, as other
runs may be using ``/tmp`` at the same time). Where ``bash`` or ``curl`` is missing the test
skips and says so; under ``CI=true`` or ``AUTHGW_REQUIRE_REAL_REDIS=1`` that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.serving import http, serving

pytestmark = pytest.mark.topology

README = Path(__file__).resolve().parent.parent / "README.md"


def walk_through() -> str:
    text = README.read_text("utf-8")
    section = text.split("## A walk through with curl", 1)[1]
    return section.split("```sh\n", 1)[1].split("\n```", 1)[0]


def test_the_walk_through_computes_the_digest_and_never_echoes_the_gateways():
    script = walk_through()
    assert '["transaction_digest"]' not in script  # the gateway's own digest is never read back
    assert "hashlib.sha256" in script and "sort_keys=True" in script


def test_the_walk_through_runs_word_for_word(tmp_path):
    missing = [tool for tool in ("bash", "curl") if shutil.which(tool) is None]
    if missing:
        reason = f"no {' or '.join(missing)} on the PATH: the README's walk-through needs them"
        if os.environ.get("CI") == "true" or os.environ.get("AUTHGW_REQUIRE_REAL_REDIS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
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
