"""Webhook delivery figures (docs/performance.md, "Webhooks to the bank").

Run: ``.venv/bin/python -m bench.delivery [--quick]``. It starts its own redis-server, one
``authgw deliver`` process and local receivers on loopback (the suite's helpers), and prints JSON:

- **throughput**: events the deliverer fans out and delivers per second, from a backlog made
  while it was stopped, to one healthy endpoint;
- **latency** from the transition's answer to the receiver having the delivery, p50 and p99,
  at a steady rate of transitions (default 200/s), with one healthy endpoint, and again with a
  second endpoint that fails every delivery (answers 500, so it retries) beside it.

Transitions are customer registrations through the app (one ``customer.phones_changed`` event
each), made in this process; the deliverer is a process of its own, as beside ``authgw serve``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from authgw.app import create_app
from authgw.challenges import models
from authgw.embedded import free_port, start_redis_server
from tests.helpers.api import Api
from tests.helpers.settings import API_KEY, OTHER_KEY, settings_for_tests
from tests.topology import start_deliverer

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def wait_for(what: str, check: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} did not happen within {seconds} s")
        time.sleep(0.01)


class Run:
    def __init__(self, url: str) -> None:
        self.settings = settings_for_tests(redis_url=url, webhook_allow_http="1", rate_limit_customer=0)
        self.env = {f"AUTHGW_{k.upper()}": str(v) for k, v in self.settings.items()}
        app = create_app(self.settings)
        self.customers = app.extensions["authgw"].customers
        self.phones = models.parse(models.CustomerPut, {"phones": ["090-1234-5678"]})
        self.api = Api(app.test_client(), API_KEY)
        self.ops = Api(app.test_client(), OTHER_KEY)
        self.deliverer: Any = None

    def endpoint(self, name: str, url: str) -> None:
        rv = self.ops.put(f"/v1/webhooks/{name}", {"url": url, "events": ["customer.*"]})
        assert rv.status_code in (200, 201), rv.get_data(as_text=True)

    def drop(self, name: str) -> None:
        assert self.ops.delete(f"/v1/webhooks/{name}").status_code == 204

    def transition(self, customer_id: str) -> None:
        """One registration through the domain (what a /v1 call runs, without the HTTP), so
        this process can keep the rate on a small machine."""
        self.customers.put(customer_id, self.phones, "bench")

    def start_deliverer(self) -> None:
        self.deliverer, self.log = start_deliverer(self.env)

    def stop_deliverer(self) -> None:
        if self.deliverer is not None:
            self.deliverer.send_signal(signal.SIGTERM)
            self.deliverer.wait(30)
            self.deliverer = None


class Receiving:
    """A receiver in a process of its own (so this one's work does not delay it): it writes
    ``<arrival time> <customer id>`` per delivery to a file; ``failing`` answers 500 to all."""

    def __init__(self, failing: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.path = Path(tempfile.mkstemp(prefix="authgw-bench-receiver-")[1])
        args = [sys.executable, "-m", "bench.delivery", "receive", str(self.port), str(self.path)]
        self.process = subprocess.Popen([*args, "fail"] if failing else args, cwd=ROOT)
        wait_for("the receiver listening", self._listening, 30)

    def _listening(self) -> bool:
        import socket

        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def arrivals(self, prefix: str) -> dict[str, float]:
        """When each customer's first delivery arrived (time.time()), by customer id."""
        out: dict[str, float] = {}
        for line in self.path.read_text().splitlines():
            at, _, customer = line.partition(" ")
            if customer.startswith(prefix):
                out.setdefault(customer, float(at))
        return out

    def count(self) -> int:
        return len(self.path.read_text().splitlines())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.path.unlink(missing_ok=True)


def receive(port: int, path: str, failing: bool) -> None:
    out = open(path, "a", buffering=1)  # noqa: SIM115 (open for the process's life)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            out.write(f"{time.time():.6f} {json.loads(body)['data']['customer_id']}\n")
            self.send_response(500 if failing else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    ThreadingHTTPServer.request_queue_size = 1024  # a backlog of 5 would refuse bursts
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


def throughput(run: Run, count: int) -> dict[str, float]:
    got = Receiving()
    try:
        run.endpoint("throughput", got.url)
        for n in range(count):
            run.transition(f"tp-{n}")
        run.start_deliverer()
        wait_for("the backlog delivered", lambda: len(got.arrivals("tp-")) >= count, 600)
        times = sorted(got.arrivals("tp-").values())
        run.stop_deliverer()
        run.drop("throughput")
    finally:
        got.stop()
    seconds = times[-1] - times[0]
    return {
        "events": count,
        "seconds": round(seconds, 2),
        "events_per_second": round((count - 1) / seconds, 1),
    }


def latency(run: Run, rate: float, seconds: float, failing: bool, label: str) -> dict[str, float]:
    got = Receiving()
    broken = Receiving(failing=True) if failing else None
    try:
        run.endpoint("healthy", got.url)
        if broken:
            run.endpoint("failing", broken.url)
        run.start_deliverer()
        time.sleep(3)  # the deliverer has started, read the endpoints and subscribed
        answered: dict[str, float] = {}
        total = int(rate * seconds)
        started = time.monotonic()
        for n in range(total):
            due = started + n / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            customer = f"{label}-{n}"
            run.transition(customer)
            answered[customer] = time.time()
        achieved = total / (time.monotonic() - started)
        wait_for("every delivery at the healthy endpoint", lambda: len(got.arrivals(label)) >= total, 300)
        came = got.arrivals(label)
        failing_attempts = broken.count() if broken else 0
        healthy_attempts = got.count()
        run.stop_deliverer()
        run.drop("healthy")
        if broken:
            run.drop("failing")
    finally:
        got.stop()
        if broken:
            broken.stop()
    ms = [(came[c] - answered[c]) * 1000 for c in answered]
    return {
        "transitions": total,
        "rate_per_second": round(achieved, 1),
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
        "healthy_endpoint_attempts": healthy_attempts,
        "failing_endpoint_attempts": failing_attempts,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["receive"]:
        receive(int(argv[1]), argv[2], failing=argv[3:] == ["fail"])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer events and a shorter steady run")
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args(argv)
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: no redis-server on the PATH")
    store = start_redis_server(binary)
    try:
        run = Run(store.url)
        backlog = 1000 if args.quick else 5000
        steady = 10.0 if args.quick else 30.0
        result = {
            "cpus": os.cpu_count(),
            "throughput": throughput(run, backlog),
            "latency_healthy": latency(run, args.rate, steady, failing=False, label="lh"),
            "latency_with_a_failing_endpoint": latency(run, args.rate, steady, failing=True, label="lf"),
        }
    finally:
        store.stop()
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-delivery.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"bench: wrote {out.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
