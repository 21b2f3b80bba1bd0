"""The embedded store for development: something that speaks the Redis protocol, on loopback.

It is a real ``redis-server`` started for this run when the binary is on the PATH, else
fakeredis's TCP server in a process of its own (``python -m authgw.embedded PORT``). Either way
the gateway talks to it over TCP with the same client code as in production, and every worker
shares it. State lives in memory only and is gone when the gateway stops.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


@dataclass
class EmbeddedStore:
    url: str
    kind: str
    _stop: Any = field(repr=False, default=None)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


def _process_store(argv: list[str], url: str, kind: str, workdir: str | None = None) -> EmbeddedStore:
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    try:
        wait_for(url)
    except Exception:
        stop()
        raise
    return EmbeddedStore(url, kind, stop)


def start_redis_server(binary: str, *extra: str) -> EmbeddedStore:
    """A private ``redis-server`` on a free loopback port, with a random password."""
    port = free_port()
    password = secrets.token_hex(16)
    workdir = tempfile.mkdtemp(prefix="authgw-redis-")
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        workdir,
        "--requirepass",
        password,
        "--protected-mode",
        "yes",
        *extra,
    ]
    return _process_store(argv, f"redis://:{password}@127.0.0.1:{port}/0", "redis-server", workdir)


def start_fakeredis() -> EmbeddedStore:
    """fakeredis's TCP server in a process of its own, on a free loopback port."""
    port = free_port()
    return _process_store(
        [sys.executable, "-m", "authgw.embedded", str(port)], f"redis://127.0.0.1:{port}/0", "fakeredis"
    )


def start_embedded() -> EmbeddedStore:
    binary = shutil.which("redis-server")
    return start_redis_server(binary) if binary else start_fakeredis()


if __name__ == "__main__":
    from fakeredis import TcpFakeServer

    TcpFakeServer(("127.0.0.1", int(sys.argv[1])), server_type="redis").serve_forever()
