"""Pure helpers of the benchmark: percentiles, ratios, and Redis INFO / MONITOR parsing.

Nothing here touches a socket or a clock, so ``tests/test_bench_smoke.py`` can check it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of ``values`` by linear interpolation (numpy's default)."""
    if not values:
        raise ValueError("no values")
    if not 0 <= pct <= 100:
        raise ValueError("pct must be between 0 and 100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``, or None when either is missing or the baseline is zero."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def parse_info(text: str) -> dict[str, str]:
    """``INFO`` output as a flat mapping of field to raw value (section headers dropped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, _, value = line.partition(":")
        out[name] = value
    return out


def parse_commandstats(text: str) -> dict[str, int]:
    """``INFO commandstats`` as command -> calls (``cmdstat_evalsha:calls=3,...`` -> {'evalsha': 3})."""
    calls: dict[str, int] = {}
    for name, value in parse_info(text).items():
        if not name.startswith("cmdstat_"):
            continue
        fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
        calls[name[len("cmdstat_") :]] = int(fields.get("calls", "0"))
    return calls


def delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Per-key increase from ``before`` to ``after``; keys that did not move are left out."""
    out = {}
    for key, value in after.items():
        moved = value - before.get(key, 0)
        if moved:
            out[key] = moved
    return out


def per_request(counts: Mapping[str, int], requests: int) -> dict[str, float]:
    """Counts divided by a number of requests (empty when there were none)."""
    if requests <= 0:
        return {}
    return {key: value / requests for key, value in sorted(counts.items())}


# One MONITOR line: `1700000000.123456 [0 127.0.0.1:5000] "evalsha" "..."`; scripts show `[0 lua]`.
MONITOR_LINE = re.compile(r'^\d+\.\d+ \[\d+ (?P<source>[^\]]+)\] "(?P<command>[^"]+)"')


def classify_monitor(lines: Iterable[str]) -> dict[str, dict[str, int]]:
    """Commands seen by MONITOR, split into those a client sent (``client``: one round trip each,
    unless pipelined) and those a Lua script ran (``lua``)."""
    out: dict[str, dict[str, int]] = {"client": {}, "lua": {}}
    for line in lines:
        match = MONITOR_LINE.match(line.strip())
        if not match:
            continue
        side = "lua" if match["source"] == "lua" else "client"
        command = match["command"].lower()
        out[side][command] = out[side].get(command, 0) + 1
    return out


# Sent once per new connection (HELLO/AUTH/CLIENT SETINFO/SELECT) or once per process and script
# (SCRIPT LOAD after NOSCRIPT), or by the benchmark itself: not part of a request's steady cost.
SETUP_COMMANDS = frozenset({"hello", "auth", "client", "select", "script", "info", "monitor", "echo"})


def split_setup(commands: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Client commands split into per-request ones and one-time setup ones."""
    steady = {k: v for k, v in commands.items() if k not in SETUP_COMMANDS}
    once = {k: v for k, v in commands.items() if k in SETUP_COMMANDS}
    return steady, once


def summarise_phase(rows: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows with their ratios to the ceiling row of the same phase added.

    Throughput ratio is path/ceiling (higher is better); latency ratios are path/ceiling too
    (lower is better).
    """
    out = []
    for row in rows:
        row = dict(row)
        row["rps_ratio"] = ratio(row.get("rps"), baseline.get("rps"))
        row["p50_ratio"] = ratio(row.get("p50_ms"), baseline.get("p50_ms"))
        row["p99_ratio"] = ratio(row.get("p99_ms"), baseline.get("p99_ms"))
        out.append(row)
    return out


def fmt(value: float | None, digits: int = 2) -> str:
    """A figure for the table: ``-`` when missing."""
    if value is None:
        return "-"
    if isinstance(value, float) and value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"
