"""The benchmark run: the order of things, one measurement, the phases, the result file.

One run, one machine, one private ``redis-server``: the ceiling (``bench/ceiling.py``) and the
gateway (``authgw serve``) are served with the same gunicorn settings and driven by ``wrk``
from its own process over loopback. For every path and growth phase it measures

- requests/s at saturation (``--connections`` connections, as fast as answers come);
- p50/p99 latency at half that rate (wrk paced by ``bench/wrk.lua``);
- Redis commands per request (``INFO commandstats`` delta over the saturation run) and
  round trips per request (``MONITOR`` over a few sequential requests: commands sent by a
  client, as opposed to those a Lua script ran);

and reports each figure with its ratio to the ceiling of the same phase.

This module is the orchestrator; the parts live beside it: ``stack`` (the processes and the
requests sent to them), ``wrk_driver`` (wrk runs), ``probes`` (CPU, Redis counters, round trips,
memory), ``paths`` (the measured paths, the plan, preloading), ``profiling`` (py-spy) and
``judging`` (the machine, the phase tables, the targets).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from authgw.settings import load_settings
from bench import stats
from bench.judging import git_commit, judge, machine, print_phase
from bench.paths import CEILING, Path_, Paths, Plan, preload_pending
from bench.preload import Loader
from bench.probes import (
    children_cpu,
    commandstats,
    layout_check,
    process_cpu,
    redis_cpu,
    round_trips,
    total_commands,
    used_memory,
)
from bench.profiling import profile
from bench.stack import BENCH, GATEWAY_ENV, Req, Stack, say
from bench.wrk_driver import run_wrk, write_requests, wrk_available

RESULTS = BENCH / "results"


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
    if stack.deliver:
        drain_outboxes(admin, paths.loader)  # the supply's own events, fanned out before the run
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
        if stack.deliver:
            drain_outboxes(admin, paths.loader)
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
    p.add_argument(
        "--no-deliver",
        action="store_true",
        help="serve the gateway without its webhook deliverer (what the outbox costs the scripts alone)",
    )
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


def drain_outboxes(admin: Any, loader: Loader, seconds: float = 600.0) -> float:
    """Wait until the gateway's deliverer has fanned out the preload's events (every challenge
    the loader made wrote one to its bucket's outbox), so a phase measures the paths, not a
    backlog of the loader's; returns how long that took."""
    import time

    outboxes = loader.keys.outboxes()
    started = time.monotonic()
    while True:
        pipe = admin.pipeline(transaction=False)
        for outbox in outboxes:
            pipe.xlen(outbox)
        if sum(pipe.execute()) == 0:
            return round(time.monotonic() - started, 1)
        if time.monotonic() - started > seconds:
            raise SystemExit("bench: the deliverer did not drain the preload's outboxes")
        time.sleep(0.5)


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
    stack = Stack(workdir, args.workers, args.worker_class, args.threads, deliver=not args.no_deliver)
    started = datetime.now(UTC)
    result: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "commit": git_commit(),
        "mode": "quick" if args.quick else "full",
        "deliverer": not args.no_deliver,
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
        assert stack.gateway is not None
        assert stack.ceiling is not None
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
                if stack.deliver:
                    load["outbox_drained_seconds"] = drain_outboxes(admin, loader)
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
