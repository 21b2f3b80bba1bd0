"""What a run reads off the processes and Redis besides wrk's figures.

CPU seconds of the servers, of redis-server and of wrk; Redis's ``INFO commandstats`` and
command totals; commands and round trips per request (``Monitor`` over ``MONITOR``, and
``total_reads_processed``); Redis memory, per key and under other encoding settings; and the
layout check that the loader writes what the API writes.
"""

from __future__ import annotations

import json
import os
import resource
import threading
from collections.abc import Sequence
from typing import Any

import redis

from bench import stats
from bench.preload import Loader, transfer_body
from bench.stack import Req, api_req, send

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


# -- Redis memory -------------------------------------------------------------------------------


def used_memory(admin: Any) -> int:
    return int(admin.info("memory")["used_memory"])


def memory_usage(admin: Any, key: str) -> int:
    return int(admin.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0") or 0)


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


# -- layout check -------------------------------------------------------------------------------


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
