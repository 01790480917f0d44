"""/api/v1/schedules: recurring batches (cron with five fields, or a fixed interval)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from sandbox.errors import InputError
from sandbox.schedules import describe as _describe
from sandbox.store import Role, ScheduleRecord, UserRecord
from webapp import current_service
from webapp.access import submission_workspace, visible_ids
from webapp.api import submissions
from webapp.auth import audit, current_user, requires
from webapp.body import json_object
from webapp.errors import ApiError
from webapp.serialize import batch_json

schedules_api = Blueprint("schedules_api", __name__)


Names = tuple[dict[int, str], dict[int, UserRecord]]


def _names() -> Names:
    """Workspace names and users by id: two queries, however many schedules are shown."""
    store = current_service().store
    workspaces = {w.id: w.name for w in store.workspaces.list()}
    return workspaces, {u.id: u for u in store.accounts.list_users()}


def describe(record: ScheduleRecord, names: Names | None = None) -> dict[str, Any]:
    """The schedule with its workspace's and owner's names (for people, not only ids), and
    why it is paused when it was not its owner's choice."""
    workspaces, users = names or _names()
    out = _describe(record)
    owner = users.get(record.user_id)
    out["workspace"] = workspaces.get(record.workspace_id)
    out["owner"] = owner.name if owner else None
    disabled = record.paused and owner is not None and owner.disabled
    out["paused_reason"] = f"its owner {owner.name} is disabled" if disabled and owner else None
    if record.paused and record.template is not None and out["paused_reason"] is None:
        try:
            current_service().schedule_script(record)
        except InputError as e:
            out["paused_reason"] = f"its template {record.template}: {e}"
    return out


@schedules_api.get("/schedules")
@requires(Role.VIEWER)
def list_schedules() -> Response:
    names = _names()
    seen = visible_ids(current_service().store, current_user())
    items = [
        describe(s, names)
        for s in current_service().store.schedules.list()
        if seen is None or s.workspace_id in seen
    ]
    return jsonify({"items": items})


def _schedule_or_404(schedule_id: int) -> ScheduleRecord:
    """A schedule in a workspace the user may not see answers as one that does not exist."""
    store = current_service().store
    record = store.schedules.get(schedule_id)
    seen = visible_ids(store, current_user())
    if seen is not None and record.workspace_id not in seen:
        audit("schedule_refused", target=str(schedule_id))
        raise ApiError(404, "not_found", f"no schedule {schedule_id}")
    return record


def _workspace_field(body: dict[str, Any]) -> None:
    ws = body.get("workspace", "default")
    if isinstance(ws, str):
        submission_workspace(ws)


@schedules_api.post("/schedules")
@requires(Role.OPERATOR)
def create_schedule() -> tuple[Response, int]:
    body, user = json_object(), current_user()
    cap = current_app.config["SCHEDULES_PER_USER"]
    if len(current_service().store.schedules.list(user_id=user.id)) >= cap:
        raise ApiError(409, "too_many", f"a user may have at most {cap} schedules")
    _workspace_field(body)
    record = current_service().create_schedule(user, **body)
    audit("schedule_created", target=str(record.id), detail=describe(record))
    return jsonify(describe(record)), 201


@schedules_api.get("/schedules/<int:schedule_id>")
@requires(Role.VIEWER)
def get_schedule(schedule_id: int) -> Response:
    return jsonify(describe(_schedule_or_404(schedule_id)))


@schedules_api.patch("/schedules/<int:schedule_id>")
@requires(Role.OPERATOR)
def change_schedule(schedule_id: int) -> Response:
    body = json_object()
    _schedule_or_404(schedule_id)
    if "workspace" in body:
        _workspace_field(body)
    record = current_service().update_schedule(current_user(), schedule_id, **body)
    audit("schedule_changed", target=str(schedule_id), detail=body)
    return jsonify(describe(record))


@schedules_api.post("/schedules/<int:schedule_id>/pause")
@requires(Role.OPERATOR)
def pause(schedule_id: int) -> Response:
    _schedule_or_404(schedule_id)
    record = current_service().update_schedule(current_user(), schedule_id, paused=True)
    audit("schedule_paused", target=str(schedule_id))
    return jsonify(describe(record))


@schedules_api.post("/schedules/<int:schedule_id>/resume")
@requires(Role.OPERATOR)
def resume(schedule_id: int) -> Response:
    _schedule_or_404(schedule_id)
    record = current_service().update_schedule(current_user(), schedule_id, paused=False)
    audit("schedule_resumed", target=str(schedule_id))
    return jsonify(describe(record))


@schedules_api.post("/schedules/<int:schedule_id>/run")
@requires(Role.OPERATOR)
def run_now(schedule_id: int) -> tuple[Response, int]:
    """Run it now: 201 with the new batch (source schedule); counts against the caller's
    submission rate like any submission."""
    user = current_user()
    if not submissions.allow(f"user:{user.id}", current_app.config["SUBMIT_RATE"]):
        audit("rate_limited", target=f"/schedules/{schedule_id}/run")
        raise ApiError(429, "rate_limited", "too many submissions; wait a minute and retry")
    record = current_service().run_schedule(user, schedule_id)
    audit("schedule_run_now", target=str(schedule_id), detail={"batch": record.id})
    return jsonify(batch_json(record)), 201


@schedules_api.delete("/schedules/<int:schedule_id>")
@requires(Role.OPERATOR)
def delete_schedule(schedule_id: int) -> Response:
    _schedule_or_404(schedule_id)
    current_service().delete_schedule(current_user(), schedule_id)
    audit("schedule_deleted", target=str(schedule_id))
    return jsonify({"status": "deleted"})
