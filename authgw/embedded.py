"""The embedded store for development: something that speaks the Redis protocol, on loopback.

It is a real ``redis-server`` started for this run when the binary is on the PATH, else
fakeredis's TCP server in a thread of the serving process. Either way the gateway talks to it
over TCP with the same client code as in production, and every worker shares it. State lives
in memory only and is gone when the gateway stops.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
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


def start_redis_server(binary: str, *extra: str) -> EmbeddedStore:
    """A private ``redis-server`` on a free loopback port, with a random password."""
    port = free_port()
    password = secrets.token_hex(16)
    workdir = tempfile.mkdtemp(prefix="authgw-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, "--requirepass", password, "--protected-mode", "yes", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://:{password}@127.0.0.1:{port}/0"

    def stop() -> None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    try:
        wait_for(url)
    except Exception:
        stop()
        raise
    return EmbeddedStore(url, "redis-server", stop)


def start_fakeredis() -> EmbeddedStore:
    from fakeredis import TcpFakeServer

    port = free_port()
    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, name="embedded-store", daemon=True)
    thread.start()
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(url)

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return EmbeddedStore(url, "fakeredis", stop)


def start_embedded() -> EmbeddedStore:
    binary = shutil.which("redis-server")
    return start_redis_server(binary) if binary else start_fakeredis()
