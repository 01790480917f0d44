"""Approvals over REST: a workspace's approval settings, approve / reject, the pending list.

    PUT  /api/v1/workspaces/NAME/approval          {"approve": ..., "two_person": ...} (admins)
    GET  /api/v1/workspaces/NAME/approval
    POST /api/v1/batches/ID/commands/CID/approve   (operators, admins)
    POST /api/v1/batches/ID/commands/CID/reject    {"reason": "..."} optional
    GET  /api/v1/approvals                         what awaits approval, oldest first

Every decision is in the audit log (``command_approved``, ``command_rejected``;
``approval_expired`` by the system), and the command keeps who decided and when.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.approvals import APPROVAL_FIELDS
from sandbox.store import Role, WorkspaceRecord
from webapp import current_service
from webapp.auth import audit, current_user, requires
from webapp.body import json_object
from webapp.errors import ApiError
from webapp.serialize import command_json

approvals_api = Blueprint("approvals_api", __name__)
MAX_REASON = 500


def approval_json(ws: WorkspaceRecord) -> dict[str, Any]:
    return {"workspace": ws.name, "approve": ws.approve.value, "two_person": ws.two_person}


@approvals_api.get("/workspaces/<name>/approval")
@requires(Role.VIEWER)
def get_approval(name: str) -> Response:
    ws = current_service().store.workspaces.find(name)
    if ws is None:
        raise ApiError(404, "not_found", f"no workspace {name!r}")
    return jsonify(approval_json(ws))


@approvals_api.put("/workspaces/<name>/approval")
@requires(Role.ADMIN)
def put_approval(name: str) -> Response:
    body = json_object(set(APPROVAL_FIELDS))
    ws = current_service().set_approval(current_user(), name, **body)
    audit("workspace_approval_changed", target=name, detail=approval_json(ws))
    return jsonify(approval_json(ws))


@approvals_api.post("/batches/<batch_id>/commands/<command_id>/approve")
@requires(Role.OPERATOR)
def approve(batch_id: str, command_id: str) -> Response:
    if request.get_data():
        json_object(set())  # no fields; an empty object is fine
    record = current_service().decide(current_user(), batch_id, command_id, approve=True)
    audit("command_approved", target=f"{batch_id}/{command_id}", detail={"index": record.index})
    return jsonify(command_json(record))


@approvals_api.post("/batches/<batch_id>/commands/<command_id>/reject")
@requires(Role.OPERATOR)
def reject(batch_id: str, command_id: str) -> Response:
    body = json_object({"reason"}) if request.get_data() else {}
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise ApiError(400, "invalid_input", f"`reason` is text of at most {MAX_REASON} characters")
    record = current_service().decide(
        current_user(), batch_id, command_id, approve=False, reason=(reason or "").strip() or None
    )
    audit(
        "command_rejected",
        target=f"{batch_id}/{command_id}",
        detail={"index": record.index, "reason": reason},
    )
    return jsonify(command_json(record))


@approvals_api.get("/approvals")
@requires(Role.VIEWER)
def pending() -> Response:
    """What awaits approval; ``may_decide``: whether the caller may approve it."""
    svc, user = current_service(), current_user()
    ttl = svc.config.approval_ttl_s
    items = []
    for c, b, ws in svc.pending_approvals():
        own = b.user_id == user.id
        items.append(
            {
                "batch_id": b.id,
                "command_id": c.id,
                "index": c.index,
                "command": c.command,
                "class": c.cls.value,
                "reasons": list(c.reasons),
                "workspace": ws.name,
                "user": b.user_name,
                "two_person": ws.two_person,
                "created_at": b.created_at.isoformat(),
                "expires_at": (b.created_at + timedelta(seconds=ttl)).isoformat(),
                "may_decide": user.role.allows(Role.OPERATOR) and not (ws.two_person and own),
            }
        )
    return jsonify({"items": items, "total": len(items)})
