"""Driving ``wrk``: whether it is there, the request files it reads, one run and its summary.

``bench/wrk.lua`` reads a file of ``Req.line()`` lines (``write_requests``) and either sends
each once or cycles through them, unpaced or at a fixed rate; ``run_wrk`` runs it once and
returns the summary it prints, with requests/s and milliseconds added.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.stack import BENCH, Req, say


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


def write_requests(workdir: Path, name: str, reqs: Sequence[Req]) -> str:
    path = workdir / f"{name}.tsv"
    with path.open("w", encoding="utf-8") as fh:
        for req in reqs:
            fh.write(req.line() + "\n")
    return str(path)
