"""``docs/examples/receiver.py`` as a real process on a loopback port, sent deliveries signed by
hand (``tests/helpers/delivery_signing.py``): each event printed once however often it comes,
anything not signed by the gateway's secret, or signed too long ago, refused with 4xx."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.delivery_signing import new_secret, signed_headers
from tests.helpers.polling import wait_until
from tests.helpers.ports import free_ports

ROOT = Path(__file__).resolve().parent.parent
RECEIVER = ROOT / "docs" / "examples" / "receiver.py"
OLD, NEW = new_secret(), new_secret()


def delivery(event_id: str, event_type: str = "challenge.verified") -> bytes:
    event = {"id": event_id, "at": "2026-12-02T03:00:00Z", "type": event_type, "customer_id": "cust-001"}
    payload = {"type": event_type, "timestamp": event["at"], "data": event}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.fixture
def receiver() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    (port,) = free_ports(1)
    env = {**os.environ, "WEBHOOK_SECRET": f"{NEW},{OLD}", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, str(RECEIVER), str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def listening() -> bool:
            assert process.poll() is None, process.communicate()
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True

        wait_until("the example receiver listening", listening)
        yield f"http://127.0.0.1:{port}/", process
    finally:
        process.terminate()
        process.wait(10)


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code


def printed(process: subprocess.Popen[str]) -> tuple[list[dict], str]:
    process.terminate()
    out, err = process.communicate(timeout=10)
    return [json.loads(line) for line in out.splitlines()], err


def test_each_event_is_printed_once_however_often_it_is_delivered(receiver):
    url, process = receiver
    first, second = "ev_" + "a" * 32 + "_1-0", "ev_" + "b" * 32 + "_2-0"
    body = delivery(first)
    assert post(url, body, signed_headers([NEW], first, body)) == 204
    assert post(url, body, signed_headers([NEW], first, body)) == 204  # a retry: 2xx, not printed
    other = delivery(second, "customer.locked")
    assert post(url, other, signed_headers([NEW, OLD], second, other)) == 204
    events, _ = printed(process)
    assert [(e["type"], e["data"]["id"]) for e in events] == [
        ("challenge.verified", first),
        ("customer.locked", second),
    ]


def test_during_a_rotation_either_secret_is_accepted(receiver):
    url, process = receiver
    for n, secret in enumerate((OLD, NEW)):
        event_id = f"ev_{'c' * 32}_{n}-0"
        body = delivery(event_id)
        assert post(url, body, signed_headers([secret], event_id, body)) == 204
    assert len(printed(process)[0]) == 2


def test_what_the_gateway_did_not_sign_is_refused_and_not_printed(receiver):
    url, process = receiver
    event_id = "ev_" + "d" * 32 + "_3-0"
    body = delivery(event_id)
    good = signed_headers([NEW], event_id, body)
    assert post(url, body, signed_headers([new_secret()], event_id, body)) == 400  # another secret
    assert post(url, body.replace(b"verified", b"consumed"), good) == 400  # tampered
    stale = signed_headers([NEW], event_id, body, timestamp=int(time.time()) - 600)
    assert post(url, body, stale) == 400  # a captured delivery played back later
    assert post(url, body, {"webhook-id": event_id}) == 400  # unsigned
    # None of those marked the id as seen: the real delivery is still printed.
    assert post(url, body, good) == 204
    events, err = printed(process)
    assert [e["data"]["id"] for e in events] == [event_id]
    assert err.count("refused: ") == 4
