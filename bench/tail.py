"""Where a half-rate latency tail is spent: ``python3 bench/tail.py [PATH] [--rounds N]``.

Like ``bench/run.py`` it makes ``.venv`` on its first run and re-runs itself inside it.

Starts the same stack as ``bench/run.py`` (a private redis-server, ``authgw serve`` and the
ceiling), finds the path's saturation rate, then runs it at half that rate several times and
sets side by side, for each round:

- wrk's p50 / p99 / p99.9 (time from send to answer, as the load generator sees it);
- the gateway's own duration of each request, from its access log (``duration_ms``: the first
  ``before_request`` to the last ``after_request``), as p50 / p99 / p99.9 / max;
- each worker's and redis-server's CPU and run-queue wait over the round
  (``/proc/<pid>/schedstat``: time on a core, time waiting for one, time slices);
- Redis's slow log: the commands that took over 1 ms.

It prints a table and writes nothing. docs/performance.md quotes a run of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import percentile


def schedstat(text: str) -> tuple[int, int, int]:
    """``/proc/<pid>/schedstat``: ns on a core, ns waiting for one, time slices."""
    on_cpu, waiting, slices = (int(field) for field in text.split()[:3])
    return on_cpu, waiting, slices


def read_schedstat(pid: int) -> tuple[int, int, int]:
    try:
        return schedstat(Path(f"/proc/{pid}/schedstat").read_text())
    except OSError:
        return 0, 0, 0


def server_durations(lines: Iterable[str]) -> list[float]:
    """The ``duration_ms`` of every access-log line among ``lines`` (other lines are skipped)."""
    out = []
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("logger") == "authgw.access" and record.get("duration_ms") is not None:
            out.append(float(record["duration_ms"]))
    return out


def summary(values: Sequence[float]) -> str:
    if not values:
        return "none"
    return (
        f"p50 {percentile(values, 50):.2f} p99 {percentile(values, 99):.2f} "
        f"p99.9 {percentile(values, 99.9):.2f} max {max(values):.2f}"
    )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", default="verify TOTP, wrong code")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    import redis

    from authgw.settings import load_settings
    from bench.paths import Paths
    from bench.preload import Loader
    from bench.stack import Stack
    from bench.wrk_driver import run_wrk, write_requests, wrk_available

    if not wrk_available():
        print("bench: wrk is needed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="authgw-tail-"))
    stack = Stack(workdir, args.workers, None, None)
    stack.start_redis()
    stack.start_servers()
    try:
        assert stack.gateway is not None
        admin: Any = redis.Redis.from_url(stack.redis_url, decode_responses=True)
        admin.set("bench:ceiling", "ok")
        loader = Loader(admin, load_settings(environ=stack.gateway_env(stack.gateway.port)))
        paths = {p.name: p for p in Paths(loader, stack.gateway.port).all()}
        path = paths[args.path]
        file = write_requests(workdir, "saturation", path.make(30_000))
        rate = run_wrk(stack.gateway.port, file, path.mode, 0, 3, 32, 1)["rps"] / 2
        print(f"{args.path}: half the saturation rate is {rate:,.0f} req/s")
        redis_pid = int(admin.info("server")["process_id"])
        admin.config_set("slowlog-log-slower-than", 1000)
        for n in range(args.rounds):
            file = write_requests(workdir, f"round{n}", path.make(int(rate * args.seconds) + 500))
            pids = {f"worker {p}": p for p in stack.worker_pids(stack.gateway)} | {"redis": redis_pid}
            before = {name: read_schedstat(pid) for name, pid in pids.items()}
            log_from = stack.gateway.log.stat().st_size
            admin.slowlog_reset()
            run = run_wrk(stack.gateway.port, file, path.mode, rate, args.seconds, 16, 1)
            after = {name: read_schedstat(pid) for name, pid in pids.items()}
            with stack.gateway.log.open("rb") as fh:
                fh.seek(log_from)
                durations = server_durations(fh.read().decode("utf-8", "replace").splitlines())
            slow = admin.slowlog_get(100)
            print(
                f"round {n}: wrk p50 {run['p50_ms']:.2f} p99 {run['p99_ms']:.2f} "
                f"p99.9 {run['p999_ms']:.2f} | gateway's own ({len(durations)}) {summary(durations)}"
            )
            for name in pids:
                on_cpu, waiting, slices = (a - b for a, b in zip(after[name], before[name], strict=True))
                print(
                    f"    {name}: {on_cpu / 1e6:,.0f} ms on a core, {waiting / 1e6:,.0f} ms waiting "
                    f"for one, {slices:,} slices"
                )
            print(
                f"    redis commands over 1 ms: {len(slow)}"
                + (f", longest {max(e['duration'] for e in slow) / 1000:.1f} ms" if slow else "")
            )
        admin.close()
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    from bench.run import run_in_venv

    run_in_venv(__file__)
    sys.exit(main(sys.argv[1:]))
