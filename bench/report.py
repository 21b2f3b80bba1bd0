"""Markdown tables from a results file: ``python3 bench/report.py bench/results/<run>.json``.

``docs/performance.md`` quotes these tables, so every figure there can be traced to one run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import fmt


def _row_by_path(phase: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((r for r in phase["rows"] if r["path"] == name), None)


def phase_table(phase: dict[str, Any]) -> list[str]:
    out = [
        f"**{phase['pending']:,} pending challenges** (load average {phase['loadavg'][0]:.1f})",
        "",
        "| path | req/s × ceiling | req/s | p50 ms (× ceiling) | p99 ms (× ceiling) | Redis cmds/req "
        "| round trips/req | server CPU ms/req (ceiling ÷ path) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    server = "server (master + workers)"
    base_cpu = (phase["rows"][0].get("cpu_ms_per_request") or {}).get(server)
    for r in phase["rows"]:
        rt = (r.get("round_trips") or {}).get("round_trips_per_request")
        cpu = (r.get("cpu_ms_per_request") or {}).get(server)
        cpu_ratio = base_cpu / cpu if base_cpu and cpu else None
        out.append(
            f"| {r['path']} | **{fmt(r.get('rps_ratio'))}** | {fmt(r.get('rps'), 0)} | "
            f"{fmt(r.get('p50_ms'))} ({fmt(r.get('p50_ratio'))}) | {fmt(r.get('p99_ms'))} "
            f"({fmt(r.get('p99_ratio'))}) | {fmt(r.get('redis_commands_per_request'), 1)} | "
            f"{fmt(rt, 1)} | {fmt(cpu)} ({fmt(cpu_ratio)}) |"
        )
    runs = phase["rows"][0].get("ceiling_runs") or []
    if len(runs) == 2:
        out += [
            "",
            f"The ceiling ran at {fmt(runs[0]['rps'], 0)} req/s at the start of this phase and "
            f"{fmt(runs[1]['rps'], 0)} at its end; the ratios are to their mean.",
        ]
    return out


def growth_table(result: dict[str, Any]) -> list[str]:
    phases = result["phases"]
    head = "| path | " + " | ".join(f"{p['pending']:,} pending" for p in phases) + " |"
    out = [head, "|---|" + "---|" * len(phases)]
    for r in phases[0]["rows"]:
        cells = []
        for p in phases:
            x = _row_by_path(p, r["path"]) or {}
            redis_us = (x.get("cpu_ms_per_request") or {}).get("redis-server")
            cells.append(
                f"{fmt(x.get('rps_ratio'))} · {fmt(x.get('p50_ms'))} / {fmt(x.get('p99_ms'))} ms · "
                f"{fmt(redis_us * 1000 if redis_us is not None else None, 0)} µs"
            )
        out.append(f"| {r['path']} | " + " | ".join(cells) + " |")
    return out


def memory_lines(result: dict[str, Any]) -> list[str]:
    m = result.get("memory")
    if not m:
        return []
    out = [
        f"Measured over {m['measured_over']:,} pending challenges, one per new customer:",
        "",
        "| what | bytes |",
        "|---|---|",
        f"| used_memory per pending challenge (its customer's first) | "
        f"{m['used_memory_delta_per_challenge']:.0f} |",
        f"| used_memory per further pending challenge of a customer | "
        f"{m['used_memory_delta_per_further_challenge']:.0f} |",
        f"| used_memory per customer (hash + phone index) | {m['used_memory_delta_per_customer']:.0f} |",
    ]
    for key, value in m["memory_usage_of_one_challenge_keys"].items():
        out.append(f"| MEMORY USAGE {key} | {value} |")
    out += [
        "",
        "| Redis settings | first challenge of a customer | further challenge | challenge hash encoding |",
        "|---|---|---|---|",
    ]
    for label, v in m.get("variants", {}).items():
        out.append(
            f"| {label} | {v['first_challenge_of_a_customer']:.0f} | "
            f"{v['further_challenge_of_a_customer']:.0f} | {v['encoding_of_challenge_hash']} |"
        )
    return out


def profile_lines(result: dict[str, Any]) -> list[str]:
    profiles = result.get("profile") or []
    if not profiles:
        return []
    buckets: list[str] = []
    for p in profiles:
        for k in p.get("cpu_ms_per_request_by_bucket", {}):
            if k not in buckets:
                buckets.append(k)
    out = [
        "| bucket (worker CPU ms/request) | " + " | ".join(p["path"] for p in profiles) + " |",
        "|---|" + "---|" * len(profiles),
        "| **total worker CPU** | "
        + " | ".join(fmt(p.get("worker_cpu_ms_per_request")) for p in profiles)
        + " |",
    ]
    for b in buckets:
        out.append(
            f"| {b} | "
            + " | ".join(fmt(p.get("cpu_ms_per_request_by_bucket", {}).get(b), 3) for p in profiles)
            + " |"
        )
    return out


def compare_lines(result: dict[str, Any]) -> list[str]:
    rows = result.get("compare") or []
    if not rows:
        return []
    out = [
        "| server | ceiling req/s · CPU ms/req | status read req/s (× ceiling) · CPU ms/req "
        "| verify req/s (× ceiling) · CPU ms/req |",
        "|---|---|---|---|",
    ]
    for r in rows:
        if "note" in r:
            out.append(f"| {r['server']} | {r['note']} | | |")
            continue
        s, v = r["status read"], r["verify TOTP, right code"]
        out.append(
            f"| {r['server']} | {fmt(r['ceiling_rps'], 0)} · {fmt(r.get('ceiling_cpu_ms'))} | "
            f"{fmt(s['rps'], 0)} ({fmt(s['ratio'])}) · {fmt(s.get('cpu_ms'))} | "
            f"{fmt(v['rps'], 0)} ({fmt(v['ratio'])}) · {fmt(v.get('cpu_ms'))} |"
        )
    return out


def _server(server: dict[str, Any]) -> str:
    text = f"{server.get('worker_class')} × {server.get('workers')} workers"
    if server.get("threads"):
        text += f" × {server['threads']} threads"
    if server.get("reuse_port"):
        text += ", a socket per worker"
    return text


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"Run {result['started_at']} ({result['mode']}), commit {result['commit']}: {m['cores']} cores "
        f"({m['cpu_model']}), {m['memory_gib']} GiB, Python {m['python']}, Redis {m.get('redis')}, "
        f"gunicorn {m['gunicorn']} ({_server(result.get('server') or {})}), {m['wrk']}; "
        f"load average {m['loadavg_at_start'][0]:.1f} at the "
        f"start, {m.get('loadavg_at_end', [0])[0]:.1f} at the end. {result.get('note', '')}",
        "",
    ]
    for phase in result["phases"]:
        lines += phase_table(phase) + [""]
    if len(result["phases"]) > 1:
        lines += ["Growth: req/s × ceiling · p50 / p99 at half rate · redis-server CPU per request", ""]
        lines += growth_table(result) + [""]
    lines += memory_lines(result) + [""]
    lines += profile_lines(result) + [""]
    lines += compare_lines(result) + [""]
    lines += ["Targets:", ""]
    for v in result.get("targets", []):
        lines.append(f"- {'met' if v['met'] else '**missed**'}: {v['target']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(render(json.loads(Path(argv[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
