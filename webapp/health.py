"""/healthz: cheap liveness with the database checked."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> tuple[Response, int]:
    svc = current_app.extensions["bashfleet"]
    try:
        with svc.store.engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as e:
        return jsonify({"status": "unhealthy", "database": str(e)[:200]}), 503
    return jsonify({"status": "ok", "pools": svc.pools()}), 200
