"""A load generator: requests in a loop from a thread while a test kills or restarts the store."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.helpers.api import Api, totp_code, transfer
from tests.helpers.settings import API_KEY


class Traffic:
    """Requests in a loop from a thread; records what the gateway acknowledged."""

    def __init__(self, app: Any, prefix: str = "cust", clock: Any = None) -> None:
        self.api = Api(app.test_client(), API_KEY)
        self.prefix = prefix
        # With the app's clock, every third customer also enrols TOTP and has a challenge
        # verified and consumed: approvals in the traffic too.
        self.clock = clock
        self.stop = threading.Event()
        self.statuses: list[tuple[str, int, str | None]] = []
        self.customers: dict[str, list[str]] = {}  # acknowledged customers and their phones
        # challenge id -> the statuses it may have: the acknowledged one, or either side of a
        # transition whose answer was a 503 (it may have run before the store went away)
        self.challenges: dict[str, set[str]] = {}
        self.errors: list[BaseException] = []

    def note(self, what: str, rv: Any) -> bool:
        body = rv.get_json(silent=True) or {}
        self.statuses.append((what, rv.status_code, body.get("code")))
        return bool(200 <= rv.status_code < 300)

    def run(self) -> None:
        i = 0
        try:
            while not self.stop.is_set() and i < 5000:
                cid, phone = f"{self.prefix}-{i:04d}", f"+8190{10000000 + i}"
                i += 1
                if self.note("put", self.api.put(f"/v1/customers/{cid}", {"phones": [phone]})):
                    self.customers[cid] = [phone]
                else:
                    continue
                if self.clock is not None and i % 3 == 0:
                    self.approve(cid)
                    continue
                rv = self.api.post("/v1/challenges", transfer(cid))
                if not self.note("create", rv):
                    continue
                ch = rv.get_json()["id"]
                self.challenges[ch] = {"pending"}
                if i % 2:
                    cancelled = self.note("cancel", self.api.post(f"/v1/challenges/{ch}/cancel"))
                    self.challenges[ch] = {"cancelled"} if cancelled else {"pending", "cancelled"}
                time.sleep(0.005)
        except BaseException as exc:
            self.errors.append(exc)

    def approve(self, cid: str) -> None:
        """Enrol TOTP, then a challenge verified with a code and consumed; note what was
        acknowledged."""
        rv = self.api.post(f"/v1/customers/{cid}/totp")
        if not self.note("enrol", rv):
            return
        secret = rv.get_json()["secret"]
        if not self.note(
            "confirm",
            self.api.post(f"/v1/customers/{cid}/totp/confirm", {"code": totp_code(secret, self.clock())}),
        ):
            return
        self.clock.advance(30)
        rv = self.api.post("/v1/challenges", transfer(cid, methods=["totp"]))
        if not self.note("create", rv):
            return
        challenge = rv.get_json()
        ch = challenge["id"]
        self.challenges[ch] = {"pending"}
        rv = self.api.post(f"/v1/challenges/{ch}/totp", {"code": totp_code(secret, self.clock())})
        if not self.note("verify", rv):
            self.challenges[ch] = {"pending", "verified"}
            return
        self.challenges[ch] = {"verified"}
        rv = self.api.post(
            f"/v1/challenges/{ch}/consume", {"transaction_digest": challenge["transaction_digest"]}
        )
        self.challenges[ch] = {"consumed"} if self.note("consume", rv) else {"verified", "consumed"}

    def successes(self) -> int:
        return sum(1 for _, status, _ in self.statuses if 200 <= status < 300)

    def check_acknowledged(self, api: Any) -> None:
        """Everything the gateway acknowledged reads back as it was acknowledged."""
        for cid, phones in self.customers.items():
            rv = api.get(f"/v1/customers/{cid}")
            assert rv.status_code == 200 and rv.get_json()["phones"] == phones, cid
        for ch, statuses in self.challenges.items():
            rv = api.get(f"/v1/challenges/{ch}")
            assert rv.status_code == 200 and rv.get_json()["status"] in statuses, ch

    def fail_closed_only(self) -> None:
        """Every answer was a success or 503 store_unavailable: no 500, no other refusal."""
        bad = [
            (w, s, c)
            for w, s, c in self.statuses
            if not (200 <= s < 300 or (s, c) == (503, "store_unavailable"))
        ]
        assert not bad, bad[:5]
