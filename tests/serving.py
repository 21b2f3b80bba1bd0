"""A helper (not a fixture): ``authgw serve`` as a real process on a free port, until ready."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from authgw.embedded import free_port
from tests.conftest import http

START_TIMEOUT = 60.0


@contextmanager
def serving(argv: list[str], env: dict[str, str], cwd: Path | str | None = None) -> Iterator[tuple[str, str]]:
    """Run ``argv`` (an ``authgw serve`` command without ``--port``) on a free loopback port
    until ``/readyz`` is 200; yields (base URL, its output so far); stops it with SIGTERM and
    asserts it exited 0."""
    port = free_port()
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
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                assert process.poll() is None, f"authgw serve exited early:\n{output()}"
                try:
                    if http("GET", f"{base}/readyz", key=None)[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, f"authgw serve never became ready:\n{output()}"
                time.sleep(0.1)  # polling for start-up, not measuring time
            yield base, output()
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        assert process.returncode == 0, f"authgw serve did not stop cleanly:\n{output()}"
