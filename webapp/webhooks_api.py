"""/api/v1/webhooks: a user's webhooks (see sandbox/webhooks.py for events and delivery).

GET    /webhooks                     yours (admins: everyone's)
POST   /webhooks                     {"url", "events"?, "workspace"?, "active"?} -> 201,
                                     with "secret" (shown this once)
GET    /webhooks/ID                  PATCH /webhooks/ID     DELETE /webhooks/ID
GET    /webhooks/ID/deliveries       the delivery log, newest first
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.store import Role, UserRecord
from sandbox.store.webhooks import WebhookRecord
from sandbox.webhooks import EVENTS, check_events, check_url, new_secret
from webapp import current_service
from webapp.auth import audit, current_user, requires
from webapp.body import json_object
from webapp.errors import ApiError

webhooks_api = Blueprint("webhooks_api", __name__)
FIELDS = {"url", "events", "workspace", "active"}
PER_USER = 20


def webhook_json(w: WebhookRecord, *, secret: bool = False) -> dict[str, Any]:
    svc = current_service()
    ws = svc.store.workspaces.get(w.workspace_id).name if w.workspace_id else None
    out: dict[str, Any] = {
        "id": w.id,
        "user_id": w.user_id,
        "url": w.url,
        "events": list(w.events),
        "workspace": ws,
        "active": w.active,
        "created_at": w.created_at.isoformat(),
    }
    if secret:
        out["secret"] = w.secret
    return out


def _values(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    private_ok = current_service().hooks.private_ok
    values: dict[str, Any] = {}
    if creating or "url" in body:
        values["url"] = check_url(body.get("url"), private_ok=private_ok)
    if "events" in body:
        values["events"] = check_events(body["events"])
    elif creating:
        values["events"] = EVENTS
    if "workspace" in body:
        name = body["workspace"]
        if not isinstance(name, str):
            raise ApiError(400, "invalid_input", "`workspace` is a workspace name")
        ws = current_service().store.workspaces.find(name)
        if ws is None:
            raise ApiError(404, "not_found", f"no workspace {name!r}")
        values["workspace_id"] = ws.id
    if "active" in body:
        if not isinstance(body["active"], bool):
            raise ApiError(400, "invalid_input", "`active` is true or false")
        values["active"] = body["active"]
    return values


def _own(webhook_id: int, user: UserRecord) -> WebhookRecord:
    """The webhook, if it is the user's (or the user is an admin); else 404, not 403: one
    user's webhook URLs are none of another's business."""
    w = current_service().store.webhooks.get(webhook_id)
    if w.user_id != user.id and user.role is not Role.ADMIN:
        raise ApiError(404, "not_found", f"no webhook {webhook_id}")
    return w


@webhooks_api.get("/webhooks")
@requires(Role.OPERATOR)
def list_webhooks() -> Response:
    user = current_user()
    mine = None if user.role is Role.ADMIN else user.id
    items = [webhook_json(w) for w in current_service().store.webhooks.list(mine)]
    return jsonify({"items": items})


@webhooks_api.post("/webhooks")
@requires(Role.OPERATOR)
def create_webhook() -> tuple[Response, int]:
    user, body = current_user(), json_object(FIELDS)
    values = _values(body, creating=True)
    store = current_service().store
    if len(store.webhooks.list(user.id)) >= PER_USER:
        raise ApiError(409, "too_many", f"a user may have at most {PER_USER} webhooks")
    w = store.webhooks.create(user_id=user.id, secret=new_secret(), **values)
    audit("webhook_created", target=str(w.id), detail=webhook_json(w))
    return jsonify(webhook_json(w, secret=True)), 201


@webhooks_api.get("/webhooks/<int:webhook_id>")
@requires(Role.OPERATOR)
def get_webhook(webhook_id: int) -> Response:
    return jsonify(webhook_json(_own(webhook_id, current_user())))


@webhooks_api.patch("/webhooks/<int:webhook_id>")
@requires(Role.OPERATOR)
def change_webhook(webhook_id: int) -> Response:
    _own(webhook_id, current_user())
    values = _values(json_object(FIELDS), creating=False)
    w = current_service().store.webhooks.update(webhook_id, **values)
    audit("webhook_changed", target=str(webhook_id), detail=webhook_json(w))
    return jsonify(webhook_json(w))


@webhooks_api.delete("/webhooks/<int:webhook_id>")
@requires(Role.OPERATOR)
def delete_webhook(webhook_id: int) -> Response:
    _own(webhook_id, current_user())
    current_service().store.webhooks.delete(webhook_id)
    audit("webhook_deleted", target=str(webhook_id))
    return jsonify({"status": "deleted"})


@webhooks_api.get("/webhooks/<int:webhook_id>/deliveries")
@requires(Role.OPERATOR)
def deliveries(webhook_id: int) -> Response:
    _own(webhook_id, current_user())
    raw = request.args.get("limit", "100")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 500:
        raise ApiError(400, "invalid_input", "`limit` must be a whole number from 1 to 500")
    rows = current_service().store.webhooks.deliveries(webhook_id, int(raw))
    return jsonify(
        {
            "items": [
                {
                    "id": d.id,
                    "event": d.event,
                    "delivery": d.delivery,
                    "attempt": d.attempt,
                    "status_code": d.status_code,
                    "error": d.error,
                    "at": d.at.isoformat(),
                }
                for d in rows
            ]
        }
    )
