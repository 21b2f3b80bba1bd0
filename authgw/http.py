"""The HTTP edge's shared pieces: reading JSON bodies strictly and writing problem+json."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Response, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_content_length

from authgw.errors import ApiError, ValidationFailed, problem

PROBLEM_TYPE = "application/problem+json"
# A number in a query or a form: ASCII digits only (``str.isdigit()`` also admits ``²``,
# which ``int()`` refuses, and ``٣`` or ``０``, which it reads), no sign, no space, and short
# enough that ``int()`` never meets Python's digit limit.
WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


class BodyLimit:
    """WSGI middleware: a body of unknown length (chunked) is read here, whole or refused.

    Werkzeug stops a stream of unknown length at the limit and hands over what it read, so a
    chunked body over the limit would be judged on its first 16 KiB. Here at most one byte
    past ``limit`` is read; a body that has it gets the same 413 as one whose Content-Length
    says it is too large, and a body within the limit is passed on with its length known.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # A body werkzeug has no length for: none was sent, or it is chunked (which overrides
        # any Content-Length). Only a server that terminates the stream itself (it decoded
        # the chunks) may be read so; from any other, werkzeug reads nothing: safe already.
        if get_content_length(environ) is None and environ.get("wsgi.input_terminated"):
            stream = environ["wsgi.input"]
            data = b""
            while len(data) <= self.limit:
                part = stream.read(self.limit + 1 - len(data))
                if not part:
                    break
                data += part
            # Over the limit: a declared length past it, and nothing left to read; werkzeug
            # refuses the request with 413 before anything is parsed (see ``refuse_large``).
            environ["wsgi.input"] = io.BytesIO(b"" if len(data) > self.limit else data)
            environ["CONTENT_LENGTH"] = str(len(data))
            # The chunks are decoded and counted: werkzeug must go by the length now.
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.app(environ, start_response)


def refuse_large() -> None:
    """``before_request``: a body over the limit is 413 on every call, whether or not the
    call reads a body (the same answer for a Content-Length and a chunked body)."""
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()


def whole_number(raw: str | None, low: int, high: int) -> int | None:
    """``raw`` as an integer from ``low`` to ``high`` if it is 1-18 ASCII digits; else None."""
    if raw is None or not WHOLE_NUMBER.fullmatch(raw):
        return None
    value = int(raw)
    return value if low <= value <= high else None


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
        if code is None:
            raise TypeError("problem_response needs an ApiError or a code")
        body = problem(code, detail)
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(text, status=body["status"], mimetype=PROBLEM_TYPE, headers=headers)
