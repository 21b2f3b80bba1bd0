"""A server on loopback that answers one request with an error whose body never finishes: the
status line and headers, one byte of a 40-byte body, then nothing until the test is done."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stalled_error_answer(status: bytes = b"503 Service Unavailable") -> Iterator[str]:
    """Yield the server's base URL (``http://127.0.0.1:<port>``)."""
    listener = socket.create_server(("127.0.0.1", 0))
    release = threading.Event()

    def stall() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 40\r\n\r\n{")
            release.wait(10)

    server = threading.Thread(target=stall, daemon=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        release.set()
        server.join(10)
        listener.close()
