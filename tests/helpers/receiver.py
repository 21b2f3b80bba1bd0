"""A real HTTP receiver on loopback for webhook deliveries, and a signature check that does not
use ``standardwebhooks`` (a few lines of hmac, from the Standard Webhooks specification)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    path: str
    at: float = field(default_factory=time.monotonic)  # when it arrived (monotonic)

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


# What the receiver answers: a status, optional headers, and seconds to wait before answering.
Answer = tuple[int, dict[str, str], float]


@dataclass
class Receiver:
    """Records every request; ``answer`` decides each reply (200 by default)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    answer: Callable[[Received], Answer] = lambda _r: (200, {}, 0.0)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def got(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def ids(self) -> list[str]:
        return [r.id for r in self.got()]

    def types(self) -> list[str]:
        return [r.event["type"] for r in self.got()]


@contextmanager
def receiver(port: int = 0) -> Iterator[Receiver]:
    """A threading HTTP server on 127.0.0.1 (``port`` 0: any free one) until the block ends."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            got = Received(
                {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length), self.path
            )
            with state.lock:
                state.received.append(got)
            status, headers, delay = state.answer(got)
            if delay:
                time.sleep(delay)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    ThreadingHTTPServer.request_queue_size = 128  # the default 5 refuses a deliverer's bursts
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def signed_by(received: Received, secret: str) -> bool:
    """Whether one of the delivery's signatures is the HMAC-SHA256 of ``id.timestamp.body``
    under ``secret`` (``whsec_`` + base64 key), computed here without ``standardwebhooks``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = (
        f"{received.headers['webhook-id']}.{received.headers['webhook-timestamp']}.".encode() + received.body
    )
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [
        s.split(",", 1)[1] for s in received.headers["webhook-signature"].split(" ") if s.startswith("v1,")
    ]
    return any(hmac.compare_digest(expected, one) for one in offered)
