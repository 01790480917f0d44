"""The OpenAPI 3 document served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from sandbox import __version__
from webapp.openapi_notify import notify_paths

STATUSES = [
    "pending",
    "queued",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "skipped",
    "interrupted",
    "refused",
    "oom_killed",
    "awaiting_approval",
    "rejected",
]
CLASSES = ["safe", "conditional", "sequential", "dangerous"]
POLICIES = ["skip_dependents", "continue", "halt"]
STATUS_LIST = "^(" + "|".join(STATUSES) + ")(,(" + "|".join(STATUSES) + "))*$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": _json(_ref("Error"), "Invalid input"),
    "401": _json(_ref("Error"), "No or bad token"),
    "403": _json(_ref("Error"), "Role does not allow this"),
    "404": _json(_ref("Error"), "Not found"),
    "429": _json(_ref("Error"), "Too many: submissions, logins or failed authentications"),
    "503": _json(_ref("Error"), "The store cannot be written, or every judge is busy"),
}
JUDGED = {
    "413": _json(_ref("Error"), "The script is over the size limit"),
    "422": _json(_ref("Error"), "The script could not be judged within the deadline"),
}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {**responses, **ERRORS}, **extra}


def _path_param(name: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    },
    "Command": {
        "type": "object",
        "required": [
            "id",
            "index",
            "command",
            "class",
            "reasons",
            "executor",
            "needs",
            "status",
            "exit_code",
            "duration_s",
        ],
        "properties": {
            "id": {"type": "string"},
            "index": {"type": "integer"},
            "command": {"type": "string"},
            "class": {"type": "string", "enum": CLASSES},
            "reasons": {"type": "array", "items": {"type": "string"}},
            "executor": {"type": "string", "enum": ["local", "docker", "none"]},
            "needs": {"type": "array", "items": {"type": "integer"}},
            "reads": {"type": "array", "items": {"type": "string"}},
            "writes": {"type": "array", "items": {"type": "string"}},
            "status": {"type": "string", "enum": STATUSES},
            "exit_code": {"type": ["integer", "null"]},
            "signal": {"type": ["integer", "null"]},
            "duration_s": {"type": ["number", "null"]},
            "reason": {"type": ["string", "null"]},
            "truncated": {"type": "boolean"},
            "approval": {
                "type": ["string", "null"],
                "enum": ["required", "approved", "rejected", "expired", None],
            },
            "approval_by": {"type": ["string", "null"]},
            "approval_at": {"type": ["string", "null"]},
            "node": {"type": ["string", "null"]},
        },
    },
    "Nodes": {
        "type": "object",
        "required": ["mode", "nodes"],
        "properties": {
            "mode": {"type": "string", "enum": ["embedded", "cluster"]},
            "nodes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "status", "slots", "running", "workspaces"],
                    "properties": {
                        "name": {"type": "string"},
                        "status": {"type": "string", "enum": ["live", "lost"]},
                        "slots": {"type": "integer"},
                        "running": {"type": "integer"},
                        "free_memory": {"type": "integer"},
                        "last_seen": {"type": "string"},
                        "workspaces": {"type": "array", "items": {"type": "string"}},
                        "moving": {
                            "type": "array",
                            "description": "workspaces moving from or to the node",
                            "items": {"type": "object"},
                        },
                    },
                },
            },
        },
    },
    "Batch": {
        "type": "object",
        "required": ["id", "status", "source", "schedule_id"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": STATUSES},
            "source": {"type": "string", "enum": ["web", "api", "schedule", "cli"]},
            "schedule_id": {"type": ["integer", "null"]},
            "user": {"type": ["string", "null"]},
            "workspace": {"type": "string"},
            "priority": {"type": "integer"},
            "timeout_s": {"type": ["number", "null"]},
            "retries": {"type": "integer"},
            "on_failure": {"type": "string", "enum": POLICIES},
            "deadline_s": {"type": ["number", "null"]},
            "rerun_of": {
                "type": ["string", "null"],
                "description": "the batch this one re-runs (POST /batches/{id}/rerun)",
            },
            "params": {"type": ["object", "null"]},
            "command_count": {"type": "integer"},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "commands": {"type": "array", "items": _ref("Command")},
        },
    },
    "Submit": {
        "type": "object",
        "additionalProperties": False,
        "oneOf": [{"required": ["script"]}, {"required": ["commands"]}, {"required": ["template"]}],
        "properties": {
            "script": {
                "type": "string",
                "minLength": 1,
                "maxLength": 1048576,
                "description": "one command per top-level statement",
            },
            "commands": {
                "type": "array",
                "minItems": 1,
                "maxItems": 5000,
                "items": {"type": "string", "minLength": 1},
            },
            "workspace": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
            "priority": {"type": "integer", "minimum": 1, "maximum": 10},
            "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 604800},
            "retries": {"type": "integer", "minimum": 0, "maximum": 10},
            "on_failure": {
                "type": "string",
                "enum": POLICIES,
                "description": "after a failed command: skip only what reads its writes "
                "(skip_dependents, the default), skip nothing (continue), or start nothing "
                "later in script order (halt; the default when the script starts with set -e)",
            },
            "deadline_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 604800,
                "description": "for the whole batch: running commands are stopped "
                "(timed_out), the rest cancelled",
            },
            "needs": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "integer"}},
            },
            "artifacts": {
                "type": "array",
                "maxItems": 20,
                "items": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "globs relative to the workspace (`*` within a folder, `**` "
                "across); matching regular files are kept when the batch ends",
            },
            "template": {"type": "string", "description": "a template's name, instead of script"},
            "params": {
                "type": "object",
                "description": "the template's parameter values; commands get them as "
                "environment variables BF_PARAM_<name>, never as command text",
            },
        },
    },
}


RERUN: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "only": {
            "type": "string",
            "enum": ["all", "failed"],
            "default": "all",
            "description": "failed: the failed, timed-out, interrupted and skipped commands",
        }
    },
}

SCHEDULE_ID = _path_param("schedule_id", "integer")
SCHEDULE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "oneOf": [{"required": ["script"]}, {"required": ["template"]}],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 100},
        "script": {"type": "string", "minLength": 1},
        "template": {
            "type": "string",
            "description": "a template's name, instead of script; each run renders the "
            "template as it is then",
        },
        "params": {
            "type": "object",
            "description": "the template's parameter values (BF_PARAM_<name> in the commands)",
        },
        "workspace": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
        "cron": {"type": "string", "description": "minute hour day-of-month month weekday"},
        "interval_s": {"type": "integer", "minimum": 1, "maximum": 31622400},
        "priority": {"type": "integer", "minimum": 1, "maximum": 10},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0},
        "retries": {"type": "integer", "minimum": 0, "maximum": 10},
        "paused": {"type": "boolean"},
    },
}
SCHEDULE_CHANGE = {k: v for k, v in SCHEDULE.items() if k not in ("required", "oneOf")}


NAME_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$"
WORKSPACE_NAME = {**_path_param("name"), "schema": {"type": "string", "pattern": NAME_PATTERN}}
VARIABLES = {"type": "object", "additionalProperties": {"type": "string"}}
LIMITS = {
    "type": "object",
    "description": "by class: cpus, memory_bytes, pids, disk_bytes, timeout_s (within the "
    "admin's maxima, `limits_max`)",
    "additionalProperties": {
        "type": "object",
        "properties": {
            f: {"type": "number", "exclusiveMinimum": 0}
            for f in ("cpus", "memory_bytes", "pids", "disk_bytes", "timeout_s")
        },
    },
}
OWNER = {
    "type": "object",
    "description": '{"user": NAME}, {"team": NAME}, or {} (shared by everyone; admins)',
    "properties": {"user": {"type": "string"}, "team": {"type": "string"}},
    "maxProperties": 1,
}
WORKSPACE: dict[str, Any] = {
    "type": "object",
    "required": ["name", "image", "network", "env", "secrets", "limits", "owner"],
    "properties": {
        "name": {"type": "string"},
        "image": {"type": ["string", "null"], "description": "null: the default image"},
        "network": {"type": "string", "enum": ["none", "egress"]},
        "env": VARIABLES,
        "secrets": {
            "type": "array",
            "items": {"type": "string"},
            "description": "names only: values are never returned",
        },
        "limits": LIMITS,
        "owner": {"oneOf": [OWNER, {"type": "null"}]},
        "approve": {"type": "string"},
        "two_person": {"type": "boolean"},
        "may_change": {"type": "boolean"},
        "node": {"type": ["string", "null"], "description": "scale-out: the node it lives on"},
        "move": {"type": ["object", "null"], "description": "scale-out: its latest move"},
        "limits_max": {"type": "object"},
    },
}
WORKSPACE_CHANGE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "image": {"type": "string", "description": "an allowed image; '' for the default"},
        "network": {"type": "string", "enum": ["none", "egress"]},
        "env": {**VARIABLES, "description": "replaces every plain variable"},
        "secrets": {
            "type": "object",
            "additionalProperties": {"type": ["string", "null"]},
            "description": "NAME: value sets one, NAME: null deletes one; others stay",
        },
        "limits": {**LIMITS, "description": "replaces the limits"},
        "owner": OWNER,
        "approve": {
            "type": "string",
            "enum": ["none", "dangerous", "sequential+dangerous"],
            "description": "which classes wait for a person's approval (admins)",
        },
        "two_person": {"type": "boolean", "description": "the submitter may not approve"},
    },
}
TEAM_NAME = {**_path_param("name"), "schema": {"type": "string", "pattern": NAME_PATTERN}}
TEAM_QUOTAS = {
    "max_commands": {"type": "integer", "minimum": 0, "description": "0: no quota"},
    "max_bytes": {"type": "integer", "minimum": 0, "description": "0: no quota"},
}


MOVE: dict[str, Any] = {
    "type": "object",
    "required": ["workspace", "source", "target", "state", "error"],
    "properties": {
        "workspace": {"type": "string"},
        "source": {"type": ["string", "null"], "description": "null: it had no node yet"},
        "target": {"type": "string"},
        "by": {"type": "string"},
        "forced": {"type": "boolean"},
        "state": {
            "type": "string",
            "enum": ["draining", "archiving", "restoring", "done", "failed"],
        },
        "started_at": {"type": "number"},
        "ended_at": {"type": ["number", "null"]},
        "seconds": {"type": "number"},
        "transfer_s": {"type": "number", "description": "archiving to done, without the drain"},
        "bytes": {"type": "integer", "description": "the packed workspace (.tar.gz)"},
        "sha256": {"type": "string"},
        "links_skipped": {"type": "integer", "description": "links are not carried"},
        "files_lost": {"type": "boolean", "description": "forced from a lost node: empty"},
        "error": {"type": "string"},
    },
}


def _move_paths() -> dict[str, Any]:
    conflict = _json(_ref("Error"), "Moving already, already there, or the source is lost")
    return {
        "/workspaces/{name}/move": {
            "post": _op(
                "Scale-out: move the workspace to another node (admins): drain, archive, "
                "restore; 202 and the move goes on (GET shows it)",
                {
                    "202": _json(MOVE),
                    "409": conflict,
                    "422": _json(_ref("Error"), "`node` is unknown or lost"),
                },
                parameters=[WORKSPACE_NAME],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["node"],
                                "properties": {
                                    "node": {"type": "string"},
                                    "force": {
                                        "type": "boolean",
                                        "description": "the source is lost: start empty",
                                    },
                                },
                            }
                        }
                    },
                },
            ),
            "get": _op(
                "The workspace's latest move", {"200": _json(MOVE)}, parameters=[WORKSPACE_NAME]
            ),
        },
    }


def _workspace_paths() -> dict[str, Any]:
    member = [TEAM_NAME, _path_param("user")]
    return {
        "/workspaces": {
            "get": _op("The workspaces you may see", {"200": _json({"type": "object"})}),
        },
        "/workspaces/{name}": {
            "get": _op(
                "A workspace's settings (secret names, never values)",
                {"200": _json(WORKSPACE)},
                parameters=[WORKSPACE_NAME],
            ),
            "put": _op(
                "Change settings (admins; operators in workspaces they own); all or nothing",
                {"200": _json(WORKSPACE)},
                parameters=[WORKSPACE_NAME],
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": WORKSPACE_CHANGE}},
                },
            ),
        },
        "/teams": {
            "get": _op(
                "Teams (admins: all; others: their own)", {"200": _json({"type": "object"})}
            ),
            "post": _op(
                "Create a team (admins)",
                {"201": _json({"type": "object"}), "409": _json(_ref("Error"))},
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string", "pattern": NAME_PATTERN},
                                    **TEAM_QUOTAS,
                                },
                            }
                        }
                    },
                },
            ),
        },
        "/teams/{name}": {
            "put": _op(
                "Change a team's quotas (admins)",
                {"200": _json({"type": "object"})},
                parameters=[TEAM_NAME],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": TEAM_QUOTAS,
                            }
                        }
                    },
                },
            ),
            "delete": _op(
                "Delete a team (admins); 409 while it owns workspaces",
                {"200": _json({"type": "object"}), "409": _json(_ref("Error"))},
                parameters=[TEAM_NAME],
            ),
        },
        "/teams/{name}/members/{user}": {
            "put": _op(
                "Add a member (admins)", {"200": _json({"type": "object"})}, parameters=member
            ),
            "delete": _op(
                "Remove a member (admins)", {"200": _json({"type": "object"})}, parameters=member
            ),
        },
        "/images": {
            "get": _op(
                "Allowed images: present locally, size, profile", {"200": _json({"type": "object"})}
            ),
            "post": _op(
                "Allow an image of the local engine (admins)",
                {"200": _json({"type": "object"}), "201": _json({"type": "object"})},
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["image"],
                                "properties": {"image": {"type": "string"}},
                            }
                        }
                    },
                },
            ),
        },
    }


FILE_ERRORS = {
    "409": _json(_ref("Error"), "A symlink or special file in the way, or a batch is running"),
    "413": _json(_ref("Error"), "Over a size or entry limit"),
}


def _files_paths() -> dict[str, Any]:
    path = _query("path", {"type": "string", "maxLength": 1024})
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "/workspaces/{name}/files": {
            "put": _op(
                "Upload a .tar(.gz), .zip or one file into folder `path` (operators); checked "
                "whole before anything is written",
                {
                    "201": _json({"type": "object"}, "Written"),
                    **FILE_ERRORS,
                    "507": _json(_ref("Error"), "The server's disk is full"),
                },
                parameters=[
                    WORKSPACE_NAME,
                    path,
                    _query("format", {"type": "string", "enum": ["tar", "tgz", "zip", "file"]}),
                    _query("name", {"type": "string", "maxLength": 255}),
                ],
                requestBody={
                    "required": True,
                    "content": {"application/octet-stream": binary},
                },
            ),
            "get": _op(
                "Download a file as it is, or a folder as .tar.gz",
                {
                    "200": {
                        "description": "the bytes",
                        "content": {"application/octet-stream": binary, "application/gzip": binary},
                    },
                    **FILE_ERRORS,
                },
                parameters=[WORKSPACE_NAME, path],
            ),
        },
        "/workspaces/{name}/tree": {
            "get": _op(
                "One folder's entries: name, type (dir, file, link, other), size, mtime",
                {"200": _json({"type": "object"}), "409": _json(_ref("Error"))},
                parameters=[WORKSPACE_NAME, path],
            ),
        },
        "/workspaces/{name}/usage": {
            "get": _op(
                "Bytes used: the workspace folder, its batches' stored output and artifacts",
                {"200": _json({"type": "object"})},
                parameters=[WORKSPACE_NAME],
            ),
        },
        "/batches/{batch_id}/artifacts": {
            "get": _op(
                "The files kept when the batch ended (path, size, sha256)",
                {"200": _json({"type": "object"})},
                parameters=[_path_param("batch_id")],
            ),
        },
        "/batches/{batch_id}/artifacts/{path}": {
            "get": _op(
                "Download one artifact",
                {
                    "200": {
                        "description": "the bytes",
                        "content": {"application/octet-stream": binary},
                    }
                },
                parameters=[_path_param("batch_id"), _path_param("path")],
            ),
        },
        "/retention": {
            "post": _op(
                "Run retention now (admins): delete old batches and those over the budget",
                {"200": _json({"type": "object"})},
            ),
        },
    }


def openapi_document() -> dict[str, Any]:
    batch_id, command_id = _path_param("batch_id"), _path_param("command_id")
    return {
        "openapi": "3.1.0",
        "info": {"title": "bashfleet", "version": __version__},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/batches": {
                "post": _op(
                    "Submit a batch",
                    {"201": _json(_ref("Batch"), "Created"), **JUDGED},
                    requestBody={
                        "required": True,
                        "content": {"application/json": {"schema": _ref("Submit")}},
                    },
                ),
                "get": _op(
                    "List batches, newest first",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "items": {"type": "array", "items": _ref("Batch")},
                                    "total": {"type": "integer"},
                                    "next_cursor": {"type": ["string", "null"]},
                                },
                            }
                        )
                    },
                    parameters=[
                        _query("status", {"type": "string", "pattern": STATUS_LIST}),
                        _query(
                            "source", {"type": "string", "enum": ["web", "api", "schedule", "cli"]}
                        ),
                        _query("q", {"type": "string"}),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
                        _query("offset", {"type": "integer", "minimum": 0}),
                        _query("cursor", {"type": "string"}),
                    ],
                ),
            },
            "/batches/{batch_id}": {
                "get": _op(
                    "One batch with its commands",
                    {"200": _json(_ref("Batch"))},
                    parameters=[batch_id],
                ),
            },
            "/batches/{batch_id}/rerun": {
                "post": _op(
                    "Run a finished batch again: all of it, or what failed",
                    {
                        "201": _json(_ref("Batch"), "Created (its rerun_of is the original)"),
                        "409": _json(_ref("Error"), "Still running, or nothing failed"),
                        "429": _json(_ref("Error")),
                    },
                    parameters=[batch_id],
                    requestBody={
                        "required": False,
                        "content": {"application/json": {"schema": RERUN}},
                    },
                ),
            },
            "/batches/{batch_id}/cancel": {
                "post": _op("Cancel a batch", {"200": _json(_ref("Batch"))}, parameters=[batch_id]),
            },
            "/batches/{batch_id}/commands/{command_id}/cancel": {
                "post": _op(
                    "Cancel one running command",
                    {"200": _json({"type": "object"}), "409": _json(_ref("Error"))},
                    parameters=[batch_id, command_id],
                ),
            },
            "/batches/{batch_id}/commands/{command_id}/output": {
                "get": _op(
                    "A command's output",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["stdout", "stderr", "truncated"],
                                "properties": {
                                    "stdout": {"type": "string"},
                                    "stderr": {"type": "string"},
                                    "truncated": {"type": "boolean"},
                                },
                            }
                        )
                    },
                    parameters=[
                        batch_id,
                        command_id,
                        _query("offset", {"type": "integer", "minimum": 0}),
                        _query("limit", {"type": "integer", "minimum": 1}),
                    ],
                ),
            },
            "/batches/{batch_id}/commands/{command_id}/log": {
                "get": _op(
                    "One stream of a command's output, whole, as a text/plain download",
                    {
                        "200": {
                            "description": "the log",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                    parameters=[
                        batch_id,
                        command_id,
                        _query("stream", {"type": "string", "enum": ["stdout", "stderr"]}),
                    ],
                ),
            },
            "/session": {
                "post": _op(
                    "Log in (browser session); returns the CSRF token to send as X-CSRF-Token",
                    {"200": _json({"type": "object"}), "429": _json(_ref("Error"))},
                    security=[],
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["name", "password"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "password": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                ),
                "get": _op(
                    "The logged-in user and the session's CSRF token",
                    {"200": _json({"type": "object"})},
                ),
                "delete": _op("Log out", {"200": _json({"type": "object"})}, security=[]),
            },
            "/users": {
                "get": _op("Users (admins)", {"200": _json({"type": "object"})}),
                "post": _op(
                    "Add a user (admins); a generated password is returned once",
                    {"201": _json({"type": "object"}), "409": _json(_ref("Error"))},
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "role": {
                                            "type": "string",
                                            "enum": ["viewer", "operator", "admin"],
                                        },
                                        "password": {"type": "string", "minLength": 8},
                                    },
                                }
                            }
                        },
                    },
                ),
            },
            "/users/{user_id}/password": {
                "post": _op(
                    "Reset a user's password (admins); without `password` one is generated and"
                    " shown once; the user's sessions and live streams end",
                    {"200": _json({"type": "object"})},
                    parameters=[_path_param("user_id", "integer")],
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "password": {
                                            "type": "string",
                                            "minLength": 8,
                                            "maxLength": 1024,
                                        }
                                    },
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                )
            },
            "/session/password": {
                "post": _op(
                    "Change one's own password; the user's other sessions end",
                    {"200": _json({"type": "object"})},
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["old_password", "new_password"],
                                    "properties": {
                                        "old_password": {"type": "string"},
                                        "new_password": {
                                            "type": "string",
                                            "minLength": 8,
                                            "maxLength": 1024,
                                        },
                                    },
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                )
            },
            "/users/{user_id}": {
                "patch": _op(
                    "Change a user's role or disable them (admins)",
                    {"200": _json({"type": "object"}), "409": _json(_ref("Error"))},
                    parameters=[_path_param("user_id", "integer")],
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "role": {
                                            "type": "string",
                                            "enum": ["viewer", "operator", "admin"],
                                        },
                                        "disabled": {"type": "boolean"},
                                    },
                                }
                            }
                        },
                    },
                ),
            },
            "/tokens": {
                "get": _op(
                    "Your API tokens (admins: ?all=1 for everyone's)",
                    {"200": _json({"type": "object"})},
                ),
                "post": _op(
                    "Create an API token; the secret is returned once",
                    {"201": _json({"type": "object"})},
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "name": {
                                            "type": "string",
                                            "minLength": 1,
                                            "maxLength": 100,
                                        },
                                        "user_id": {"type": "integer"},
                                    },
                                }
                            }
                        },
                    },
                ),
            },
            "/tokens/{token_id}": {
                "delete": _op(
                    "Revoke a token",
                    {"200": _json({"type": "object"})},
                    parameters=[_path_param("token_id", "integer")],
                ),
            },
            "/audit": {
                "get": _op(
                    "The audit log, newest first (admins); format=csv: all of it as CSV",
                    {
                        "200": {
                            "description": "OK",
                            "content": {
                                "application/json": {"schema": {"type": "object"}},
                                "text/csv": {"schema": {"type": "string"}},
                            },
                        }
                    },
                    parameters=[
                        _query("action", {"type": "string"}),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                        _query("cursor", {"type": "string"}),
                        _query("format", {"type": "string", "enum": ["json", "csv"]}),
                    ],
                ),
                "delete": _op(
                    "Delete audit rows older than `before` (admins; audited itself)",
                    {"200": _json({"type": "object"})},
                    parameters=[
                        {
                            "name": "before",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "format": "date-time"},
                        }
                    ],
                ),
            },
            "/schedules": {
                "get": _op("Schedules", {"200": _json({"type": "object"})}),
                "post": _op(
                    "Create a schedule: `cron` (five fields, UTC) or `interval_s`",
                    {"201": _json({"type": "object"}), "409": _json(_ref("Error")), **JUDGED},
                    requestBody={
                        "required": True,
                        "content": {"application/json": {"schema": SCHEDULE}},
                    },
                ),
            },
            "/schedules/{schedule_id}": {
                "get": _op(
                    "One schedule, with its next run",
                    {"200": _json({"type": "object"})},
                    parameters=[SCHEDULE_ID],
                ),
                "patch": _op(
                    "Change a schedule",
                    {"200": _json({"type": "object"})},
                    parameters=[SCHEDULE_ID],
                    requestBody={
                        "required": True,
                        "content": {"application/json": {"schema": SCHEDULE_CHANGE}},
                    },
                ),
                "delete": _op(
                    "Delete a schedule",
                    {"200": _json({"type": "object"})},
                    parameters=[SCHEDULE_ID],
                ),
            },
            "/schedules/{schedule_id}/pause": {
                "post": _op("Pause", {"200": _json({"type": "object"})}, parameters=[SCHEDULE_ID]),
            },
            "/schedules/{schedule_id}/resume": {
                "post": _op("Resume", {"200": _json({"type": "object"})}, parameters=[SCHEDULE_ID]),
            },
            **_workspace_paths(),
            **_move_paths(),
            **_files_paths(),
            "/nodes": {
                "get": _op(
                    "Scale-out: worker nodes, their load and workspaces (empty when embedded)",
                    {"200": _json(_ref("Nodes"))},
                ),
            },
            "/metrics": {
                "get": _op(
                    "Metrics as JSON, with p50/p90/p95/p99 of durations and queue waits",
                    {"200": _json({"type": "object"})},
                ),
            },
            **notify_paths(batch_id, command_id),
            "/classify": {
                "post": _op(
                    "Classify and plan a script without running it",
                    {"200": _json({"type": "object"}), **JUDGED},
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["script"],
                                    "properties": {"script": {"type": "string"}},
                                }
                            }
                        },
                    },
                ),
            },
        },
    }
