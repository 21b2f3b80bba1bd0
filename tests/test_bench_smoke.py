"""The benchmark's pure helpers: percentiles, ratios, INFO and MONITOR parsing, profile buckets.

No timing here: a benchmark reports figures, a test never fails on speed.
"""

from __future__ import annotations

import pytest

from bench import stats
from bench.judging import judge
from bench.profiling import classify_stack
from bench.stack import Req

COMMANDSTATS = """# Commandstats\r
cmdstat_evalsha:calls=120,usec=900,usec_per_call=7.50,rejected_calls=0,failed_calls=0\r
cmdstat_hget:calls=360,usec=100,usec_per_call=0.28,rejected_calls=0,failed_calls=0\r
cmdstat_info:calls=2,usec=40,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r
"""


def test_percentile_interpolates_like_numpy():
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert stats.percentile(values, 50) == pytest.approx(5.5)
    assert stats.percentile(values, 99) == pytest.approx(9.91)
    assert stats.percentile(values, 0) == 1
    assert stats.percentile(values, 100) == 10
    assert stats.percentile([7], 99) == 7


def test_percentile_refuses_nothing_and_out_of_range():
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1], 101)


def test_ratio_is_none_without_a_baseline():
    assert stats.ratio(850, 1000) == pytest.approx(0.85)
    assert stats.ratio(None, 1000) is None
    assert stats.ratio(5, 0) is None


def test_commandstats_are_parsed_and_differenced():
    before = stats.parse_commandstats(COMMANDSTATS)
    assert before == {"evalsha": 120, "hget": 360, "info": 2}
    after = dict(before, evalsha=220, hget=660, hmget=100)
    moved = stats.delta(before, after)
    assert moved == {"evalsha": 100, "hget": 300, "hmget": 100}
    assert stats.per_request(moved, 100) == {"evalsha": 1.0, "hget": 3.0, "hmget": 1.0}
    assert stats.per_request(moved, 0) == {}


def test_monitor_lines_split_client_round_trips_from_script_commands():
    lines = [
        '1700000000.000001 [0 127.0.0.1:50000] "hmget" "authgw:{c:ab}:customer" "totp"',
        '1700000000.000002 [0 127.0.0.1:50000] "evalsha" "abc" "5"',
        '1700000000.000003 [0 lua] "hget" "authgw:ch:x" "client"',
        '1700000000.000004 [0 lua] "hset" "authgw:ch:x" "status" "verified"',
        '1700000000.000005 [0 127.0.0.1:50001] "hello" "3"',
        "OK",
    ]
    seen = stats.classify_monitor(lines)
    assert seen == {"client": {"hmget": 1, "evalsha": 1, "hello": 1}, "lua": {"hget": 1, "hset": 1}}
    steady, once = stats.split_setup(seen["client"])
    assert steady == {"hmget": 1, "evalsha": 1}
    assert once == {"hello": 1}


def test_phase_rows_get_ratios_to_the_ceiling():
    ceiling = {"path": "ceiling", "rps": 2000.0, "p50_ms": 1.0, "p99_ms": 4.0}
    rows = stats.summarise_phase(
        [ceiling, {"path": "read", "rps": 1700.0, "p50_ms": 1.5, "p99_ms": 6.0}], ceiling
    )
    assert rows[0]["rps_ratio"] == 1.0
    assert rows[1]["rps_ratio"] == pytest.approx(0.85)
    assert rows[1]["p99_ratio"] == pytest.approx(1.5)


def test_requests_file_lines_refuse_tabs():
    line = Req("POST", "/v1/x", {"A": "b", "C": "d"}, '{"code":"123456"}').line()
    assert line == 'POST\t/v1/x\tA: b|C: d\t{"code":"123456"}'
    with pytest.raises(ValueError):
        Req("POST", "/v1/x", {}, "a\tb").line()


def test_profile_stacks_go_to_the_innermost_known_bucket():
    stack = (
        "run (gunicorn/workers/gthread.py:1);wsgi_app (flask/app.py:2);"
        "verify_totp (authgw/challenges/lifecycle.py:3);read_response (redis/connection.py:4)"
    )
    assert classify_stack(stack) == "redis-py (send, parse, pool)"
    assert classify_stack("x (flask/app.py:1);validate (pydantic/main.py:9)") == "validation (pydantic)"
    assert classify_stack("x (somewhere.py:1)") == "other (interpreter, threads)"


def test_targets_are_judged_from_the_rows():
    def row(path, rps, p99, target=None, rt=1.0, server="gateway"):
        return {
            "path": path,
            "server": server,
            "rps": rps,
            "rps_ratio": rps / 1000,
            "p50_ms": 1.0,
            "p99_ms": p99,
            "target_rps_ratio": target,
            "round_trips": {"round_trips_per_request": rt},
        }

    phase = {
        "pending": 0,
        "rows": [row("ceiling", 1000, 2.0, server="ceiling"), row("verify", 900, 4.0, 0.85, rt=2.0)],
    }
    verdicts = {v["target"].split(":")[0]: v["met"] for v in judge({"phases": [phase]})}
    assert verdicts["verify"] is True
    assert verdicts["p99 at half the saturation rate < 10 ms (every path, every phase)"] is True
    assert verdicts["one Redis round trip per transition and per read"] is False


def test_tail_reads_schedstat_and_the_access_log_durations():
    from bench.tail import schedstat, server_durations, summary

    assert schedstat("5150000000 44000000 3655\n") == (5_150_000_000, 44_000_000, 3655)
    lines = [
        '{"logger": "authgw.access", "duration_ms": 1.5, "status": 200}',
        '{"logger": "authgw.store", "message": "store error"}',
        "[2026-11-22 16:55:41 +0000] [7213] [INFO] Booting worker",
        '{"logger": "authgw.access", "duration_ms": 12.25}',
        '{"logger": "authgw.access", "duration_ms": null}',
        '{"logger": "authgw.access", "dur',
    ]
    assert server_durations(lines) == [1.5, 12.25]
    assert summary([]) == "none"
    assert summary([1.0, 2.0]).endswith("max 2.00")
