"""Reading a JSON request body: an object, no nulls, only known fields."""

from __future__ import annotations

from typing import Any

from flask import request

from webapp.errors import ApiError


def json_object(allowed: set[str] | None = None) -> dict[str, Any]:
    body = request.get_json(silent=True, force=True)
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
