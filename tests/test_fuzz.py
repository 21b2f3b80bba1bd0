"""Property-based fuzzing of ``/v1`` from its own OpenAPI document, against a live gateway.

Schemathesis reads ``/openapi.json`` from ``authgw serve`` (a real gunicorn, a real
redis-server of the suite's own) and sends generated requests, valid and invalid, to every
operation. For each answer: no 5xx, a status the document lists for that operation, the
content type it names, and a body that fits its schema.

The run is bounded so CI stays fast: ``AUTHGW_FUZZ_EXAMPLES`` examples per operation (default
8). A bigger run: ``AUTHGW_FUZZ_EXAMPLES=500 .venv/bin/python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis import checks as st_checks
from schemathesis.specs.openapi import checks as oa_checks

from authgw.openapi import openapi_document
from tests.conftest import API_KEY, redis_binary, settings_for_tests
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


SCHEMA = schemathesis.openapi.from_dict(openapi_document())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
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
