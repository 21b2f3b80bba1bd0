"""The benchmark run: servers, request supplies, wrk runs, growth phases, the report.

One run, one machine, one private ``redis-server``: the ceiling (``bench/ceiling.py``) and the
gateway (``authgw serve``) are served with the same gunicorn settings and driven by ``wrk``
from its own process over loopback. For every path and growth phase it measures

- requests/s at saturation (``--connections`` connections, as fast as answers come);
- p50/p99 latency at half that rate (wrk paced by ``bench/wrk.lua``);
- Redis commands per request (``INFO commandstats`` delta over the saturation run) and
  round trips per request (``MONITOR`` over a few sequential requests: commands sent by a
  client, as opposed to those a Lua script ran);

and reports each figure with its ratio to the ceiling of the same phase.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from authgw.embedded import free_port, start_redis_server
from authgw.settings import load_settings
from bench import preload, stats
from bench.preload import CLIENT, Challenge, Loader, transfer_body

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
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
WRONG_PER_CHALLENGE = 9
WRONG_CHALLENGES_PER_CUSTOMER = 10
VOICE_PATH = "/webhooks/twilio/voice"
CEILING = "ceiling (GET + 1 Redis GET)"


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


# -- wrk --------------------------------------------------------------------------------------


def wrk_available() -> bool:
    if shutil.which("wrk"):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("wrk is missing: installing it with apt-get (Debian package 'wrk')")
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") is not None


def run_wrk(
    port: int, requests_file: str, mode: str, rate: float, duration: float, connections: int, threads: int
) -> dict[str, Any]:
    """One wrk run; returns wrk.lua's summary with rps and milliseconds added."""
    threads = max(1, min(threads, connections))
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "wrk.lua"),
        f"http://127.0.0.1:{port}",
        "--",
        requests_file,
        mode,
        f"{rate:.3f}",
        str(threads),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    # Let the requests still in flight when wrk stopped finish before anything is counted.
    time.sleep(0.5)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            out: dict[str, Any] = json.loads(line[len("BENCH_JSON ") :])
            break
    else:
        raise RuntimeError(f"wrk gave no summary: {done.stdout[-500:]} {done.stderr[-500:]}")
    span_s = out["span_ms"] / 1000
    out["rps"] = out["answered"] / span_s if span_s > 0 else None
    lat = out["latency_us"]
    out["p50_ms"], out["p99_ms"], out["p999_ms"] = lat["p50"] / 1000, lat["p99"] / 1000, lat["p999"] / 1000
    out["mean_ms"] = lat["mean"] / 1000
    out["target_rps"] = rate or None
    return out


# -- CPU accounting -----------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu(pids: Sequence[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (processes that are gone count as 0)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- Redis counters -----------------------------------------------------------------------------


def commandstats(client: Any) -> dict[str, int]:
    text = client.execute_command("INFO", "commandstats")
    if isinstance(text, dict):  # redis-py may parse INFO itself
        return {k[len("cmdstat_") :]: int(v["calls"]) for k, v in text.items() if k.startswith("cmdstat_")}
    return stats.parse_commandstats(text)


def total_commands(client: Any) -> int:
    return int(client.info("stats")["total_commands_processed"])


class Monitor:
    """MONITOR on its own connection while a few requests run, to count round trips.

    The reader stops at a marker command sent when the requests are done, so it never has to
    time out (which would drop the MONITOR connection)."""

    MARKER = "bench-monitor-stop"

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        monitor = self.client.monitor()
        monitor.connection.send_command("MONITOR")
        monitor.connection.read_response()  # OK
        self._ready.set()
        while True:
            line = str(monitor.connection.read_response())
            if self.MARKER in line:
                break
            self.lines.append(line)
        monitor.connection.disconnect()

    def __enter__(self) -> Monitor:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        with redis.Redis.from_url(self.url) as other:
            other.echo(self.MARKER)
        self._thread.join(10)
        self.client.close()


def reads_processed(client: Any) -> int:
    return int(client.info("stats")["total_reads_processed"])


def round_trips(url: str, port: int, sample: Sequence[Req]) -> dict[str, Any]:
    """Commands and round trips per request over ``sample`` (sent one at a time).

    The first fifth warms the connections (no health-check PING or connection setup counted);
    the rest is split in two: MONITOR over one half names the commands a client sent (pipelined
    ones each count there), and Redis's ``total_reads_processed`` over the other half counts the
    socket reads it served, one per round trip (a pipeline arrives in one read)."""
    warm, rest = sample[: len(sample) // 5], sample[len(sample) // 5 :]
    watched, counted = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    for req in warm:
        send(port, req)
    with Monitor(url) as monitor:
        statuses = [send(port, req)[0] for req in watched]
    seen = stats.classify_monitor(monitor.lines)
    client, once = stats.split_setup(seen["client"])
    admin = redis.Redis.from_url(url, decode_responses=True)
    try:
        r0 = reads_processed(admin)
        info_reads = reads_processed(admin) - r0  # what one INFO itself adds
        r1 = reads_processed(admin)
        statuses += [send(port, req)[0] for req in counted]
        r2 = reads_processed(admin)
    finally:
        admin.close()
    n, m = len(watched), len(counted)
    return {
        "requests": n + m,
        "statuses": sorted(set(statuses)),
        "round_trips_per_request": (r2 - r1 - info_reads) / m if m else None,
        "commands_sent_per_request": sum(client.values()) / n if n else None,
        "client_commands_per_request": stats.per_request(client, n),
        "connection_or_process_setup_commands": once,
        "script_commands_per_request": sum(seen["lua"].values()) / n if n else None,
    }


# -- paths ----------------------------------------------------------------------------------------


@dataclass
class Path_:
    """A measured path: how to make ``n`` requests for it, and whether they can be re-sent."""

    name: str
    server: str  # "gateway" or "ceiling"
    mode: str  # "once": each request changes state; "cycle": read-only, re-sent in turn
    make: Callable[[int], list[Req]]
    target: float | None = None  # the ratio target for its requests/s
    expected: tuple[int, ...] = (200,)


class Paths:
    """Request supplies, made through the loader right before each run."""

    def __init__(self, loader: Loader, gateway_port: int) -> None:
        self.loader = loader
        self.port = gateway_port
        self.public_url = f"http://127.0.0.1:{gateway_port}"
        self._sid = 0
        self._reads: list[Challenge] = []
        self.voice_available: bool | None = None
        self.voice_note = ""

    def status_read(self, n: int) -> list[Req]:
        if not self._reads:
            actors = self.loader.customers(500, "read", totp=True)
            self._reads = self.loader.challenges(actors, ["totp"], ttl=900, per_actor=4)
        return [api_req("GET", f"/v1/challenges/{ch.id}") for ch in self._reads[: max(1, n)]]

    def create(self, n: int) -> list[Req]:
        actors = self.loader.customers(n, "create", totp=True)
        return [api_req("POST", "/v1/challenges", transfer_body(a.customer_id)) for a in actors]

    def verify_right(self, n: int) -> list[Req]:
        actors = self.loader.customers(n, "verify", totp=True)
        challenges = self.loader.challenges(actors, ["totp"])
        # The step after the one each customer confirmed with: accepted for the next 30-60 s.
        return [
            api_req(
                "POST",
                f"/v1/challenges/{ch.id}/totp",
                {"code": self.loader.code(ch.customer, ch.customer.last_step + 1)},
            )
            for ch in challenges
        ]

    def verify_wrong(self, n: int) -> list[Req]:
        per_customer = WRONG_PER_CHALLENGE * WRONG_CHALLENGES_PER_CUSTOMER
        actors = self.loader.customers(max(1, math.ceil(n / per_customer)), "wrong", totp=True)
        challenges = self.loader.challenges(actors, ["totp"], per_actor=WRONG_CHALLENGES_PER_CUSTOMER)
        reqs = []
        for _ in range(WRONG_PER_CHALLENGE):
            for ch in challenges:
                reqs.append(
                    api_req(
                        "POST", f"/v1/challenges/{ch.id}/totp", {"code": self.loader.wrong_code(ch.customer)}
                    )
                )
        return reqs[:n]

    def consume(self, n: int) -> list[Req]:
        actors = self.loader.customers(n, "consume", totp=True)
        verified = self.loader.verify(self.loader.challenges(actors, ["totp"]))
        return [
            api_req("POST", f"/v1/challenges/{ch.id}/consume", {"transaction_digest": ch.digest})
            for ch in verified
        ]

    def voice(self, n: int) -> list[Req]:
        from twilio.request_validator import RequestValidator

        validator = RequestValidator(TWILIO_TOKEN)
        actors = self.loader.customers(n, "voice", totp=False)
        reqs = []
        for ch in self.loader.challenges(actors, ["callback"]):
            self._sid += 1
            params = {
                "AccountSid": "AC" + "0" * 32,
                "CallSid": f"CA{self._sid:032x}",
                "From": ch.customer.phone,
                "To": ch.line,
                "CallStatus": "ringing",
                "Direction": "inbound",
                "ApiVersion": "2010-04-01",
            }
            signature = validator.compute_signature(self.public_url + VOICE_PATH, params)
            reqs.append(
                Req(
                    "POST",
                    VOICE_PATH,
                    {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
                    urllib.parse.urlencode(params),
                )
            )
        return reqs

    def probe_voice(self) -> bool:
        """Whether the voice webhook exists and answers a matched call with TwiML."""
        req = self.voice(1)[0]
        try:
            status, body = send(self.port, req)
        except OSError as exc:
            self.voice_available, self.voice_note = False, f"probe failed: {exc}"
            return False
        if status == 404:
            self.voice_available, self.voice_note = False, "not available in this build (404)"
        elif status != 200:
            self.voice_available, self.voice_note = False, f"answered {status}: {body[:200]!r}"
        else:
            self.voice_available = True
            self.voice_note = body.decode("utf-8", "replace")[:200]
        return bool(self.voice_available)

    def all(self) -> list[Path_]:
        paths = [
            Path_(CEILING, "ceiling", "cycle", lambda n: []),
            Path_("status read", "gateway", "cycle", self.status_read),
            Path_("create challenge", "gateway", "once", self.create, 0.75, (201,)),
            Path_("verify TOTP, right code", "gateway", "once", self.verify_right, 0.85),
            Path_("verify TOTP, wrong code", "gateway", "once", self.verify_wrong, 0.85, (422,)),
            Path_("consume", "gateway", "once", self.consume),
        ]
        if self.voice_available:
            paths.append(Path_("voice webhook (matched call)", "gateway", "once", self.voice, 0.85))
        return paths


# -- one measurement ------------------------------------------------------------------------------


@dataclass
class Plan:
    sat_seconds: float
    half_seconds: float
    connections: int
    half_connections: int
    wrk_threads: int
    phases: tuple[int, ...]
    sample: int


def write_requests(workdir: Path, name: str, reqs: Sequence[Req]) -> str:
    path = workdir / f"{name}.tsv"
    with path.open("w", encoding="utf-8") as fh:
        for req in reqs:
            fh.write(req.line() + "\n")
    return str(path)


def measure(
    stack: Stack,
    paths: Paths,
    path: Path_,
    plan: Plan,
    admin: Any,
    ceiling_rps: float | None,
    with_round_trips: bool,
) -> dict[str, Any]:
    server = stack.ceiling if path.server == "ceiling" else stack.gateway
    assert server is not None
    slug = "".join(c if c.isalnum() else "-" for c in path.name.lower()).strip("-")
    row: dict[str, Any] = {"path": path.name, "server": path.server, "target_rps_ratio": path.target}

    def supply(seconds: float, rate: float | None) -> tuple[str, int]:
        if path.server == "ceiling":
            return "-", 0
        if path.mode == "cycle":
            reqs = path.make(2000)
        else:
            # Enough for the run at the given rate (at most the ceiling's), and a margin.
            reqs = path.make(max(200, int((rate or 1000) * seconds * 1.15)))
        return write_requests(stack.workdir, slug, reqs), len(reqs)

    if with_round_trips and path.server == "gateway":
        row["round_trips"] = round_trips(stack.redis_url, server.port, path.make(plan.sample * 2 + 10))
    elif with_round_trips:
        ceiling_sample = [Req("GET", "/")] * (plan.sample * 2 + 10)
        row["round_trips"] = round_trips(stack.redis_url, server.port, ceiling_sample)

    # Saturation.
    budget = ceiling_rps * 1.1 if ceiling_rps else 4000
    file, supplied = supply(plan.sat_seconds, budget)
    pids = [server.process.pid, *stack.worker_pids(server)]
    before, total_before = commandstats(admin), total_commands(admin)
    cpu_before = (process_cpu(pids), redis_cpu(admin), children_cpu())
    sat = run_wrk(server.port, file, path.mode, 0, plan.sat_seconds, plan.connections, plan.wrk_threads)
    cpu_after = (process_cpu(pids), redis_cpu(admin), children_cpu())
    after, total_after = commandstats(admin), total_commands(admin)
    moved = stats.delta(before, after)
    moved.pop("info", None)
    answered = sat["answered"]
    row.update(
        {
            "rps": sat["rps"],
            "sat_p50_ms": sat["p50_ms"],
            "sat_p99_ms": sat["p99_ms"],
            "sat_requests": answered,
            "sat_statuses": sat["statuses"],
            "sat_errors": sat["errors"],
            "supplied": supplied or None,
            "supply_used_up": bool(supplied) and path.mode == "once" and sat["sent"] >= supplied - 1,
            "redis_commands_per_request": (sum(moved.values()) / answered) if answered else None,
            "redis_commands_by_name_per_request": stats.per_request(moved, answered),
            # total_commands_processed also moves for the INFO calls bracketing the run (2).
            "total_commands_processed_per_request": ((total_after - total_before - 2) / answered)
            if answered
            else None,
        }
    )
    if answered:
        row["cpu_ms_per_request"] = {
            name: (b - a) * 1000 / answered
            for name, a, b in zip(
                ("server (master + workers)", "redis-server", "wrk"), cpu_before, cpu_after, strict=True
            )
        }
    ok = sum(v for k, v in sat["statuses"].items() if int(k) in path.expected)
    row["sat_expected_fraction"] = ok / answered if answered else None

    # Half the saturation rate, paced.
    half_rate = (sat["rps"] or 0) / 2
    if half_rate > 0:
        file, supplied = supply(plan.half_seconds, half_rate)
        half = run_wrk(
            server.port,
            file,
            path.mode,
            half_rate,
            plan.half_seconds,
            plan.half_connections,
            plan.wrk_threads,
        )
        ok = sum(v for k, v in half["statuses"].items() if int(k) in path.expected)
        row.update(
            {
                "half_target_rps": half_rate,
                "half_achieved_rps": half["rps"],
                "p50_ms": half["p50_ms"],
                "p99_ms": half["p99_ms"],
                "p999_ms": half["p999_ms"],
                "half_requests": half["answered"],
                "half_statuses": half["statuses"],
                "half_expected_fraction": ok / half["answered"] if half["answered"] else None,
            }
        )
    return row


# -- growth ---------------------------------------------------------------------------------------


def used_memory(admin: Any) -> int:
    return int(admin.info("memory")["used_memory"])


def memory_usage(admin: Any, key: str) -> int:
    return int(admin.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0") or 0)


BACKGROUND_START = 50_000_000  # serials of background customers (phones +8190 6xxx xxxx and up)


def preload_pending(
    stack: Stack, loader: Loader, admin: Any, already: int, count: int, measure_memory: bool
) -> dict[str, Any]:
    """``count`` more pending challenges, one per new customer (a phone, no TOTP), TTL 15 min,
    written through the gateway's scripts by several processes."""
    out: dict[str, Any] = {"added": count}
    start = BACKGROUND_START + already
    settings = loader.settings
    started = time.monotonic()
    mem0 = used_memory(admin)
    preload.background(stack.redis_url, settings, "bg", start, count)
    mem2 = used_memory(admin)
    out["seconds"] = time.monotonic() - started
    out["pending_per_second"] = count / out["seconds"] if out["seconds"] else None
    if measure_memory:
        actors = preload.background_actors("bg", start, min(1000, count))
        sample = actors[len(actors) // 2]
        keys = loader.keys.for_customer(sample.customer_id)
        sample_id = admin.zrange(keys.open, 0, 0)[0]
        per_key = {
            "challenge hash": memory_usage(admin, keys.challenge(sample_id)),
            "open zset (1 member)": memory_usage(admin, keys.open),
            "lines hash (1 entry)": memory_usage(admin, keys.lines),
            "events stream (1 entry)": memory_usage(admin, keys.events),
        }
        customer_keys = {
            "customer hash": memory_usage(admin, keys.customer),
            "phone index set": memory_usage(admin, loader.keys.phone_index(sample.phone)),
        }
        # A second challenge for customers who already have the per-customer keys.
        mem3 = used_memory(admin)
        further = loader.challenges(actors, ["callback"], ttl=900)
        mem4 = used_memory(admin)
        out["memory"] = {
            "measured_over": count,
            # Customers and challenges are written together; the customers' own share is known
            # from the variants below (per_customer) and is taken off here.
            "used_memory_delta_per_customer_and_challenge": (mem2 - mem0) / count,
            "memory_usage_of_one_challenge_keys": per_key,
            "memory_usage_one_challenge_total": sum(per_key.values()),
            "memory_usage_customer_keys": customer_keys,
            "used_memory_delta_per_further_challenge": (mem4 - mem3) / len(actors),
            "further_challenges_measured": len(actors),
            "variants": {
                label: memory_variant(loader, admin, config, min(2000, count))
                for label, config in MEMORY_VARIANTS
            },
        }
        m = out["memory"]
        m["used_memory_delta_per_customer"] = m["variants"]["redis defaults"]["per_customer"]
        m["used_memory_delta_per_challenge"] = (
            m["used_memory_delta_per_customer_and_challenge"] - m["used_memory_delta_per_customer"]
        )
        other = loader.keys.for_customer(further[0].customer.customer_id).challenge(further[0].id)
        m["bulk_fields_match_loader"] = sorted(admin.hkeys(keys.challenge(sample_id))) == sorted(
            admin.hkeys(other)
        )
    return out


MEMORY_VARIANTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("redis defaults", {}),
    ("hash-max-listpack-value 1024", {"hash-max-listpack-value": "1024"}),
    (
        "hash-max-listpack-value 1024, stream-node-max-bytes 512",
        {"hash-max-listpack-value": "1024", "stream-node-max-bytes": "512"},
    ),
)


def memory_variant(loader: Loader, admin: Any, config: dict[str, str], n: int) -> dict[str, Any]:
    """Memory of ``n`` new customers, their first pending challenge and a further one, under
    ``config`` (set for the measurement, then restored)."""
    old = {k: admin.config_get(k)[k] for k in config}
    for k, v in config.items():
        admin.config_set(k, v)
    try:
        m0 = used_memory(admin)
        actors = loader.customers(n, "mem", totp=False)
        m1 = used_memory(admin)
        made = loader.challenges(actors, None, ttl=900)
        m2 = used_memory(admin)
        loader.challenges(actors, ["callback"], ttl=900)
        m3 = used_memory(admin)
        sample = made[len(made) // 2]
        keys = loader.keys.for_customer(sample.customer.customer_id)
        return {
            "config": config,
            "customers": n,
            "per_customer": (m1 - m0) / n,
            "first_challenge_of_a_customer": (m2 - m1) / n,
            "further_challenge_of_a_customer": (m3 - m2) / n,
            "memory_usage_after_two_challenges": {
                "challenge hash": memory_usage(admin, keys.challenge(sample.id)),
                "open zset (2 members)": memory_usage(admin, keys.open),
                "lines hash (2 entries)": memory_usage(admin, keys.lines),
                "events stream (2 entries)": memory_usage(admin, keys.events),
            },
            "encoding_of_challenge_hash": admin.object("encoding", keys.challenge(sample.id)),
        }
    finally:
        for k, v in old.items():
            admin.config_set(k, v)


def layout_check(loader: Loader, admin: Any, port: int) -> dict[str, Any]:
    """One challenge through the API, one through the loader: same fields, same kinds of keys."""
    actors = loader.customers(2, "layout", totp=True)
    status, body = send(port, api_req("POST", "/v1/challenges", transfer_body(actors[0].customer_id)))
    if status != 201:
        return {"same": False, "note": f"API create answered {status}: {body[:200]!r}"}
    api_id = json.loads(body)["id"]
    ours = loader.challenges(actors[1:], None)[0]

    def shape(customer_id: str, cid: str) -> dict[str, Any]:
        keys = loader.keys.for_customer(customer_id)
        out = {}
        for label, key in (
            ("challenge", keys.challenge(cid)),
            ("open", keys.open),
            ("lines", keys.lines),
            ("events", keys.events),
            ("customer", keys.customer),
        ):
            kind = admin.type(key)
            fields = sorted(admin.hkeys(key)) if kind == "hash" else None
            out[label] = {"type": kind, "fields": fields, "has_ttl": admin.pttl(key) > 0}
        return out

    a, b = shape(actors[0].customer_id, api_id), shape(actors[1].customer_id, ours.id)
    return {"same": a == b, "api": a, "loader": b}


# -- profile and worker classes -------------------------------------------------------------------


PROFILE_BUCKETS = (
    # (bucket, substrings of a frame); a sample goes to the bucket of its innermost match.
    ("redis-py (send, parse, pool)", ("redis/", "socket.py")),
    ("validation (pydantic)", ("pydantic",)),
    ("json", ("json/",)),
    (
        "totp + secret decrypt",
        ("pyotp", "hmac.py", "authgw/secretbox.py", "cryptography", "authgw/challenges/totp.py"),
    ),
    ("phone numbers (libphonenumber)", ("phonenumbers",)),
    ("twilio signature", ("twilio",)),
    ("metrics (prometheus_client)", ("prometheus_client", "authgw/ops.py")),
    ("logging", ("logging/",)),
    ("gevent (event loop, greenlet switches)", ("gevent/", "greenlet")),
    ("gunicorn (accept, http parse, write)", ("gunicorn",)),
    ("flask/werkzeug (routing, request, response)", ("flask", "werkzeug")),
    ("app code (authgw, ceiling view)", ("authgw/", "bench/ceiling.py")),
)


def classify_stack(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for bucket, needles in PROFILE_BUCKETS:
            if any(n in frame for n in needles):
                return bucket
    return "other (interpreter, threads)"


def pyspy_binary() -> str | None:
    found = shutil.which("py-spy", path=str(VENV_BIN)) or shutil.which("py-spy")
    if found is None:
        say("installing py-spy into .venv for the profile")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=False)
        found = shutil.which("py-spy", path=str(VENV_BIN))
    return found


def profile(stack: Stack, server: Server, path: Path_, plan: Plan, seconds: float) -> dict[str, Any]:
    """Where the workers' Python time goes on one path at saturation (py-spy, GIL holder only)."""
    pyspy = pyspy_binary()
    if pyspy is None:
        return {"path": path.name, "note": "py-spy could not be installed"}
    out_file = stack.workdir / "profile.txt"
    out_file.unlink(missing_ok=True)
    if path.server == "ceiling":
        file = "-"
    else:
        reqs = path.make(int(seconds * 2500)) if path.mode == "once" else path.make(2000)
        file = write_requests(stack.workdir, "profile", reqs)
    spy = subprocess.Popen(
        [
            pyspy,
            "record",
            "--pid",
            str(server.process.pid),
            "--subprocesses",
            "--gil",
            "--format",
            "raw",
            "--rate",
            "200",
            "--duration",
            str(int(seconds)),
            "--output",
            str(out_file),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)
    pids = [server.process.pid, *stack.worker_pids(server)]
    cpu0 = process_cpu(pids)
    run = run_wrk(server.port, file, path.mode, 0, seconds - 2, plan.connections, plan.wrk_threads)
    cpu_ms = (process_cpu(pids) - cpu0) * 1000 / run["answered"] if run["answered"] else None
    _, err = spy.communicate(timeout=seconds + 30)
    if not out_file.exists():
        return {"path": path.name, "note": f"py-spy wrote nothing: {err.decode()[-300:]}"}
    buckets: dict[str, int] = {}
    for line in out_file.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        if count.isdigit():
            bucket = classify_stack(stack_text)
            buckets[bucket] = buckets.get(bucket, 0) + int(count)
    total = sum(buckets.values())
    shares = {k: v / total for k, v in sorted(buckets.items(), key=lambda kv: -kv[1])} if total else {}
    return {
        "path": path.name,
        "server": path.server,
        "samples": total,
        "rps": run["rps"],
        "worker_cpu_ms_per_request": cpu_ms,
        "share_of_gil_samples": {k: round(v, 3) for k, v in shares.items()},
        "cpu_ms_per_request_by_bucket": {k: round(v * cpu_ms, 3) for k, v in shares.items()}
        if cpu_ms
        else {},
        "note": "py-spy --gil --subprocesses --nonblocking at 200 Hz over every worker: only the thread "
        "holding the GIL is sampled, each sample goes to the bucket of its innermost recognised "
        "frame; worker CPU per request (from /proc) is split by those shares",
    }


# -- report -----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk_version = " ".join(
        subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split()[:2]
    )
    import flask
    import gunicorn
    import redis as redis_py

    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "gunicorn": gunicorn.__version__,
        "flask": flask.__version__,
        "redis_py": redis_py.__version__,
        "wrk": wrk_version.strip(),
        "loadavg_at_start": os.getloadavg(),
    }


def git_commit() -> str:
    """The commit measured: git's HEAD, or BENCH_COMMIT for a tree exported without .git."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else os.environ.get("BENCH_COMMIT", "")


def print_phase(phase: dict[str, Any]) -> None:
    rows = phase["rows"]
    print(f"\n== {phase['pending']:,} pending challenges in Redis ==")
    head = (
        f"{'path':32} {'req/s':>8} {'×ceil':>6} {'p50 ms':>7} {'p99 ms':>7} {'×ceil p99':>9} "
        f"{'cmds/req':>8} {'rt/req':>6} {'ok':>5}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        rt = (r.get("round_trips") or {}).get("round_trips_per_request")
        print(
            f"{r['path'][:32]:32} {stats.fmt(r.get('rps'), 0):>8} {stats.fmt(r.get('rps_ratio')):>6} "
            f"{stats.fmt(r.get('p50_ms')):>7} {stats.fmt(r.get('p99_ms')):>7} "
            f"{stats.fmt(r.get('p99_ratio')):>9} {stats.fmt(r.get('redis_commands_per_request'), 1):>8} "
            f"{stats.fmt(rt, 1):>6} {stats.fmt(r.get('sat_expected_fraction')):>5}"
        )


def judge(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, met or not, from the phases' rows."""
    phases = result["phases"]
    verdicts = []
    first = {r["path"]: r for r in phases[0]["rows"]}
    for name, row in first.items():
        if row.get("target_rps_ratio"):
            found = [next((r.get("rps_ratio") for r in p["rows"] if r["path"] == name), None) for p in phases]
            ratios = [x for x in found if x is not None]
            met = bool(ratios) and min(ratios) >= row["target_rps_ratio"]
            verdicts.append(
                {
                    "target": f"{name}: req/s ≥ {row['target_rps_ratio']} × ceiling",
                    "measured": ratios,
                    "met": met,
                }
            )
    worst = max(
        ((r.get("p99_ms") or 0), r["path"], p["pending"])
        for p in phases
        for r in p["rows"]
        if r["server"] == "gateway"
    )
    verdicts.append(
        {
            "target": "p99 at half the saturation rate < 10 ms (every path, every phase)",
            "measured": {"worst_p99_ms": worst[0], "path": worst[1], "pending": worst[2]},
            "met": worst[0] < 10,
        }
    )
    rts = {
        r["path"]: (r.get("round_trips") or {}).get("round_trips_per_request")
        for r in phases[0]["rows"]
        if r["server"] == "gateway"
    }
    verdicts.append(
        {
            "target": "one Redis round trip per transition and per read",
            "measured": rts,
            "met": all(v is not None and v <= 1.0 for v in rts.values()),
        }
    )
    if len(phases) > 1:
        growth = {}
        for name in first:
            a = next((r for r in phases[0]["rows"] if r["path"] == name), None)
            b = next((r for r in phases[-1]["rows"] if r["path"] == name), None)
            if a and b and a.get("p50_ms") and b.get("p50_ms"):
                ra = (a.get("cpu_ms_per_request") or {}).get("redis-server")
                rb = (b.get("cpu_ms_per_request") or {}).get("redis-server")
                growth[name] = {
                    "p50_ratio": b["p50_ms"] / a["p50_ms"],
                    "p99_ratio": b["p99_ms"] / a["p99_ms"],
                    "redis_cpu_per_request_ratio": stats.ratio(rb, ra),
                }
        flat = all(g["p50_ratio"] < 1.25 for g in growth.values())
        verdicts.append(
            {
                "target": f"flat latency from 0 to {phases[-1]['pending']:,} pending "
                "(p50 at the last phase within 1.25× of the first)",
                "measured": growth,
                "met": flat,
            }
        )
    mem = result.get("memory") or {}
    if mem:
        per = mem["used_memory_delta_per_challenge"]
        verdicts.append(
            {
                "target": "≤ 1 KiB of Redis memory per pending challenge, indexes included",
                "measured": {
                    "per_challenge_one_per_customer": per,
                    "per_further_challenge": mem["used_memory_delta_per_further_challenge"],
                },
                "met": per <= 1024,
            }
        )
    return verdicts


# -- main -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description="Benchmark authgw against its ceiling.")
    p.add_argument("--quick", action="store_true", help="a smoke run: seconds, small counts")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers for both servers (default 2)")
    p.add_argument("--worker-class", default=None, help="default: the production setting (gthread)")
    p.add_argument("--threads", type=int, default=None, help="threads per gthread worker")
    p.add_argument("--connections", type=int, default=32, help="wrk connections at saturation")
    p.add_argument("--phases", default=None, help="pending challenges per phase, e.g. 0,100000,1000000")
    p.add_argument("--seconds", type=float, default=None, help="seconds per wrk run")
    p.add_argument("--profile", action="store_true", help="also profile the workers with py-spy")
    p.add_argument("--compare", action="store_true", help="also compare worker classes and counts")
    p.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra gateway setting for this run, e.g. AUTHGW_RATE_LIMIT_CUSTOMER=0 (repeatable)",
    )
    p.add_argument("--note", default="", help="what else the machine was doing, for the record")
    p.add_argument("--out", default=None, help="JSON file (default bench/results/<time>.json)")
    return p.parse_args(list(argv))


def run_phase(
    stack: Stack, paths: Paths, plan: Plan, admin: Any, pending: int, with_round_trips: bool
) -> dict[str, Any]:
    rows = []
    all_paths = paths.all()
    ceiling_path = all_paths[0]
    first = measure(stack, paths, ceiling_path, plan, admin, None, with_round_trips)
    rows.append(first)
    for path in all_paths[1:]:
        say(f"  {path.name}")
        rows.append(measure(stack, paths, path, plan, admin, first["rps"], with_round_trips))
    # The ceiling again at the end, so that a machine that got busier mid-phase shows.
    again = measure(stack, paths, ceiling_path, plan, admin, None, False)
    baseline = dict(first)
    for key in ("rps", "p50_ms", "p99_ms"):
        values = [x for x in (first.get(key), again.get(key)) if x is not None]
        baseline[key] = sum(values) / len(values) if values else None
    baseline["ceiling_runs"] = [{k: r.get(k) for k in ("rps", "p50_ms", "p99_ms")} for r in (first, again)]
    rows[0] = baseline
    rows = stats.summarise_phase(rows, baseline)
    return {"pending": pending, "loadavg": os.getloadavg(), "rows": rows}


def compare_servers(
    workdir: Path, plan: Plan, settings_list: Sequence[tuple[str, int, int | None]], loader_settings: Any
) -> list[dict[str, Any]]:
    out = []
    for worker_class, workers, threads in settings_list:
        label = f"{worker_class} ×{workers}" + (f" ×{threads} threads" if threads else "")
        say(f"compare: {label}")
        stack = Stack(workdir, workers, worker_class, threads)
        stack.start_redis()
        try:
            stack.start_servers()
        except RuntimeError as exc:
            out.append({"server": label, "note": str(exc)})
            stack.stop()
            continue
        try:
            admin = redis.Redis.from_url(stack.redis_url, decode_responses=True)
            admin.set("bench:ceiling", "ok")
            assert stack.gateway is not None
            loader = Loader(admin, loader_settings)
            paths = Paths(loader, stack.gateway.port)
            all_paths = {p.name: p for p in paths.all()}
            run_wrk(stack.ceiling.port if stack.ceiling else 0, "-", "cycle", 0, 1, plan.connections, 1)
            ceiling = measure(stack, paths, all_paths[CEILING], plan, admin, None, False)
            server_cpu = "server (master + workers)"
            row: dict[str, Any] = {
                "server": label,
                "ceiling_rps": ceiling["rps"],
                "ceiling_p99_ms": ceiling["p99_ms"],
                "ceiling_cpu_ms": ceiling.get("cpu_ms_per_request", {}).get(server_cpu),
            }
            for name in ("status read", "verify TOTP, right code"):
                r = measure(stack, paths, all_paths[name], plan, admin, ceiling["rps"], False)
                row[name] = {
                    "rps": r["rps"],
                    "ratio": stats.ratio(r["rps"], ceiling["rps"]),
                    "p99_ms": r.get("p99_ms"),
                    "cpu_ms": r.get("cpu_ms_per_request", {}).get(server_cpu),
                }
            out.append(row)
            admin.close()
        finally:
            stack.stop()
    return out


def production_server(args: Any) -> dict[str, Any]:
    """The server settings both the gateway and the ceiling ran with, as ``authgw serve`` sets them."""
    from authgw.cli import gunicorn_options

    options = gunicorn_options("127.0.0.1", 0, args.workers, args.worker_class, args.threads)
    out = {
        "workers": args.workers,
        "worker_class": options["worker_class"],
        "reuse_port": options.get("reuse_port", False),
    }
    if options["worker_class"] == "gthread":
        out["threads"] = options.get("threads")
    else:
        out["worker_connections"] = options.get("worker_connections")
    return out


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if not wrk_available():
        print("bench: wrk is needed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    if args.quick:
        plan = Plan(args.seconds or 2, args.seconds or 2, args.connections, 8, 1, (0, 2_000, 10_000), 10)
    else:
        plan = Plan(
            args.seconds or 6, args.seconds or 6, args.connections, 16, 1, (0, 100_000, 1_000_000), 30
        )
    if args.phases:
        plan.phases = tuple(int(x) for x in args.phases.split(","))

    extra_env = dict(item.split("=", 1) for item in args.gateway_env)
    GATEWAY_ENV.update(extra_env)
    workdir = Path(tempfile.mkdtemp(prefix="authgw-bench-"))
    stack = Stack(workdir, args.workers, args.worker_class, args.threads)
    started = datetime.now(UTC)
    result: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "commit": git_commit(),
        "mode": "quick" if args.quick else "full",
        "note": args.note,
        "machine": machine(),
        "gateway_env": {k: v for k, v in GATEWAY_ENV.items() if "KEY" not in k and "TOKEN" not in k},
        "server": production_server(args),
        "method": {
            "load_generator": "wrk 4 with bench/wrk.lua, over loopback, from its own process",
            "saturation": f"{plan.connections} connections, {plan.sat_seconds:g} s, unpaced",
            "half_rate": f"{plan.half_connections} connections, {plan.half_seconds:g} s, paced by "
            "wrk.lua at half the saturation rate (constant-rate schedule per thread; latency "
            "from the actual send, no coordinated-omission correction)",
            "req_per_s": "answers / (last answer - first send) as timed inside wrk.lua",
            "redis_commands": "INFO commandstats delta over the saturation run / answers (commands run "
            "inside Lua scripts included)",
            "round_trips": f"{plan.sample} sequential requests: INFO total_reads_processed delta / "
            f"requests (a pipeline is one read); MONITOR over {plan.sample} more names the "
            "commands sent",
        },
        "phases": [],
    }
    say(f"work directory {workdir}")
    try:
        stack.start_redis()
        stack.start_servers()
        assert stack.gateway is not None and stack.ceiling is not None
        admin = redis.Redis.from_url(stack.redis_url, decode_responses=True)
        admin.set("bench:ceiling", "ok")
        result["machine"]["redis"] = admin.info("server")["redis_version"]
        env = stack.gateway_env(stack.gateway.port)
        settings = load_settings(environ=env)
        loader = Loader(admin, settings)
        paths = Paths(loader, stack.gateway.port)
        result["layout_check"] = layout_check(loader, admin, stack.gateway.port)
        if not result["layout_check"]["same"]:
            say("warning: the loader's records differ from the API's (see layout_check in the JSON)")
        paths.probe_voice()
        result["voice_webhook"] = {"available": paths.voice_available, "note": paths.voice_note}
        say(f"voice webhook: {'measured' if paths.voice_available else paths.voice_note}")
        # Warm both servers (scripts loaded, pools filled) before anything is timed.
        run_wrk(stack.ceiling.port, "-", "cycle", 0, 1, plan.connections, 1)
        run_wrk(
            stack.gateway.port,
            write_requests(workdir, "warm", paths.status_read(2000)),
            "cycle",
            0,
            1,
            plan.connections,
            1,
        )

        pending = 0
        for i, target in enumerate(plan.phases):
            if target > pending:
                say(f"preloading {target - pending:,} pending challenges")
                load = preload_pending(
                    stack, loader, admin, pending, target - pending, "memory" not in result
                )
                if "memory" in load:
                    result["memory"] = load.pop("memory")
                result.setdefault("preloads", []).append(load)
                pending = target
            say(f"phase: {pending:,} pending")
            phase = run_phase(stack, paths, plan, admin, pending, with_round_trips=(i == 0))
            phase["used_memory"] = used_memory(admin)
            result["phases"].append(phase)
            print_phase(phase)

        if args.profile:
            say("profiling the workers (py-spy)")
            seconds = 8 if not args.quick else 4
            result["profile"] = [
                profile(stack, stack.ceiling if p.server == "ceiling" else stack.gateway, p, plan, seconds)
                for p in paths.all()
            ]
        admin.close()
    finally:
        stack.stop()

    if args.compare:
        combos: list[tuple[str, int, int | None]] = [
            ("gthread", 2, 4),
            ("gthread", 4, 2),
            ("gthread", 2, 1),
            ("sync", 2, None),
            ("sync", 4, None),
        ]
        try:
            import gevent  # noqa: F401

            combos += [("gevent", 2, None)]
        except ImportError:
            result["compare_note"] = "gevent is not installed in .venv: pip install gevent to include it"
        cplan = Plan(
            min(plan.sat_seconds, 5),
            min(plan.half_seconds, 5),
            plan.connections,
            plan.half_connections,
            1,
            (0,),
            plan.sample,
        )
        result["compare"] = compare_servers(workdir, cplan, combos, settings)

    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    result["targets"] = judge(result)
    name = f"{started.strftime('%Y%m%dT%H%M%SZ')}-{result['mode']}.json"
    out = Path(args.out) if args.out else RESULTS / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print("\nTargets:")
    for v in result["targets"]:
        print(f"  [{'met' if v['met'] else 'MISSED'}] {v['target']}")
    if result.get("memory"):
        m = result["memory"]
        print(
            f"\nMemory per pending challenge: {m['used_memory_delta_per_challenge']:.0f} B "
            "(one per customer, "
            f"its open/lines/events keys included); {m['used_memory_delta_per_further_challenge']:.0f} B "
            "for a further challenge of the same customer"
        )
    print(f"\nJSON: {out}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0
