"""/api/v1/templates: scripts with ``{{name}}`` placeholders and typed parameters.

    GET  /templates, GET /templates/ID
    POST /templates        {"name", "script", "params": [definitions]} (operators) -> 201
    PATCH/DELETE /templates/ID   (its author or an admin)

A batch from a template: ``POST /batches {"template": NAME, "params": {...}}``; the
values reach the commands as environment variables ``BF_PARAM_<name>``, never as
command text (sandbox/templates.py).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from sandbox.store import Role, UserRecord
from sandbox.store.templates import TemplateRecord
from sandbox.templates import bind, check_definitions, render
from webapp import current_service
from webapp.auth import audit, current_user, requires
from webapp.body import json_object
from webapp.errors import ApiError

templates_api = Blueprint("templates_api", __name__)
FIELDS = {"name", "script", "params"}
MAX_TEMPLATES = 500


def template_json(t: TemplateRecord) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "user_id": t.user_id,
        "script": t.script,
        "params": list(t.params),
        "created_at": t.created_at.isoformat(),
        "updated_at": t.updated_at.isoformat(),
    }


def from_template(name: Any, values: Any) -> tuple[str, dict[str, str]]:
    """The rendered script and its environment for a submission that names a template."""
    if not isinstance(name, str):
        raise ApiError(400, "invalid_input", "`template` is a template's name")
    t = current_service().store.templates.find(name)
    if t is None:
        raise ApiError(404, "not_found", f"no template {name!r}")
    definitions = list(t.params)
    return render(t.script, definitions), bind(definitions, values)


def _values(body: dict[str, Any], current: TemplateRecord | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if current is None or "name" in body:
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
            raise ApiError(400, "invalid_input", "`name` is text of 1 to 100 characters")
        values["name"] = name.strip()
    if current is None or "script" in body:
        script = body.get("script")
        if not isinstance(script, str) or not script.strip():
            raise ApiError(400, "invalid_input", "`script` (text) is required")
        values["script"] = script
    if current is None or "params" in body:
        values["params"] = check_definitions(body.get("params", []))
    script = values.get("script", current.script if current else "")
    definitions = values.get("params", list(current.params) if current else [])
    current_service().classify(render(script, definitions))  # same checks as a submission
    return values


def _own(template_id: int, user: UserRecord) -> TemplateRecord:
    t = current_service().store.templates.get(template_id)
    if user.role is not Role.ADMIN and t.user_id != user.id:
        raise ApiError(403, "forbidden", "operators change only their own templates")
    return t


@templates_api.get("/templates")
@requires(Role.VIEWER)
def list_templates() -> Response:
    return jsonify({"items": [template_json(t) for t in current_service().store.templates.list()]})


@templates_api.get("/templates/<int:template_id>")
@requires(Role.VIEWER)
def get_template(template_id: int) -> Response:
    return jsonify(template_json(current_service().store.templates.get(template_id)))


@templates_api.post("/templates")
@requires(Role.OPERATOR)
def create_template() -> tuple[Response, int]:
    user, body = current_user(), json_object(FIELDS)
    values = _values(body, None)
    store = current_service().store
    if len(store.templates.list()) >= MAX_TEMPLATES:
        raise ApiError(409, "too_many", f"at most {MAX_TEMPLATES} templates")
    t = store.templates.create(user_id=user.id, **values)
    audit("template_created", target=str(t.id), detail={"name": t.name})
    return jsonify(template_json(t)), 201


@templates_api.patch("/templates/<int:template_id>")
@requires(Role.OPERATOR)
def change_template(template_id: int) -> Response:
    current = _own(template_id, current_user())
    values = _values(json_object(FIELDS), current)
    t = current_service().store.templates.update(template_id, **values)
    audit("template_changed", target=str(template_id), detail={"name": t.name})
    return jsonify(template_json(t))


@templates_api.delete("/templates/<int:template_id>")
@requires(Role.OPERATOR)
def delete_template(template_id: int) -> Response:
    _own(template_id, current_user())
    current_service().store.templates.delete(template_id)
    audit("template_deleted", target=str(template_id))
    return jsonify({"status": "deleted"})
