"""``wait_until``: the suite's one polling helper."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis


def wait_until(what: str, check: Callable[[], object], seconds: float = 30.0) -> None:
    """Poll ``check`` until it is true: the suite's one polling helper. A connection refused or
    reset while polling (a worker not yet bound to its socket, a server still starting) counts
    as "not yet", not as a failure; the last such error is named if time runs out."""
    deadline = time.monotonic() + seconds
    last_error: Exception | None = None
    while True:
        try:
            if check():
                return
        except (OSError, redis.exceptions.RedisError) as exc:  # urllib's URLError is an OSError
            last_error = exc
        if time.monotonic() > deadline:
            because = f" (last: {type(last_error).__name__}: {last_error})" if last_error else ""
            raise AssertionError(f"{what} did not happen within {seconds} s{because}")
        time.sleep(0.05)
