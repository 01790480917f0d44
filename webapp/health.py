"""/healthz: cheap liveness with the database checked."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, make_response
from sqlalchemy import text

from webapp import current_service

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> tuple[Response, int]:
    svc = current_service()
    try:
        with svc.store.engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as e:
        return jsonify({"status": "unhealthy", "database": str(e)[:200]}), 503
    return jsonify({"status": "ok", "pools": svc.pools()}), 200


@health.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition format."""
    svc = current_service()
    response = make_response(svc.metrics.prometheus())
    response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    return response
