"""Browser sessions: log in and out (JSON), with rate limits and audit."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, session

from sandbox.store import Role, UserRecord
from sandbox.store.records import utcnow
from webapp import current_service
from webapp.auth import RateLimiter, audit, check_csrf, current_user, requires, start_session
from webapp.body import json_body, json_object
from webapp.errors import ApiError

sessions = Blueprint("sessions", __name__)
_logins = RateLimiter()
LOGINS_PER_MINUTE = 10


def _me(user: UserRecord, csrf: Any) -> dict[str, Any]:
    return {"id": user.id, "user": user.name, "role": user.role.value, "csrf_token": csrf}


@sessions.post("/session")
def login() -> tuple[Response, int]:
    address = request.remote_addr or "?"
    if not _logins.allow(f"addr:{address}", current_app.config["LOGIN_RATE"]):
        audit("rate_limited", target="/session")
        raise ApiError(429, "rate_limited", "too many login attempts; wait a minute")
    body: Any = json_body()
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("name"), str)
        or not isinstance(body.get("password"), str)
    ):
        raise ApiError(400, "invalid_input", 'send {"name": ..., "password": ...}')
    svc = current_service()
    user = svc.store.accounts.authenticate(body["name"][:64], body["password"][:1024])
    if user is None:
        audit("login_failed", target=body["name"][:64])
        raise ApiError(401, "unauthorized", "wrong name or password")
    csrf = start_session(user)
    g.user = user
    audit("login", target=user.name)
    return jsonify(_me(user, csrf)), 200


@sessions.get("/session")
@requires(Role.VIEWER)
def whoami() -> Response:
    user = current_user()
    return jsonify(_me(user, session.get("csrf")))


@sessions.post("/session/password")
@requires(Role.VIEWER)
def change_password() -> Response:
    """Change one's own password: the old one is needed. Other sessions of the user end;
    this one goes on with a new cookie (and CSRF token)."""
    from webapp.admin import check_new_password

    address = request.remote_addr or "?"
    if not _logins.allow(f"addr:{address}", current_app.config["LOGIN_RATE"]):
        raise ApiError(429, "rate_limited", "too many attempts; wait a minute")
    body = json_object({"old_password", "new_password"})
    old, new = body.get("old_password"), body.get("new_password")
    if not isinstance(old, str) or not isinstance(new, str):
        raise ApiError(400, "invalid_input", 'send {"old_password": ..., "new_password": ...}')
    new = check_new_password(new)
    user = current_user()
    accounts = current_service().store.accounts
    if accounts.authenticate(user.name, old[:1024]) is None:
        audit("password_change_refused", target=user.name)
        raise ApiError(403, "forbidden", "the old password is wrong")
    accounts.set_password(user.id, new)
    audit("password_changed", target=user.name)
    kept = session.get("nonce") if session.get("user_id") is not None else None
    csrf = start_session(user) if kept is not None else None
    hub = current_app.extensions.get("bashfleet_live")
    if hub is not None:
        # this session's live sockets follow it to its new cookie; the others are cut now
        hub.password_changed(user.id, kept, session.get("nonce"), session.get("epoch"))
    return jsonify({"status": "changed", "csrf_token": csrf})


@sessions.delete("/session")
def logout() -> Response:
    if session.get("user_id") is not None:
        check_csrf()
        audit("logout", target=str(session.get("user_id")))
        nonce = session.get("nonce")
        if isinstance(nonce, str):
            lifetime = current_app.permanent_session_lifetime
            current_service().store.accounts.end_session(nonce, utcnow() + lifetime)
            end_streams = current_app.extensions.get("bashfleet_end_session")
            if end_streams is not None:
                end_streams(nonce)  # cut this session's live streams at once
    session.clear()
    return jsonify({"status": "logged out"})
