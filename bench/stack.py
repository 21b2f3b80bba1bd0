"""The processes a benchmark run drives, and the requests it sends them.

A private ``redis-server`` (never the machine's own), the gateway under ``authgw serve`` and the
ceiling app (``bench/ceiling.py``), both with the same gunicorn settings: ``Stack`` starts and
stops them together, ``Server`` is one of them and ``wait_http`` waits until one answers.
``Req`` is one HTTP request as the wrk request files hold it; ``api_req`` makes an
authenticated ``/v1`` request and ``send`` sends one over a new connection (probes and samples,
not load). ``GATEWAY_ENV`` holds the gateway's settings for the run.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authgw.embedded import free_port, start_redis_server
from bench.preload import CLIENT

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_BIN = Path(sys.executable).parent

API_KEY = "bench-corebank-key-000001"
TWILIO_TOKEN = "bench-twilio-auth-token"
CALLBACK_NUMBERS = "+815030000001,+815030000002,+815030000003"
GATEWAY_ENV = {
    "AUTHGW_API_KEYS": f"{CLIENT}={API_KEY}",
    "AUTHGW_SECRET_KEY": "bench-secret-key-with-at-least-32-characters",
    "AUTHGW_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
    "AUTHGW_CALLBACK_NUMBERS": CALLBACK_NUMBERS,
    # Wrong codes are measured too: let a customer take 99 of them and a challenge 9.
    "AUTHGW_LOCKOUT_THRESHOLD": "100",
    "AUTHGW_CHALLENGE_ATTEMPTS": "10",
    # One wrk plays one API client: lift the per-client rate limit (default 1,000/s) far above
    # what two cores can serve, so that the counter is still run and measured but never bites.
    "AUTHGW_RATE_LIMIT_CLIENT": "1000000000",
}


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


# -- requests -------------------------------------------------------------------------------


@dataclass
class Req:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""

    def line(self) -> str:
        headers = "|".join(f"{k}: {v}" for k, v in self.headers.items())
        for part in (self.path, headers, self.body):
            if "\t" in part or "\n" in part:
                raise ValueError("a request field holds a tab or newline")
        return f"{self.method}\t{self.path}\t{headers}\t{self.body}"


def api_req(method: str, path: str, body: Any = None) -> Req:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    text = ""
    if body is not None:
        headers["Content-Type"] = "application/json"
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Req(method, path, headers, text)


def send(port: int, req: Req) -> tuple[int, bytes]:
    """One request over a new connection (probes and MONITOR samples, not load)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(req.method, req.path, body=req.body.encode() if req.body else None, headers=req.headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# -- servers --------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def wait_http(
    port: int, path: str, seconds: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            status, _ = send(port, Req("GET", path))
            if status == 200:
                return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited ({process.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answered 200 on 127.0.0.1:{port}{path}")
        time.sleep(0.1)


@dataclass
class Stack:
    """The private redis-server, the gateway and the ceiling, with the same server settings."""

    workdir: Path
    workers: int
    worker_class: str | None
    threads: int | None
    redis_url: str = ""
    stop_redis: Callable[[], None] | None = None
    gateway: Server | None = None
    ceiling: Server | None = None
    deliver: bool = True  # the gateway's webhook deliverer beside its workers (serve's default)

    def server_args(self) -> list[str]:
        args = ["--workers", str(self.workers)]
        if self.worker_class:
            args += ["--worker-class", self.worker_class]
        if self.threads:
            args += ["--threads", str(self.threads)]
        return args

    def start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("bench: redis-server is needed (Debian: apt-get install -y redis-server)")
        store = start_redis_server(binary)
        self.redis_url, self.stop_redis = store.url, store.stop

    def gateway_env(self, port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(GATEWAY_ENV)
        env["AUTHGW_REDIS_URL"] = self.redis_url
        env["AUTHGW_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
        return env

    def start_servers(self) -> None:
        port = free_port()
        log = self.workdir / f"gateway-{port}.log"
        process = subprocess.Popen(
            [
                str(VENV_BIN / "authgw"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *self.server_args(),
                *([] if self.deliver else ["--no-deliver"]),
            ],
            env=self.gateway_env(port),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        self.gateway = Server("gateway", port, process, log)
        cport = free_port()
        clog = self.workdir / f"ceiling-{cport}.log"
        env = dict(
            os.environ,
            BENCH_REDIS_URL=self.redis_url,
            PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        )
        cprocess = subprocess.Popen(
            [sys.executable, "-m", "bench.ceiling", "--port", str(cport), *self.server_args()],
            env=env,
            stdout=clog.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.ceiling = Server("ceiling", cport, cprocess, clog)
        wait_http(port, "/readyz", process=process)
        wait_http(cport, "/", process=cprocess)

    def stop_servers(self) -> None:
        for server in (self.gateway, self.ceiling):
            if server is not None:
                server.stop()
        self.gateway = self.ceiling = None

    def stop(self) -> None:
        self.stop_servers()
        if self.stop_redis is not None:
            self.stop_redis()
            self.stop_redis = None

    def worker_pids(self, server: Server) -> list[int]:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(server.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]
