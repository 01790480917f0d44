"""The OpenAPI paths of approvals, webhooks and schedule runs (merged into openapi.py's)."""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}
COMMAND = {"$ref": "#/components/schemas/Command"}
BATCH = {"$ref": "#/components/schemas/Batch"}
NAME = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
EVENTS = ["batch_finished", "batch_failed", "awaiting_approval", "schedule_failed_twice"]
ERRORS = {
    code: {"description": text, "content": {"application/json": {"schema": ERROR}}}
    for code, text in (
        ("400", "Invalid input"),
        ("401", "No or bad token"),
        ("403", "Role does not allow this"),
        ("404", "Not found"),
        ("429", "Too many"),
        ("503", "The store cannot be written"),
    )
}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {**responses, **ERRORS}, **extra}


def _param(name: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


APPROVAL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "approve": {"type": "string", "enum": ["none", "dangerous", "sequential+dangerous"]},
        "two_person": {"type": "boolean"},
    },
}
REJECT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"reason": {"type": "string", "maxLength": 500}},
}
WEBHOOK = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url"],
    "properties": {
        "url": {"type": "string", "maxLength": 2048},
        "events": {"type": "array", "items": {"type": "string", "enum": EVENTS}},
        "workspace": NAME,
        "active": {"type": "boolean"},
    },
}
NOTIFY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "email": {"type": "string", "maxLength": 254, "description": "empty: no mail"},
        "events": {"type": "array", "items": {"type": "string", "enum": EVENTS}},
    },
}
CONFLICT = _json(ERROR, "Not possible in the current state")
PARAM = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,31}$"},
        "type": {"type": "string", "enum": ["string", "int", "bool", "choice"]},
        "required": {"type": "boolean"},
        "default": {},
        "pattern": {"type": "string", "maxLength": 200},
        "choices": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string", "maxLength": 500},
    },
}
TEMPLATE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "script"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 100},
        "script": {"type": "string", "minLength": 1},
        "params": {"type": "array", "maxItems": 50, "items": PARAM},
    },
}


def notify_paths(batch_id: dict[str, Any], command_id: dict[str, Any]) -> dict[str, Any]:
    ws, hook = _param("name"), _param("webhook_id", "integer")
    tpl, uid = _param("template_id", "integer"), _param("user_id", "integer")
    obj = _json({"type": "object"})
    return {
        "/workspaces/{name}/approval": {
            "get": _op("A workspace's approval settings", {"200": obj}, parameters=[ws]),
            "put": _op(
                "Set which classes wait for an approval, and the two-person rule (admins)",
                {"200": obj},
                parameters=[ws],
                requestBody=_body(APPROVAL),
            ),
        },
        "/batches/{batch_id}/commands/{command_id}/approve": {
            "post": _op(
                "Approve a command that awaits approval (not the submitter's own under "
                "the two-person rule)",
                {"200": _json(COMMAND), "409": CONFLICT},
                parameters=[batch_id, command_id],
            ),
        },
        "/batches/{batch_id}/commands/{command_id}/reject": {
            "post": _op(
                "Reject a command that awaits approval: it ends rejected",
                {"200": _json(COMMAND), "409": CONFLICT},
                parameters=[batch_id, command_id],
                requestBody=_body(REJECT, required=False),
            ),
        },
        "/approvals": {
            "get": _op("Commands that await approval, oldest first", {"200": obj}),
        },
        "/schedules/{schedule_id}/run": {
            "post": _op(
                "Run a schedule now (source schedule; counts against the submission limit)",
                {"201": _json(BATCH, "Created"), "409": CONFLICT},
                parameters=[_param("schedule_id", "integer")],
            ),
        },
        "/templates": {
            "get": _op("Templates", {"200": obj}),
            "post": _op(
                "Add a template: a script with {{name}} placeholders and typed parameters",
                {"201": obj, "409": CONFLICT},
                requestBody=_body(TEMPLATE),
            ),
        },
        "/templates/{template_id}": {
            "get": _op("One template", {"200": obj}, parameters=[tpl]),
            "patch": _op(
                "Change a template (its author or an admin)",
                {"200": obj, "409": CONFLICT},
                parameters=[tpl],
                requestBody=_body({**TEMPLATE, "required": []}),
            ),
            "delete": _op("Delete a template", {"200": obj}, parameters=[tpl]),
        },
        "/webhooks": {
            "get": _op("Your webhooks (admins: everyone's)", {"200": obj}),
            "post": _op(
                "Add a webhook; its signing secret is returned once",
                {"201": obj},
                requestBody=_body(WEBHOOK),
            ),
        },
        "/webhooks/{webhook_id}": {
            "get": _op("One webhook", {"200": obj}, parameters=[hook]),
            "patch": _op(
                "Change a webhook",
                {"200": obj},
                parameters=[hook],
                requestBody=_body({**WEBHOOK, "required": []}),
            ),
            "delete": _op("Delete a webhook", {"200": obj}, parameters=[hook]),
        },
        "/session/notify": {
            "get": _op("Your e-mail address, mailed events and last 20 attempts", {"200": obj}),
            "put": _op(
                "Set your e-mail address and the events mailed to you (of your own batches)",
                {"200": obj},
                requestBody=_body(NOTIFY),
            ),
        },
        "/users/{user_id}/notify": {
            "get": _op("A user's e-mail settings (admins)", {"200": obj}, parameters=[uid]),
            "put": _op(
                "Set a user's e-mail address and mailed events (admins)",
                {"200": obj},
                parameters=[uid],
                requestBody=_body(NOTIFY),
            ),
        },
        "/webhooks/{webhook_id}/deliveries": {
            "get": _op(
                "The delivery log of a webhook, newest first", {"200": obj}, parameters=[hook]
            ),
        },
    }
