"""Property test of the usage book (API.md Additions, "Limits and step-up"): any sequence of
create, cancel, fail, expire, verify and consume keeps ``used_today`` equal to the sum of the
amounts that still count (open and unexpired, or consumed today). Over HTTP, on fakeredis (a
fresh store per example), with the clock injected."""

from __future__ import annotations

from typing import Any

import fakeredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authgw.app import create_app
from tests.helpers.api import Api, enrol_totp, register, totp_code, transfer, wrong_code
from tests.helpers.settings import Clock, settings_for_tests

AMOUNTS = st.integers(min_value=1, max_value=400_000)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), AMOUNTS),
        st.tuples(st.sampled_from(["cancel", "fail", "verify", "consume"]), st.integers(0, 7)),
        st.tuples(st.just("wait"), st.integers(1, 200)),
    ),
    max_size=14,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_used_today_is_the_sum_of_what_still_counts(steps: list[tuple[str, int]]) -> None:
    clock = Clock(1_800_000_000.0)  # 2027-01-15 17:00 JST: no midnight within the steps
    app = create_app(
        {
            **settings_for_tests(limit_transfer_daily=1_000_000, lockout_threshold=100),
            "redis_client": fakeredis.FakeRedis(decode_responses=True),
            "clock": clock,
        }
    )
    api = Api(app.test_client())
    register(api)
    secret = enrol_totp(api, clock)
    made: list[dict[str, Any]] = []  # id, amount, expires (s), state

    def counted() -> int:
        total = 0
        for ch in made:
            if ch["state"] == "consumed" or (ch["state"] in ("pending", "verified") and clock() < ch["exp"]):
                total += ch["amount"]
        return total

    for op, arg in steps:
        if op == "create":
            rv = api.post("/v1/challenges", transfer(amount=arg, methods=["totp"], ttl_seconds=300))
            if counted() + arg > 1_000_000:
                assert rv.status_code == 422 and rv.get_json()["code"] == "limit_exceeded"
            else:
                assert rv.status_code == 201, rv.get_data(as_text=True)
                made.append(
                    {"id": rv.get_json()["id"], "amount": arg, "exp": clock() + 300, "state": "pending"}
                )
        elif op == "wait":
            clock.advance(arg)
        elif made:
            ch = made[arg % len(made)]
            live = ch["state"] in ("pending", "verified") and clock() < ch["exp"]
            path = f"/v1/challenges/{ch['id']}"
            if op == "cancel":
                rv = api.post(f"{path}/cancel")
                if live and ch["state"] == "pending":
                    assert rv.status_code == 200
                    ch["state"] = "cancelled"
            elif op == "fail" and live and ch["state"] == "pending":
                for _ in range(3):
                    api.post(f"{path}/totp", {"code": wrong_code(secret, clock())})
                ch["state"] = "failed"
            elif op == "verify" and live and ch["state"] == "pending" and clock() + 30 < ch["exp"]:
                clock.advance(30)  # a fresh TOTP step
                assert api.post(f"{path}/totp", {"code": totp_code(secret, clock())}).status_code == 200
                ch["state"] = "verified"
            elif op == "consume" and live and ch["state"] == "verified":
                rv = api.post(
                    f"{path}/consume", {"transaction_digest": api.get(path).get_json()["transaction_digest"]}
                )
                assert rv.status_code == 200
                ch["state"] = "consumed"
        used = api.get("/v1/customers/cust-001/limits").get_json()["transfer"]["used_today"]
        assert used == counted(), (op, arg)
