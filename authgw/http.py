"""The HTTP edge's shared pieces: reading JSON bodies strictly and writing problem+json."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request

from authgw.errors import ApiError, ValidationFailed, problem

PROBLEM_TYPE = "application/problem+json"


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_body(*, optional: bool = False) -> Any:
    """The request's JSON body; ``{}`` for an empty body when ``optional``.

    JSON is read strictly (no NaN or Infinity) whatever the Content-Type says, so a client
    that forgot the header gets the same answer as one that sent it.
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        if optional:
            return {}
        raise ValidationFailed([{"field": "body", "message": "a JSON object is required"}])
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack (still under 16 KiB).
        raise ValidationFailed(
            [{"field": "body", "message": "is not valid UTF-8 JSON"}], "The request body is not valid JSON"
        ) from None
    if not isinstance(data, dict):
        raise ValidationFailed([{"field": "body", "message": "must be a JSON object"}])
    return data


def as_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    response = Response(text, status=status, mimetype="application/json", headers=headers)
    return response


def problem_response(
    exc: ApiError | None = None,
    *,
    code: str | None = None,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    if exc is not None:
        body = problem(exc.code, exc.detail, exc.errors, **exc.extra)
    else:
        assert code is not None
        body = problem(code, detail)
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(text, status=body["status"], mimetype=PROBLEM_TYPE, headers=headers)
