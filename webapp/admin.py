"""Accounts over the API: users and tokens (admins), own tokens (everyone), audit log."""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from sandbox.store import AuditLog, Role, TokenRecord, UserRecord
from webapp import current_service
from webapp.auth import audit, current_user, requires
from webapp.body import json_object
from webapp.errors import ApiError

admin = Blueprint("admin", __name__)


def _user_json(u: UserRecord) -> dict[str, Any]:
    return {
        "id": u.id,
        "name": u.name,
        "role": u.role.value,
        "disabled": u.disabled,
        "created_at": u.created_at.isoformat(),
    }


def _token_json(t: TokenRecord) -> dict[str, Any]:
    return {
        "id": t.id,
        "user_id": t.user_id,
        "name": t.name,
        "prefix": t.prefix,
        "created_at": t.created_at.isoformat(),
        "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
    }


@admin.get("/users")
@requires(Role.ADMIN)
def list_users() -> Response:
    return jsonify(
        {"items": [_user_json(u) for u in current_service().store.accounts.list_users()]}
    )


@admin.post("/users")
@requires(Role.ADMIN)
def add_user() -> tuple[Response, int]:
    body = json_object()
    name, role = body.get("name"), body.get("role", "viewer")
    if not isinstance(name, str) or role not in [r.value for r in Role]:
        raise ApiError(400, "invalid_input", '{"name": "...", "role": "viewer|operator|admin"}')
    password = body.get("password")
    generated = password is None
    if generated:
        password = secrets.token_urlsafe(15)
    password = check_new_password(password)
    accounts = current_service().store.accounts
    if accounts.find_user(name) is not None:
        raise ApiError(409, "conflict", f"user {name!r} exists already")
    user = accounts.create_user(name, password, Role(role))
    audit("user_created", target=user.name, detail={"role": user.role.value})
    out = _user_json(user)
    if generated:
        out["password"] = password  # shown once
    return jsonify(out), 201


@admin.patch("/users/<int:user_id>")
@requires(Role.ADMIN)
def change_user(user_id: int) -> Response:
    body = json_object()
    accounts = current_service().store.accounts
    user = accounts.get_user(user_id)
    if "role" in body:
        if body["role"] not in [r.value for r in Role]:
            raise ApiError(400, "invalid_input", "role is viewer, operator or admin")
        accounts.set_role(user_id, Role(body["role"]))
    if "disabled" in body:
        if not isinstance(body["disabled"], bool):
            raise ApiError(400, "invalid_input", "disabled is true or false")
        if user_id == current_user().id and body["disabled"]:
            raise ApiError(409, "conflict", "you cannot disable yourself")
        accounts.set_disabled(user_id, body["disabled"])
    audit(
        "user_changed",
        target=user.name,
        detail={k: body[k] for k in ("role", "disabled") if k in body},
    )
    changed = accounts.get_user(user_id)
    if changed.disabled and not user.disabled:
        paused = _pause_schedules(user_id)
        if paused:
            audit("schedules_paused", target=user.name, detail={"ids": paused})
    if changed.disabled or changed.role is not user.role:
        _live_cut(user_id, f"unauthorized: the account {user.name} was changed by an admin")
    return jsonify(_user_json(changed))


def _pause_schedules(user_id: int) -> list[int]:
    """A disabled user's schedules stop (they say why: see the schedules API)."""
    svc, paused = current_service(), []
    for schedule in svc.store.schedules.list(user_id=user_id):
        if not schedule.paused:
            svc.update_schedule(current_user(), schedule.id, paused=True)
            paused.append(schedule.id)
    return paused


def _live_cut(user_id: int | None, reason: str) -> None:
    """Cut live streams at once: those of ``user_id``, or (None) every socket whose
    credentials no longer hold."""
    hub = current_app.extensions.get("bashfleet_live")
    if hub is None:
        return
    if user_id is None:
        hub.recheck()
    else:
        hub.cut_user(user_id, reason)


@admin.post("/users/<int:user_id>/password")
@requires(Role.ADMIN)
def reset_password(user_id: int) -> Response:
    """An admin sets (or has generated) a new password; the user's sessions end."""
    body = json_object({"password"})
    accounts = current_service().store.accounts
    user = accounts.get_user(user_id)
    password = body.get("password")
    generated = password is None
    if generated:
        password = secrets.token_urlsafe(15)
    accounts.set_password(user_id, check_new_password(password))
    audit("password_reset", target=user.name)
    _live_cut(user_id, "unauthorized: the password was reset")
    out: dict[str, Any] = {"status": "reset", "user": user.name}
    if generated:
        out["password"] = password  # shown once
    return jsonify(out)


def check_new_password(password: Any) -> str:
    if not isinstance(password, str) or not 8 <= len(password) <= 1024:
        raise ApiError(400, "invalid_input", "the password must have 8 to 1024 characters")
    return password


@admin.get("/tokens")
@requires(Role.VIEWER)
def list_tokens() -> Response:
    user = current_user()
    owner = None if user.role is Role.ADMIN and request.args.get("all") else user.id
    tokens = current_service().store.accounts.list_tokens(owner)
    return jsonify({"items": [_token_json(t) for t in tokens]})


@admin.post("/tokens")
@requires(Role.VIEWER)
def create_token() -> tuple[Response, int]:
    body = json_object()
    user = current_user()
    target = user
    wanted = body.get("user_id", user.id)
    if isinstance(wanted, bool) or not isinstance(wanted, int):
        raise ApiError(400, "invalid_input", "user_id is a whole number")
    if wanted != user.id:
        if user.role is not Role.ADMIN:
            raise ApiError(403, "forbidden", "only admins create tokens for other users")
        target = current_service().store.accounts.get_user(wanted)
    name = body.get("name", "api")
    if not isinstance(name, str):
        raise ApiError(400, "invalid_input", "name is a string")
    new = current_service().store.accounts.create_token(target.id, name)
    audit("token_created", target=new.token.prefix, detail={"for": target.name})
    return jsonify({**_token_json(new.token), "token": new.secret}), 201


@admin.delete("/tokens/<int:token_id>")
@requires(Role.VIEWER)
def revoke_token(token_id: int) -> Response:
    user = current_user()
    owner = None if user.role is Role.ADMIN else user.id
    if not current_service().store.accounts.revoke_token(token_id, owner):
        raise ApiError(404, "not_found", f"no token {token_id} of yours")
    audit("token_revoked", target=str(token_id))
    _live_cut(None, "")  # the sockets opened with it end now
    return jsonify({"status": "revoked"})


@admin.get("/audit")
@requires(Role.ADMIN)
def audit_log() -> Response:
    limit = request.args.get("limit", "100")  # checked for CSV too, though all of it goes
    if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= 500:
        raise ApiError(400, "invalid_input", "limit is 1 to 500")
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ApiError(400, "invalid_input", "format is json or csv")
    if fmt == "csv":
        audit("audit_exported", target="audit", detail={"action": request.args.get("action")})
        return Response(
            _audit_csv(current_service().store.audit, request.args.get("action") or None),
            mimetype="text/csv",
            headers={
                "Content-Disposition": 'attachment; filename="audit.csv"',
                "X-Content-Type-Options": "nosniff",
            },
        )
    page = current_service().store.audit.list(
        action=request.args.get("action") or None,
        limit=int(limit),
        cursor=request.args.get("cursor"),
    )
    return jsonify(
        {
            "items": [
                {
                    "id": e.id,
                    "at": e.at.isoformat(),
                    "actor": e.actor,
                    "address": e.address,
                    "action": e.action,
                    "target": e.target,
                    "detail": dict(e.detail),
                }
                for e in page.items
            ],
            "total": page.total,
            "next_cursor": page.next_cursor,
        }
    )


CSV_COLUMNS = ["id", "at", "actor", "user_id", "address", "action", "target", "detail"]


def _cell(value: Any) -> str:
    """A spreadsheet must not read a value as a formula (=, +, -, @ first)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _audit_csv(log: AuditLog, action: str | None) -> Iterator[str]:
    """The whole log, newest first, a page at a time (no more than a page in memory).
    Runs after the view has returned: no app context here."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    cursor = None
    while True:
        page = log.list(action=action, limit=500, cursor=cursor)
        for e in page.items:
            writer.writerow(
                [
                    _cell(v)
                    for v in (
                        e.id,
                        e.at.isoformat(),
                        e.actor,
                        e.user_id,
                        e.address,
                        e.action,
                        e.target,
                        json.dumps(dict(e.detail), ensure_ascii=False, sort_keys=True),
                    )
                ]
            )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if not page.next_cursor:
            return
        cursor = page.next_cursor


@admin.delete("/audit")
@requires(Role.ADMIN)
def prune_audit() -> Response:
    """Delete audit rows older than ``before`` (an ISO date or time, UTC if no zone)."""
    raw = request.args.get("before", "")
    try:
        before = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(
            400, "invalid_input", "`before` is an ISO date or time, e.g. 2026-01-31"
        ) from None
    if before.tzinfo is None:
        before = before.replace(tzinfo=UTC)
    if before > datetime.now(UTC):
        raise ApiError(400, "invalid_input", "`before` must be in the past")
    user = current_user()
    deleted = current_service().store.audit.prune(before, actor=user.name)
    audit("audit_pruned", target="audit", detail={"before": before.isoformat(), "deleted": deleted})
    return jsonify({"deleted": deleted, "before": before.isoformat()})
