"""The report of a run: the machine and commit measured, a phase's table, the targets judged.

``judge`` reads the issue's targets (requests/s ratios to the ceiling, p99 under 10 ms, one
round trip per transition, flat latency as pending challenges grow, memory per challenge) off
a result's rows and says for each whether it was met.
"""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

from bench import stats
from bench.stack import ROOT


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
    from importlib.metadata import version

    import gunicorn
    import redis as redis_py

    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "gunicorn": gunicorn.__version__,
        "flask": version("flask"),
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
