"""Where the workers' Python time goes: py-spy over a path at saturation, in named buckets.

``classify_stack`` puts a sampled stack in the bucket of its innermost recognised frame
(``PROFILE_BUCKETS``); ``profile`` samples the workers with py-spy while wrk saturates one path
and splits the workers' CPU per request by the buckets' shares.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from typing import Any

from bench.paths import Path_, Plan
from bench.probes import process_cpu
from bench.stack import VENV_BIN, Server, Stack, say
from bench.wrk_driver import run_wrk, write_requests

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
