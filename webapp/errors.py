"""JSON errors: ``{"error": CODE, "message": TEXT}`` with a 4xx status, never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from sandbox.cluster.wire import BrokerUnavailable
from sandbox.errors import BashfleetError, InputError, InputTooComplex, PolicyError
from sandbox.service import Forbidden, QuotaExceeded
from sandbox.store import Conflict, NotFound
from webapp.judging import JudgesBusy, TooComplex

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify({"error": code, "message": message}), status


def register_errors(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api(e: ApiError) -> tuple[Response, int]:
        return error_response(e.status, e.code, e.message)

    @app.errorhandler(InputError)
    def _input(e: InputError) -> tuple[Response, int]:
        return error_response(400, "invalid_input", str(e))

    @app.errorhandler(Forbidden)
    def _forbidden(e: Forbidden) -> tuple[Response, int]:
        from flask import request

        from webapp.auth import audit

        audit("forbidden", target=request.path, detail={"why": str(e)})
        return error_response(403, "forbidden", str(e))

    @app.errorhandler(NotFound)
    def _not_found(e: NotFound) -> tuple[Response, int]:
        return error_response(404, "not_found", str(e))

    @app.errorhandler(Conflict)
    def _conflict(e: Conflict) -> tuple[Response, int]:
        return error_response(409, "conflict", str(e))

    @app.errorhandler(QuotaExceeded)
    def _quota(e: QuotaExceeded) -> tuple[Response, int]:
        response, status = error_response(429, "quota_exceeded", str(e))
        response.headers["Retry-After"] = "10"
        return response, status

    @app.errorhandler(PolicyError)
    def _policy(e: PolicyError) -> tuple[Response, int]:
        return error_response(409, "not_possible", str(e))

    @app.errorhandler(TooComplex)
    @app.errorhandler(InputTooComplex)  # beyond the judge's limits, wherever it was judged
    def _too_complex(e: BashfleetError) -> tuple[Response, int]:
        return error_response(422, "too_complex", str(e))

    @app.errorhandler(JudgesBusy)
    def _busy(e: JudgesBusy) -> tuple[Response, int]:
        response, status = error_response(503, "busy", str(e))
        response.headers["Retry-After"] = "2"
        return response, status

    @app.errorhandler(BrokerUnavailable)
    def _no_broker(e: BrokerUnavailable) -> tuple[Response, int]:
        response, status = error_response(503, "broker_unavailable", str(e))
        response.headers["Retry-After"] = "5"
        return response, status

    @app.errorhandler(BashfleetError)
    def _bashfleet(e: BashfleetError) -> tuple[Response, int]:
        return error_response(400, "rejected", str(e))

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException) -> tuple[Response, int]:
        code = (e.name or "error").lower().replace(" ", "_")
        response, status = error_response(e.code or 500, code, e.description or e.name)
        for name, value in e.get_headers():
            if name.lower() == "allow":  # 405 must say what is allowed (RFC 9110)
                response.headers[name] = value
        return response, status

    @app.errorhandler(OperationalError)
    def _store(e: OperationalError) -> tuple[Response, int]:
        # the database refused a write: a full disk, a lost PostgreSQL server, a lock timeout
        log.error("the store is unavailable: %s", e.orig)
        return error_response(
            503,
            "storage_unavailable",
            "the server cannot write its database right now (is its disk full?); the request "
            "was not completed; retry later",
        )

    @app.errorhandler(OverflowError)
    def _overflow(e: OverflowError) -> tuple[Response, int]:
        # an id or number too large for the database (SQLite's integers are 64-bit)
        return error_response(400, "invalid_input", "a number in the request is out of range")

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> tuple[Response, int]:
        log.exception("unexpected error")
        return error_response(500, "internal_error", "an internal error occurred; see the log")
