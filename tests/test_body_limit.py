"""Bodies over 16 KiB are 413 however they arrive: with Content-Length or chunked.

A chunked request has no Content-Length; a server that decodes the chunks (gunicorn does, and
says so with ``wsgi.input_terminated``) hands the application a stream of unknown length. The
gateway reads at most one byte past the limit of it and refuses the request when that byte
exists, so nothing is ever parsed from a body cut at the limit.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from authgw.app import MAX_BODY
from tests.helpers.api import assert_problem, field_errors, register, transfer
from tests.helpers.settings import API_KEY, settings_for_tests
from tests.helpers.stores import every_key, redis_binary
from tests.topology import Gateway, Topology, start_gateway, start_server

FAKE_ONLY = pytest.mark.parametrize("store", ["fake"], indirect=True)


def padded(size: int) -> bytes:
    """A valid challenge body padded with trailing spaces to ``size`` bytes: its first 16 KiB
    are a complete JSON document, so a gateway that cut it would accept it."""
    raw = json.dumps(transfer()).encode()
    return raw + b" " * (size - len(raw))


def with_unknown_field(size: int) -> bytes:
    """A body of exactly ``size`` bytes whose only fault is an unknown field (``memo``)."""
    body = transfer(memo="")
    body["memo"] = "x" * (size - len(json.dumps(body).encode()))
    raw = json.dumps(body).encode()
    assert len(raw) == size
    return raw


# What a server that decoded a chunked body hands over: a stream, no length, and the promise
# that the stream ends where the body does.
CHUNKED = {"wsgi.input_terminated": True, "CONTENT_LENGTH": ""}


def post_stream(api: Any, path: str, raw: bytes, content_type: str = "application/json") -> Any:
    """POST ``raw`` as a stream of unknown length, as a server hands over a chunked body."""
    return api.client.post(
        path,
        input_stream=io.BytesIO(raw),
        headers=api.headers({"Content-Type": content_type, "Transfer-Encoding": "chunked"}),
        environ_overrides=CHUNKED,
    )


@FAKE_ONLY
@pytest.mark.parametrize("size", [MAX_BODY + 1, 37 * 1024, 1024 * 1024])
def test_a_streamed_body_over_16_kib_is_413_and_creates_nothing(api, store, size):
    register(api)
    rv = post_stream(api, "/v1/challenges", padded(size))
    assert_problem(rv, 413, "payload_too_large")
    assert not [k for k in every_key(store) if ":ch:" in k or "ch_" in k]
    events = api.get("/v1/customers/cust-001/events").get_json()["events"]
    assert "challenge.created" not in [e["type"] for e in events]


@FAKE_ONLY
def test_a_chunked_body_with_a_small_content_length_beside_it_is_still_413(api, store):
    """Chunked wins over Content-Length (RFC 9112), so werkzeug ignores the length: the
    body must be counted whatever length a header claims."""
    register(api)
    rv = api.client.post(
        "/v1/challenges",
        input_stream=io.BytesIO(padded(37 * 1024)),
        headers=api.headers({"Content-Type": "application/json", "Transfer-Encoding": "chunked"}),
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": "100"},
    )
    assert_problem(rv, 413, "payload_too_large")
    events = api.get("/v1/customers/cust-001/events").get_json()["events"]
    assert "challenge.created" not in [e["type"] for e in events]


@FAKE_ONLY
def test_a_streamed_body_of_exactly_16_kib_is_read_whole(api):
    register(api)
    rv = post_stream(api, "/v1/challenges", with_unknown_field(MAX_BODY))
    # Judged on its fields (the memo is unknown), not refused for its size.
    assert_problem(rv, 422, "validation_error")
    assert field_errors(rv) == ["memo"]


@FAKE_ONLY
def test_a_streamed_body_under_16_kib_is_accepted(api):
    register(api)
    rv = post_stream(api, "/v1/challenges", padded(MAX_BODY - 1))
    assert rv.status_code == 201, rv.get_data(as_text=True)


@FAKE_ONLY
def test_a_streamed_webhook_form_over_16_kib_is_413(api):
    form = b"CallSid=CA" + b"0" * 32 + b"&From=%2B819012345678&pad=" + b"x" * MAX_BODY
    rv = api.client.post(
        "/webhooks/twilio/voice",
        input_stream=io.BytesIO(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Transfer-Encoding": "chunked",
            "X-Twilio-Signature": "x",
        },
        environ_overrides=CHUNKED,
    )
    assert_problem(rv, 413, "payload_too_large")


@FAKE_ONLY
def test_a_body_over_16_kib_on_a_call_that_reads_none_is_still_413(api):
    rv = post_stream(api, "/v1/customers/cust-001/unlock", b"{}" + b" " * MAX_BODY)
    assert_problem(rv, 413, "payload_too_large")


# -- the served gateway: gunicorn's gevent workers decoding a real chunked request -----------


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Topology, Gateway]]:
    server = start_server(redis_binary("the served gateway's store"))
    env = {f"AUTHGW_{k.upper()}": str(v) for k, v in settings_for_tests().items()}
    env["AUTHGW_REDIS_URL"] = server.url
    gateway = start_gateway(env, workers=1)
    yield server, gateway
    gateway.stop()
    server.stop()


def chunked(method: str, base: str, path: str, raw: bytes, chunk: int = 4096) -> tuple[int, dict[str, Any]]:
    """Send ``raw`` with ``Transfer-Encoding: chunked`` over a plain socket; (status, JSON)."""
    url = urlsplit(base)
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {API_KEY}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    body = b"".join(
        f"{len(raw[i : i + chunk]):x}\r\n".encode() + raw[i : i + chunk] + b"\r\n"
        for i in range(0, len(raw), chunk)
    )
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head + body + b"0\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        header, _, rest = answer.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(fields["content-length"])
        while len(rest) < length:
            rest += sock.recv(65536)
    return int(lines[0].split()[1]), json.loads(rest[:length])


@pytest.mark.real_redis
@pytest.mark.topology
def test_a_real_chunked_request_over_16_kib_is_413_on_the_served_gateway(served):
    _server, gateway = served
    status, body = chunked("PUT", gateway.url, "/v1/customers/cust-001", b'{"phones": ["090-1234-5678"]}')
    assert status == 200, body
    status, body = chunked("POST", gateway.url, "/v1/challenges", padded(37 * 1024))
    assert (status, body["code"]) == (413, "payload_too_large"), body
    status, body = chunked("POST", gateway.url, "/v1/challenges", padded(MAX_BODY + 1))
    assert (status, body["code"]) == (413, "payload_too_large"), body
    status, body = chunked("POST", gateway.url, "/v1/challenges", padded(MAX_BODY - 1))
    assert (status, body["status"]) == (201, "pending"), body
    # Only that last one created anything.
    status, body = chunked("GET", gateway.url, "/v1/customers/cust-001/events", b"")
    assert [e["type"] for e in body["events"]].count("challenge.created") == 1
