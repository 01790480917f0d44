"""Reading a JSON request body: an object, no nulls, only known fields.

Stricter than JSON itself where Python would be hurt later: no ``NaN`` or
``Infinity``, no number that does not fit a double or a 64-bit integer (``1e999``
becomes infinity, ``10**5000`` cannot even be printed), no lone UTF-16 surrogate in a
string (it cannot be stored as UTF-8), no nesting deeper than ``MAX_DEPTH``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask import request

from webapp.errors import ApiError

MAX_DEPTH = 64
LARGEST = 1 << 53  # integers and floats beyond this are refused (JSON's safe range)


class _Refused(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a number here")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or abs(value) > LARGEST:
        raise _Refused(f"the number {text[:30]} is out of range")
    return value


def _int(text: str) -> int:
    if len(text) > 17 or abs(int(text)) > LARGEST:
        raise _Refused(f"the number {text[:30]} is out of range")
    return int(text)


def json_body() -> Any:
    """The request's JSON, checked (400 with what is wrong otherwise)."""
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except _Refused as e:
        raise ApiError(400, "invalid_input", str(e)) from None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ApiError(400, "malformed_json", "the request body is not valid JSON") from None
    _check(body, 0)
    return body


def _check(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ApiError(400, "invalid_input", f"the JSON nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(
                400, "invalid_input", "a string holds a lone UTF-16 surrogate (not Unicode text)"
            ) from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check(k, depth + 1)
            _check(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check(v, depth + 1)


def json_object(allowed: set[str] | None = None) -> dict[str, Any]:
    body = json_body() if request.content_length != 0 else None
    if body is None:
        raise ApiError(400, "malformed_json", "the request body must be a JSON object")
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_input", "the request body must be a JSON object")
    nulls = sorted(k for k, v in body.items() if v is None)
    if nulls:
        raise ApiError(
            400, "invalid_input", f"{', '.join(nulls)}: null is not allowed; leave it out"
        )
    if allowed is not None:
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ApiError(
                400,
                "invalid_input",
                f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
            )
    return body
