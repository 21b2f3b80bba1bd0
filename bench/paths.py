"""The measured paths, the run plan, and the pending challenges each growth phase adds.

``Paths`` makes, through the bench loader, the requests of every measured path right before
it runs (``Path_`` says how, and whether they can be re-sent); ``Plan`` holds a run's durations,
connections and phases; ``preload_pending`` writes a phase's background challenges and, the
first time, measures the memory they take.
"""

from __future__ import annotations

import math
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import preload
from bench.preload import Challenge, Loader, transfer_body
from bench.probes import MEMORY_VARIANTS, memory_usage, memory_variant, used_memory
from bench.stack import TWILIO_TOKEN, Req, Stack, api_req, send

WRONG_PER_CHALLENGE = 9
WRONG_CHALLENGES_PER_CUSTOMER = 10
VOICE_PATH = "/webhooks/twilio/voice"
CEILING = "ceiling (GET + 1 Redis GET)"


@dataclass
class Path_:
    """A measured path: how to make ``n`` requests for it, and whether they can be re-sent."""

    name: str
    server: str  # "gateway" or "ceiling"
    mode: str  # "once": each request changes state; "cycle": read-only, re-sent in turn
    make: Callable[[int], list[Req]]
    target: float | None = None  # the ratio target for its requests/s
    expected: tuple[int, ...] = (200,)


class Paths:
    """Request supplies, made through the loader right before each run."""

    def __init__(self, loader: Loader, gateway_port: int) -> None:
        self.loader = loader
        self.port = gateway_port
        self.public_url = f"http://127.0.0.1:{gateway_port}"
        self._sid = 0
        self._reads: list[Challenge] = []
        self.voice_available: bool | None = None
        self.voice_note = ""

    def status_read(self, n: int) -> list[Req]:
        if not self._reads:
            actors = self.loader.customers(500, "read", totp=True)
            self._reads = self.loader.challenges(actors, ["totp"], ttl=900, per_actor=4)
        return [api_req("GET", f"/v1/challenges/{ch.id}") for ch in self._reads[: max(1, n)]]

    def create(self, n: int) -> list[Req]:
        actors = self.loader.customers(n, "create", totp=True)
        return [api_req("POST", "/v1/challenges", transfer_body(a.customer_id)) for a in actors]

    def verify_right(self, n: int) -> list[Req]:
        actors = self.loader.customers(n, "verify", totp=True)
        challenges = self.loader.challenges(actors, ["totp"])
        # The step after the one each customer confirmed with: accepted for the next 30-60 s.
        return [
            api_req(
                "POST",
                f"/v1/challenges/{ch.id}/totp",
                {"code": self.loader.code(ch.customer, ch.customer.last_step + 1)},
            )
            for ch in challenges
        ]

    def verify_wrong(self, n: int) -> list[Req]:
        per_customer = WRONG_PER_CHALLENGE * WRONG_CHALLENGES_PER_CUSTOMER
        actors = self.loader.customers(max(1, math.ceil(n / per_customer)), "wrong", totp=True)
        challenges = self.loader.challenges(actors, ["totp"], per_actor=WRONG_CHALLENGES_PER_CUSTOMER)
        reqs = []
        for _ in range(WRONG_PER_CHALLENGE):
            for ch in challenges:
                reqs.append(
                    api_req(
                        "POST", f"/v1/challenges/{ch.id}/totp", {"code": self.loader.wrong_code(ch.customer)}
                    )
                )
        return reqs[:n]

    def consume(self, n: int) -> list[Req]:
        actors = self.loader.customers(n, "consume", totp=True)
        verified = self.loader.verify(self.loader.challenges(actors, ["totp"]))
        return [
            api_req("POST", f"/v1/challenges/{ch.id}/consume", {"transaction_digest": ch.digest})
            for ch in verified
        ]

    def voice(self, n: int) -> list[Req]:
        from twilio.request_validator import RequestValidator

        validator = RequestValidator(TWILIO_TOKEN)
        actors = self.loader.customers(n, "voice", totp=False)
        reqs = []
        for ch in self.loader.challenges(actors, ["callback"]):
            self._sid += 1
            params = {
                "AccountSid": "AC" + "0" * 32,
                "CallSid": f"CA{self._sid:032x}",
                "From": ch.customer.phone,
                "To": ch.line,
                "CallStatus": "ringing",
                "Direction": "inbound",
                "ApiVersion": "2010-04-01",
            }
            signature = validator.compute_signature(self.public_url + VOICE_PATH, params)
            reqs.append(
                Req(
                    "POST",
                    VOICE_PATH,
                    {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
                    urllib.parse.urlencode(params),
                )
            )
        return reqs

    def probe_voice(self) -> bool:
        """Whether the voice webhook exists and answers a matched call with TwiML."""
        req = self.voice(1)[0]
        try:
            status, body = send(self.port, req)
        except OSError as exc:
            self.voice_available, self.voice_note = False, f"probe failed: {exc}"
            return False
        if status == 404:
            self.voice_available, self.voice_note = False, "not available in this build (404)"
        elif status != 200:
            self.voice_available, self.voice_note = False, f"answered {status}: {body[:200]!r}"
        else:
            self.voice_available = True
            self.voice_note = body.decode("utf-8", "replace")[:200]
        return bool(self.voice_available)

    def all(self) -> list[Path_]:
        paths = [
            Path_(CEILING, "ceiling", "cycle", lambda n: []),
            Path_("status read", "gateway", "cycle", self.status_read),
            Path_("create challenge", "gateway", "once", self.create, 0.75, (201,)),
            Path_("verify TOTP, right code", "gateway", "once", self.verify_right, 0.85),
            Path_("verify TOTP, wrong code", "gateway", "once", self.verify_wrong, 0.85, (422,)),
            Path_("consume", "gateway", "once", self.consume),
        ]
        if self.voice_available:
            paths.append(Path_("voice webhook (matched call)", "gateway", "once", self.voice, 0.85))
        return paths


@dataclass
class Plan:
    sat_seconds: float
    half_seconds: float
    connections: int
    half_connections: int
    wrk_threads: int
    phases: tuple[int, ...]
    sample: int


BACKGROUND_START = 50_000_000  # serials of background customers (phones +8190 6xxx xxxx and up)


def preload_pending(
    stack: Stack, loader: Loader, admin: Any, already: int, count: int, measure_memory: bool
) -> dict[str, Any]:
    """``count`` more pending challenges, one per new customer (a phone, no TOTP), TTL 15 min,
    written through the gateway's scripts by several processes."""
    out: dict[str, Any] = {"added": count}
    start = BACKGROUND_START + already
    settings = loader.settings
    started = time.monotonic()
    mem0 = used_memory(admin)
    preload.background(stack.redis_url, settings, "bg", start, count)
    mem2 = used_memory(admin)
    out["seconds"] = time.monotonic() - started
    out["pending_per_second"] = count / out["seconds"] if out["seconds"] else None
    if measure_memory:
        actors = preload.background_actors("bg", start, min(1000, count))
        sample = actors[len(actors) // 2]
        keys = loader.keys.for_customer(sample.customer_id)
        sample_id = admin.zrange(keys.open, 0, 0)[0]
        per_key = {
            "challenge hash": memory_usage(admin, keys.challenge(sample_id)),
            "open zset (1 member)": memory_usage(admin, keys.open),
            "lines hash (1 entry)": memory_usage(admin, keys.lines),
            "events stream (1 entry)": memory_usage(admin, keys.events),
        }
        customer_keys = {
            "customer hash": memory_usage(admin, keys.customer),
            "phone index set": memory_usage(admin, loader.keys.phone_index(sample.phone)),
        }
        # A second challenge for customers who already have the per-customer keys.
        mem3 = used_memory(admin)
        further = loader.challenges(actors, ["callback"], ttl=900)
        mem4 = used_memory(admin)
        out["memory"] = {
            "measured_over": count,
            # Customers and challenges are written together; the customers' own share is known
            # from the variants below (per_customer) and is taken off here.
            "used_memory_delta_per_customer_and_challenge": (mem2 - mem0) / count,
            "memory_usage_of_one_challenge_keys": per_key,
            "memory_usage_one_challenge_total": sum(per_key.values()),
            "memory_usage_customer_keys": customer_keys,
            "used_memory_delta_per_further_challenge": (mem4 - mem3) / len(actors),
            "further_challenges_measured": len(actors),
            "variants": {
                label: memory_variant(loader, admin, config, min(2000, count))
                for label, config in MEMORY_VARIANTS
            },
        }
        m = out["memory"]
        m["used_memory_delta_per_customer"] = m["variants"]["redis defaults"]["per_customer"]
        m["used_memory_delta_per_challenge"] = (
            m["used_memory_delta_per_customer_and_challenge"] - m["used_memory_delta_per_customer"]
        )
        other = loader.keys.for_customer(further[0].customer.customer_id).challenge(further[0].id)
        m["bulk_fields_match_loader"] = sorted(admin.hkeys(keys.challenge(sample_id))) == sorted(
            admin.hkeys(other)
        )
    return out
