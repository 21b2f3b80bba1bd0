"""What every operation of the domain works with: settings, store, clock, TOTP, secrets."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from authgw.challenges.totp import TotpPolicy
from authgw.secretbox import SecretBox
from authgw.settings import Settings
from authgw.store import Store, StoreClock


def rfc3339(ms: int) -> str:
    """UTC, millisecond precision: ``2026-11-22T13:47:51.123Z``."""
    # Whole seconds and milliseconds apart: ``ms / 1000`` as a float loses the last
    # millisecond far from 1970 (2603-10-11T11:34:21.001Z came out as .000), and the scripts
    # date events with exact integer arithmetic, so both must agree.
    seconds, millis = divmod(ms, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


@dataclass(frozen=True)
class Now:
    ms: int

    @property
    def seconds(self) -> float:
        return self.ms / 1000

    @property
    def iso(self) -> str:
        return rfc3339(self.ms)


def pause(seconds: float) -> None:
    """Wait ``seconds``. Looked up at each call, so that under gevent workers (which patch the
    standard library at start-up) it is gevent's sleep: a waiting request holds no thread."""
    time.sleep(seconds)


@dataclass
class Domain:
    settings: Settings
    store: Store
    clock: Callable[[], float]  # the host's clock
    box: SecretBox
    totp: TotpPolicy
    store_clock: StoreClock
    sleep: Callable[[float], None] = pause  # tests move their clock instead

    @classmethod
    def build(
        cls,
        settings: Settings,
        store: Store,
        clock: Callable[[], float],
        sleep: Callable[[float], None] | None = None,
    ) -> Domain:
        return cls(
            settings=settings,
            store=store,
            clock=clock,
            box=SecretBox(settings.secret_keys),
            totp=TotpPolicy(
                settings.totp_issuer, settings.totp_digits, settings.totp_period, settings.totp_algorithm
            ),
            store_clock=StoreClock(store, clock),
            sleep=sleep or pause,
        )

    def now(self) -> Now:
        """Now on the store's clock, as this process estimates it (``StoreClock``). The scripts
        replace it with their own ``TIME``; it dates only what Python writes itself."""
        return Now(self.store_clock.now_ms())

    @property
    def retention_ms(self) -> int:
        return self.settings.record_retention_seconds * 1000

    @property
    def maxlen(self) -> int:
        """The events argument every script passes to ``add_event``: the events retention in ms.

        (Named for the count cap it once was; events are now kept by age, see ``_lib.lua``.)
        """
        return self.settings.events_retention_seconds * 1000
