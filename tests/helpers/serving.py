"""A served gateway: one request over real HTTP, and ``authgw serve`` as a real process on a
free port until ready."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.polling import wait_until
from tests.helpers.ports import free_ports
from tests.helpers.settings import API_KEY

START_TIMEOUT = 60.0


def http(method: str, url: str, body: Any = None, key: str | None = API_KEY) -> tuple[int, Any]:
    """One request to a served gateway over real HTTP: (status, parsed JSON body or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as exc:
        with exc:  # closed even when its read fails (else its socket waits for the GC)
            raw, status = exc.read(), exc.code
    return status, (json.loads(raw) if raw else None)


def wait_ready(base: str, process: subprocess.Popen[bytes], output: Any) -> None:
    """Wait until ``base``/readyz answers 200; fail at once (with ``output()``) if the process
    exits, or with its output if it is not ready within ``START_TIMEOUT``."""

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"authgw serve exited early:\n{output()}")
        return http("GET", f"{base}/readyz", key=None)[0] == 200

    try:
        wait_until("authgw serve answering /readyz with 200", ready, START_TIMEOUT)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its output:\n{output()}") from None


@contextmanager
def serving(argv: list[str], env: dict[str, str], cwd: Path | str | None = None) -> Iterator[tuple[str, str]]:
    """Run ``argv`` (an ``authgw serve`` command without ``--port``) on a free loopback port
    until ``/readyz`` is 200; yields (base URL, its output so far); stops it with SIGTERM and
    asserts it exited 0."""
    (port,) = free_ports(1)
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:

        def output() -> str:
            log.seek(0)
            return log.read().decode("utf-8", "replace")

        process = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(base, process, output)
            yield base, output()
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        assert process.returncode == 0, f"authgw serve did not stop cleanly:\n{output()}"


@contextmanager
def in_process(app: Any, port: int = 0) -> Iterator[str]:
    """``app`` served over real HTTP on loopback by a threaded WSGI server in this process
    (``port`` 0: any free one): for a test that needs real HTTP but the app's own store or
    clock (``authgw serve`` runs on the host's). Yields the base URL."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=30)
