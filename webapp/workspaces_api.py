"""/api/v1/workspaces (settings), /api/v1/teams and /api/v1/images.

A PUT of settings is checked whole before anything is stored, and stored in one
transaction: a rejected change changes nothing. Secret values go in and never come out
(a GET shows their names); the audit log records which secrets changed, not their values.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Blueprint, Response, jsonify

from sandbox.allowed_images import allowed_images, local_image
from sandbox.approvals import check_approval_settings
from sandbox.errors import InputError
from sandbox.store import Role, TeamRecord, WorkspaceRecord
from sandbox.store.workspaces import check_workspace_name
from sandbox.workspace_settings import SETTINGS as SETTINGS_FIELDS
from sandbox.workspace_settings import Maxima, audit_detail, check_image_name, check_settings
from webapp import current_service
from webapp.access import may_configure, visible, workspace_or_404
from webapp.auth import audit, current_user, requires
from webapp.body import json_object
from webapp.errors import ApiError

workspaces_api = Blueprint("workspaces_api", __name__)

SETTINGS = set(SETTINGS_FIELDS) | {"approve", "two_person"}  # approvals: sandbox/approvals.py


def workspace_json(ws: WorkspaceRecord) -> dict[str, Any]:
    store = current_service().store
    owner: dict[str, str] | None = None
    if ws.owner_user_id is not None:
        owner = {"user": store.accounts.get_user(ws.owner_user_id).name}
    elif ws.owner_team_id is not None:
        owner = {"team": store.teams.get(ws.owner_team_id).name}
    return {
        "name": ws.name,
        "image": ws.image,
        "network": ws.network,
        "env": dict(ws.env),
        "secrets": store.workspaces.secret_names(ws.id),
        "limits": {k: dict(v) for k, v in ws.limits.items()},
        "owner": owner,
        "approve": ws.approve.value,
        "two_person": ws.two_person,
        "may_change": may_configure(store, current_user(), ws),
        "limits_max": Maxima.from_env().json(),
        "created_at": ws.created_at.isoformat(),
        **_placement(ws.name),
    }


def _placement(name: str) -> dict[str, Any]:
    """Scale-out: the node the workspace lives on, and its latest move (none embedded)."""
    svc = current_service()
    if svc.cluster is None or svc.mover is None:
        return {}
    return {"node": svc.cluster.placement.get(name), "move": svc.mover.status(name)}


@workspaces_api.get("/workspaces")
@requires(Role.VIEWER)
def list_workspaces() -> Response:
    items = [workspace_json(w) for w in visible(current_service().store, current_user())]
    return jsonify({"items": items})


@workspaces_api.get("/workspaces/<name>")
@requires(Role.VIEWER)
def get_workspace(name: str) -> Response:
    return jsonify(workspace_json(workspace_or_404(name, write=False)))


@workspaces_api.post("/workspaces/<name>/move")
@requires(Role.ADMIN)
def move_workspace(name: str) -> tuple[Response, int]:
    """Scale-out: move the workspace to another node (sandbox/cluster/move.py); 202 with
    the move, which goes on in the background (``GET .../move``)."""
    from sandbox.cluster.move import MoveRefused

    svc = current_service()
    ws = workspace_or_404(name, write=False)
    body = json_object({"node", "force"})
    if svc.mover is None:
        raise ApiError(
            409,
            "not_a_cluster",
            "workspaces move between the nodes of a cluster (`bashfleet serve --broker`); "
            "this portal runs everything itself",
        )
    if "node" not in body:
        raise ApiError(400, "invalid_input", "`node` is required: the node to move it to")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise ApiError(400, "invalid_input", "`force` is true or false")
    try:
        move = svc.mover.start(ws, body["node"], force=force, by=current_user().name)
    except MoveRefused as e:
        audit("workspace_move_refused", target=ws.name, detail={"why": str(e)[:300]})
        raise ApiError(e.status, e.code, str(e)) from None
    audit(
        "workspace_move_started",
        target=ws.name,
        detail={"from": move["source"], "to": move["target"]},
    )
    return jsonify(move), 202


@workspaces_api.get("/workspaces/<name>/move")
@requires(Role.VIEWER)
def get_move(name: str) -> Response:
    """The workspace's latest move (404 when it has none)."""
    svc = current_service()
    ws = workspace_or_404(name, write=False)
    move = svc.mover.status(ws.name) if svc.mover is not None else None
    if move is None:
        raise ApiError(404, "not_found", f"workspace {ws.name!r} has not been moved")
    return jsonify(move)


@workspaces_api.put("/workspaces/<name>")
@requires(Role.OPERATOR)
def put_workspace(name: str) -> Response:
    """Change settings; a name that does not exist yet is made, owned by whoever asks."""
    svc, user = current_service(), current_user()
    body = json_object(SETTINGS)
    store = svc.store
    ws = store.workspaces.find(name)
    if ws is None:
        check_workspace_name(name)
    else:
        ws = _configurable(name)
    values, secrets = _settings(body, ws)
    if ws is None:
        made = store.workspaces.get_or_create(name, owner_user_id=user.id)
        if made.owner_user_id != user.id:
            # made by someone else meanwhile, or `default` (shared: the admins' to change):
            # check again against the workspace as it is
            ws = _configurable(name)
            values, secrets = _settings(body, ws)
        ws = made
    sealed = {
        k: (svc.secret_box.seal(ws.id, k, v) if v is not None else None) for k, v in secrets.items()
    }
    changed = store.workspaces.change(ws.id, secrets=sealed, **values)
    if values.get("network") == "egress" and ws.network != "egress":
        # its network and rules now, and an error in the log (not a first job's) if not
        threading.Thread(target=svc.ensure_egress, kwargs={"needed": True}, daemon=True).start()
    audit("workspace_changed", target=name, detail=audit_detail(values, secrets))
    return jsonify(workspace_json(changed))


def _configurable(name: str) -> WorkspaceRecord:
    """The workspace if the current user may change its settings: 404 if they may not
    see it, 403 if they see it but may not change it."""
    store, user = current_service().store, current_user()
    ws = workspace_or_404(name, write=True)
    if not may_configure(store, user, ws):
        audit("forbidden", target=f"workspace {name}", detail={"why": "settings"})
        raise ApiError(
            403,
            "forbidden",
            "only admins, and operators in workspaces they own (alone or with a team), "
            "change settings; a workspace without an owner is the admins'",
        )
    return ws


def _settings(
    body: dict[str, Any], ws: WorkspaceRecord | None
) -> tuple[dict[str, Any], dict[str, str | None]]:
    """The checked changes; an operator gives a workspace only to themselves or a team
    they are in, and only admins make one shared by everyone."""
    store, user = current_service().store, current_user()
    values, secrets = check_settings(
        store, ws, {k: v for k, v in body.items() if k in SETTINGS_FIELDS}
    )
    approval = check_approval_settings(body, partial=True)
    if approval and user.role is not Role.ADMIN:
        raise ApiError(403, "forbidden", "`approve` and `two_person` are the admins' to set")
    values.update(approval)
    if user.role is not Role.ADMIN and "owner" in body:
        mine = store.teams.team_ids_of(user.id)
        if values["owner_user_id"] not in (None, user.id) or (
            values["owner_team_id"] is not None and values["owner_team_id"] not in mine
        ):
            raise ApiError(
                403,
                "forbidden",
                "`owner`: operators give a workspace to themselves or a team they are in",
            )
        if values["owner_user_id"] is None and values["owner_team_id"] is None:
            raise ApiError(403, "forbidden", "`owner`: only admins share a workspace with all")
    return values, secrets


# --- teams ------------------------------------------------------------------------------


def team_json(t: TeamRecord) -> dict[str, Any]:
    return {
        "name": t.name,
        "members": list(t.members),
        "max_commands": t.max_commands,
        "max_bytes": t.max_bytes,
        "created_at": t.created_at.isoformat(),
    }


def _team_or_404(name: str) -> TeamRecord:
    found = current_service().store.teams.find(name)
    if found is None:
        raise ApiError(404, "not_found", f"no team {name[:64]!r}")
    return found


def _quotas(body: dict[str, Any]) -> dict[str, int | None]:
    """``max_commands`` / ``max_bytes``: a whole number, 0 for no quota."""
    out: dict[str, int | None] = {}
    for key, high in (("max_commands", 1_000_000), ("max_bytes", 1 << 50)):
        if key in body:
            v = body[key]
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= high:
                raise InputError(f"`{key}` is a whole number from 0 (no quota) to {high}")
            out[key] = v or None
    return out


@workspaces_api.get("/teams")
@requires(Role.VIEWER)
def list_teams() -> Response:
    user = current_user()
    teams = current_service().store.teams.list()
    if user.role is not Role.ADMIN:
        teams = [t for t in teams if user.name in t.members]
    files = current_service().files
    # used_bytes: what the team's workspaces store (cached a few seconds); max_bytes the quota
    return jsonify(
        {"items": [{**team_json(t), "used_bytes": files.team_bytes(t.id)} for t in teams]}
    )


@workspaces_api.post("/teams")
@requires(Role.ADMIN)
def create_team() -> tuple[Response, int]:
    body = json_object({"name", "max_commands", "max_bytes"})
    name = body.get("name")
    if not isinstance(name, str):
        raise InputError("`name` (text) is required")
    try:
        check_workspace_name(name)  # the same rule: safe in paths and URLs
    except InputError:
        raise InputError(
            "`name`: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter, digit or '_'"
        ) from None
    store = current_service().store
    if store.teams.find(name) is not None:
        raise ApiError(409, "conflict", f"team {name!r} exists already")
    team = store.teams.create(name, **_quotas(body))
    audit("team_created", target=name, detail=_quotas(body))
    return jsonify(team_json(team)), 201


@workspaces_api.put("/teams/<name>")
@requires(Role.ADMIN)
def change_team(name: str) -> Response:
    body = json_object({"max_commands", "max_bytes"})
    team = _team_or_404(name)
    quotas = _quotas(body)
    merged = {"max_commands": team.max_commands, "max_bytes": team.max_bytes, **quotas}
    store = current_service().store
    store.teams.set_quotas(team.id, **merged)
    audit("team_changed", target=name, detail=quotas)
    return jsonify(team_json(store.teams.get(team.id)))


@workspaces_api.delete("/teams/<name>")
@requires(Role.ADMIN)
def delete_team(name: str) -> Response:
    team = _team_or_404(name)
    store = current_service().store
    owned = store.workspaces.of_team(team.id)
    if owned:
        # without an owner they would be shared by everyone: their owner must be chosen
        raise ApiError(
            409,
            "conflict",
            f"team {name} owns {len(owned)} workspace(s); give them another owner first",
        )
    store.teams.delete(team.id)
    audit("team_deleted", target=name)
    return jsonify({"status": "deleted"})


def _member(name: str, user: str) -> tuple[TeamRecord, int]:
    team = _team_or_404(name)
    found = current_service().store.accounts.find_user(user)
    if found is None:
        raise ApiError(404, "not_found", f"no user {user[:64]!r}")
    return team, found.id


@workspaces_api.put("/teams/<name>/members/<user>")
@requires(Role.ADMIN)
def add_member(name: str, user: str) -> Response:
    team, user_id = _member(name, user)
    store = current_service().store
    if store.teams.add_member(team.id, user_id):
        audit("team_member_added", target=name, detail={"user": user})
    return jsonify(team_json(store.teams.get(team.id)))


@workspaces_api.delete("/teams/<name>/members/<user>")
@requires(Role.ADMIN)
def remove_member(name: str, user: str) -> Response:
    team, user_id = _member(name, user)
    store = current_service().store
    if not store.teams.remove_member(team.id, user_id):
        raise ApiError(404, "not_found", f"{user[:64]} is not in team {name}")
    audit("team_member_removed", target=name, detail={"user": user})
    return jsonify(team_json(store.teams.get(team.id)))


# --- images -----------------------------------------------------------------------------


@workspaces_api.get("/images")
@requires(Role.VIEWER)
def list_images() -> Response:
    return jsonify({"items": allowed_images(current_service().store)})


@workspaces_api.post("/images")
@requires(Role.ADMIN)
def allow_image() -> tuple[Response, int]:
    body = json_object({"image"})
    image = check_image_name(body.get("image"))
    if local_image(image) is None:
        raise InputError(
            f"`image`: {image} is not in the local Docker engine; build or load it first "
            "(`bashfleet image build`, `docker load`)"
        )
    added = current_service().store.images.add(image, current_user().name)
    if added:
        audit("image_allowed", target=image)
    return jsonify({"image": image, "added": added}), 201 if added else 200
