"""Property-based fuzzing of ``/v1`` from its own OpenAPI document, against a live gateway.

Schemathesis reads ``/openapi.json`` from ``authgw serve`` (a real gunicorn, a real
redis-server of the suite's own) and sends generated requests, valid and invalid, to every
operation. For each answer: no 5xx, a status the document lists for that operation, the
content type it names, and a body that fits its schema.

Besides the document's own generators, every webhook and ``/v1`` parameter is sent the
values that look like numbers and are not: Unicode digits (``²``, ``٣``, ``０``, ``𝟙``), signs,
spaces, and huge values (``str.isdigit()`` admits the first; ``int()`` refuses ``²`` and
5,000-digit strings). The webhooks are signed as Twilio signs them. None may answer 5xx, and
every refusal is a problem document.

The run is bounded so CI stays fast: ``AUTHGW_FUZZ_EXAMPLES`` examples per operation (default
8; three times that for each parameter and class of number trap). A bigger run:
``AUTHGW_FUZZ_EXAMPLES=500 .venv/bin/python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis import checks as st_checks
from schemathesis.core.errors import InvalidSchema
from schemathesis.core.result import Err, Ok
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi import checks as oa_checks
from twilio.request_validator import RequestValidator

from authgw.openapi import openapi_document
from tests.helpers.api import TRANSFER_PAYEE
from tests.helpers.settings import API_KEY, CALLBACK_NUMBERS, PUBLIC_URL, TWILIO_TOKEN, settings_for_tests
from tests.helpers.stores import redis_binary
from tests.topology import Gateway, Topology, start_gateway, start_server

pytestmark = [pytest.mark.real_redis, pytest.mark.topology]

EXAMPLES = int(os.environ.get("AUTHGW_FUZZ_EXAMPLES", "8"))
CHECKS = [
    st_checks.not_a_server_error,
    oa_checks.status_code_conformance,
    oa_checks.content_type_conformance,
    oa_checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Topology, Gateway]]:
    server = start_server(redis_binary("the fuzzer's live gateway"))
    env = {f"AUTHGW_{k.upper()}": str(v) for k, v in settings_for_tests().items()}
    env["AUTHGW_REDIS_URL"] = server.url
    gateway = start_gateway(env, workers=1, threads=4)
    yield server, gateway
    gateway.stop()
    server.stop()


def operation(result: Ok[APIOperation] | Err[InvalidSchema]) -> APIOperation:
    """The operation, or the schema's error raised: the document must describe every one."""
    if isinstance(result, Err):
        raise result.err()
    return result.ok()


SCHEMA = schemathesis.openapi.from_dict(openapi_document())
OPERATIONS = [operation(result) for result in SCHEMA.get_all_operations()]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_server_error_and_no_undocumented_answer(
    live: tuple[Topology, Gateway], operation: Any, mode: Any
) -> None:
    _server, gateway = live

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def one(case: Any) -> None:
        case.call_and_validate(
            base_url=gateway.url, checks=CHECKS, timeout=10, headers={"Authorization": f"Bearer {API_KEY}"}
        )

    one()


# -- numbers that are not ASCII numbers, on every parameter ---------------------------------

TRAPS = EXAMPLES * 3
BLANKS = ["", " ", "\t", "\n", "\u3000", "\u00a0"]
# Each class of look-alike numbers, fuzzed on its own so that every parameter meets each.
NUMBER_TRAPS = {
    # ² ¹ ① pass str.isdigit() and make int() raise; ٣ ０ 𝟙 are read by int() as numbers.
    "unicode_digits": st.one_of(
        st.sampled_from(["²", "¹", "³", "①", "٣", "۳", "३", "０", "１２３", "𝟙", "½", "Ⅻ"]),
        st.text(st.characters(categories=("Nd", "No", "Nl")), min_size=1, max_size=8),
        st.builds("{}{}".format, st.integers(0, 99), st.characters(categories=("Nd", "No"))),
    ),
    "signs": st.builds(
        "{}{}".format, st.sampled_from(["+", "-", "＋", "−", "++", "+-"]), st.integers(0, 10**6)
    ),
    "spaces": st.builds(
        "{}{}{}".format, st.sampled_from(BLANKS), st.integers(0, 10**6), st.sampled_from(BLANKS)
    ),
    "huge": st.integers(10**18, 10**80).map(str) | st.integers(19, 4000).map(lambda n: "9" * n),
}
PHONE = "+819012345678"
CREATE = {
    "customer_id": "cust-001",
    "kind": "transfer",
    "amount": 1000,
    "payee": TRANSFER_PAYEE,
    "methods": ["callback"],
}
TRAP_SETTINGS = settings(
    max_examples=TRAPS,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def send(url: str, method: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def assert_sound(answer: tuple[int, str, bytes]) -> None:
    status, content_type, raw = answer
    assert status < 500, raw[:500]
    if status >= 400:
        assert content_type == "application/problem+json", (status, content_type, raw[:200])
        assert json.loads(raw)["status"] == status


def latin1(text: str) -> str:
    """A header value as a client sends arbitrary text: its UTF-8 bytes, read as latin-1 (and
    no line break, which no header can carry)."""
    return text.replace("\n", " ").encode("utf-8").decode("latin-1")


def signed(base: str, path: str, params: dict[str, str]) -> tuple[int, str, bytes]:
    """POST a webhook signed as Twilio signs it: the public URL with its query, and the form."""
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + path, params)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    return send(base + path, "POST", urlencode(params).encode(), headers)


@pytest.fixture(scope="module")
def trap_gateway() -> Iterator[dict[str, str]]:
    """A live gateway in confirm mode without rate limits (so no trap is answered 429 before the
    code under test sees it), a registered customer, a pending challenge and a call bound to it."""
    server = start_server(redis_binary("the fuzzer's live gateway"))
    config = settings_for_tests(
        callback_mode="confirm", rate_limit_client=0, rate_limit_customer=0, rate_limit_caller=0
    )
    env = {f"AUTHGW_{k.upper()}": str(v) for k, v in config.items()}
    env["AUTHGW_REDIS_URL"] = server.url
    gateway = start_gateway(env, workers=1)
    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    base = gateway.url
    assert send(f"{base}/v1/customers/cust-001", "PUT", b'{"phones": ["090-1234-5678"]}', auth)[0] == 200
    created = {"customer_id": "cust-001", "kind": "transfer", "amount": 150000, "payee": TRANSFER_PAYEE}
    status, _, raw = send(f"{base}/v1/challenges", "POST", json.dumps(created).encode(), auth)
    assert status == 201, raw
    sid = "CA" + secrets.token_hex(16)
    answer = signed(
        base, "/webhooks/twilio/voice", {"CallSid": sid, "From": PHONE, "To": CALLBACK_NUMBERS[0]}
    )
    assert answer[0] == 200 and b"<Gather" in answer[2], answer
    yield {"url": base, "sid": sid, "challenge": json.loads(raw)["id"]}
    gateway.stop()
    server.stop()


# Every parameter of every webhook, with a value that passes; the trap replaces one of them.
WEBHOOK_PARAMETERS = [
    ("voice", "CallSid"),
    ("voice", "From"),
    ("voice", "To"),
    ("voice", "StirVerstat"),
    ("confirm", "n"),
    ("confirm", "CallSid"),
    ("confirm", "Digits"),
    ("status", "CallSid"),
    ("status", "CallStatus"),
    ("status", "CallDuration"),
    ("status", "From"),
    ("status", "To"),
]


@pytest.mark.parametrize("trap", NUMBER_TRAPS)
@pytest.mark.parametrize("hook, name", WEBHOOK_PARAMETERS)
def test_no_number_trap_in_a_webhook_parameter_is_a_server_error(trap_gateway, hook, name, trap):
    base, sid = trap_gateway["url"], trap_gateway["sid"]

    @given(value=NUMBER_TRAPS[trap])
    @TRAP_SETTINGS
    def one(value):
        params = {
            "voice": {
                "CallSid": sid,
                "From": PHONE,
                "To": CALLBACK_NUMBERS[0],
                "StirVerstat": "TN-Validation-Passed-A",
            },
            "confirm": {"CallSid": sid, "Digits": "2", "n": "1"},
            "status": {
                "CallSid": sid,
                "CallStatus": "completed",
                "CallDuration": "42",
                "From": PHONE,
                "To": CALLBACK_NUMBERS[0],
            },
        }[hook]
        params[name] = value[:1000] if name == "n" else value  # a request line stays under 4 KiB
        path = f"/webhooks/twilio/{hook}"
        if hook == "confirm":
            path += f"?n={quote(params.pop('n'))}"
        assert_sound(signed(base, path, params))

    one()


V1_PARAMETERS = [
    "limit",
    "challenge_id",
    "customer_id",
    "amount",
    "ttl_seconds",
    "bank_code",
    "branch_code",
    "account_number",
    "totp_code",
    "challenge_code",
    "transaction_digest",
    "phone",
    "region",
    "Idempotency-Key",
]


@pytest.mark.parametrize("trap", NUMBER_TRAPS)
@pytest.mark.parametrize("target", V1_PARAMETERS)
def test_no_number_trap_in_a_v1_parameter_is_a_server_error(trap_gateway, target, trap):
    base, challenge = trap_gateway["url"], trap_gateway["challenge"]
    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

    def v1(method: str, path: str, body: Any = None, **headers: str) -> None:
        raw = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        assert_sound(send(base + path, method, raw, {**auth, **headers}))

    @given(value=NUMBER_TRAPS[trap], as_json_number=st.booleans())
    @TRAP_SETTINGS
    def one(value, as_json_number):
        short = quote(value[:1000], safe="")
        # In a JSON body a trap goes as a string, or (huge ones) as a JSON number too.
        field: Any = int(value) if as_json_number and value.isascii() and value.isdigit() else value
        if target == "limit":
            v1("GET", f"/v1/customers/cust-001/events?limit={short}")
        elif target == "challenge_id":
            v1("GET", f"/v1/challenges/{short}")
            v1("POST", f"/v1/challenges/{short}/totp", {"code": "123456"})
        elif target == "customer_id":
            v1("GET", f"/v1/customers/{short}")
            v1("GET", f"/v1/customers/{short}/events?limit=5")
        elif target in ("amount", "ttl_seconds"):
            v1("POST", "/v1/challenges", {**CREATE, target: field})
        elif target in ("bank_code", "branch_code", "account_number"):
            v1("POST", "/v1/challenges", {**CREATE, "payee": {**TRANSFER_PAYEE, target: field}})
        elif target == "totp_code":
            v1("POST", "/v1/customers/cust-001/totp/confirm", {"code": field})
        elif target == "challenge_code":
            v1("POST", f"/v1/challenges/{challenge}/totp", {"code": field})
        elif target == "transaction_digest":
            v1("POST", f"/v1/challenges/{challenge}/consume", {"transaction_digest": field})
        elif target in ("phone", "region"):
            customer = {"phones": ["090-1234-5678"], "region": "JP"}
            customer[target if target == "region" else "phones"] = field if target == "region" else [field]
            v1("PUT", "/v1/customers/cust-trap", customer)
        else:
            v1("POST", "/v1/challenges", CREATE, **{"Idempotency-Key": latin1(value[:200])})

    one()
