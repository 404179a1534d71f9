"""The dashboard's JSON answers (compact, see :func:`~lvseg.dashboard.readers.encode`), its
errors as ``{"error": message}``, and the range of its integer parameters."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from lvseg.dashboard.readers import encode

MAX_INTEGER = 2**63 - 1
"""The largest integer parameter (SQLite's largest integer); the smallest is 0."""


def json_response(value: Any, status_code: int = 200) -> Response:
    return Response(encode(value), status_code=status_code, media_type="application/json")


def error_response(status_code: int, message: str) -> Response:
    return json_response({"error": message}, status_code)
