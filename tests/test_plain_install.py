"""A bank's first install: the wheel, ``pip install``-ed without extras into a fresh venv, serves.

The suite itself runs with the ``test`` extra, which brings in packages (``packaging``, for
one) that the runtime may need without declaring them; only an install without extras shows
that. The wheel is built from a copy of the sources, installed with pip's ordinary resolver
(its cache makes a second run quick) and started as an operator would: ``authgw serve --dev``
on the embedded store, once on fakeredis (no ``redis-server`` on the PATH, as on a machine with
only Python) and once on a ``redis-server``.

Where the machine cannot make a venv with pip (no ``ensurepip``), pip cannot reach a package
index at all, or (for the second) there is no ``redis-server``, the tests skip and say why;
under ``CI=true`` or ``AUTHGW_REQUIRE_REAL_REDIS=1`` (``.ci/run``) each of these is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.serving import http, serving
from tests.helpers.stores import redis_binary

pytestmark = pytest.mark.topology

ROOT = Path(__file__).resolve().parent.parent
# What the wheel is built from (pyproject.toml's packages and package data).
SOURCES = ("pyproject.toml", "README.md", "authgw", "config")
INSTALL_TIMEOUT = 900.0
DEV_KEY = "dev-corebank-key-0001"  # authgw serve --dev's corebank key
# What pip says when it cannot reach an index at all (as opposed to finding no fitting version).
OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable")


def required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("AUTHGW_REQUIRE_REAL_REDIS") == "1"


def clean_env(**overrides: str) -> dict[str, str]:
    """The caller's environment without anything that would let the test venv leak in."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PROMETHEUS_MULTIPROC_DIR")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGW_") and k not in dropped}
    env.update(overrides)
    return env


def skip_unless_required(reason: str) -> None:
    if required():
        pytest.fail(f"CI needs the plain-install test, but {reason}")
    pytest.skip(reason)


def run(argv: list[str], what: str, cwd: Path) -> None:
    done = subprocess.run(
        argv, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
    )
    output = f"{done.stdout}\n{done.stderr}"
    if done.returncode and any(sign in output for sign in OFFLINE):
        skip_unless_required(f"{what} could not reach the package index (offline?)")
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{output}"


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh venv holding the project's wheel and its dependencies only."""
    if importlib.util.find_spec("ensurepip") is None:
        skip_unless_required("this Python has no ensurepip, so no venv with pip can be made (python3-venv)")
    work = tmp_path_factory.mktemp("plain-install")
    source = work / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    pip = ["-m", "pip", "--disable-pip-version-check", "-q"]
    dist = work / "dist"
    run([sys.executable, *pip, "wheel", "--no-deps", "-w", str(dist), str(source)], "pip wheel", work)
    (wheel,) = dist.glob("authgw-*.whl")
    run([sys.executable, "-m", "venv", str(work / "venv")], "python -m venv", work)
    bin_dir = work / "venv" / ("Scripts" if os.name == "nt" else "bin")
    run([str(bin_dir / "python"), *pip, "install", str(wheel)], "pip install <wheel> (no extras)", work)
    return bin_dir


def dev_serve(bin_dir: Path, path: str) -> tuple[list[str], dict[str, str], str]:
    """``authgw serve --dev`` of the venv, with this PATH, run outside the repository (so that
    nothing can be imported from the sources)."""
    return [str(bin_dir / "authgw"), "serve", "--dev"], clean_env(PATH=path), str(bin_dir)


def assert_serves(base: str) -> None:
    status, body = http("GET", f"{base}/readyz", key=None)
    assert (status, body["status"]) == (200, "ready")
    status, body = http("PUT", f"{base}/v1/customers/cust-001", {"phones": ["090-1234-5678"]}, key=DEV_KEY)
    assert (status, body["phones"]) == (200, ["+819012345678"])


def assert_console_serves(base: str) -> None:
    """The wheel holds the console's templates, static files and catalogs (compiled at start)."""
    import urllib.request

    for path, expected in (("/console/sign-in", "サインイン"), ("/console/static/demo.js", "X-CSRFToken")):
        with urllib.request.urlopen(base + path, timeout=10) as response:
            assert expected in response.read().decode("utf-8"), path


def test_a_plain_install_serves_on_fakeredis_where_no_redis_server_exists(plain_venv):
    # The venv's own bin folder only: no redis-server, so the embedded store is fakeredis's.
    with serving(*dev_serve(plain_venv, str(plain_venv))) as (base, log):
        assert "embedded store (fakeredis)" in log, log
        assert_serves(base)
        assert_console_serves(base)


def test_a_plain_install_serves_on_a_redis_server_on_the_path(plain_venv):
    if shutil.which("redis-server") is None:
        skip_unless_required("no redis-server on the PATH for the plain-install test on redis-server")
    binary = redis_binary("the plain-install test on redis-server")
    path = os.pathsep.join([str(plain_venv), str(Path(binary).parent)])
    with serving(*dev_serve(plain_venv, path)) as (base, log):
        assert "embedded store (redis-server)" in log, log
        assert_serves(base)
