"""The REST API under /api/v1 (DESIGN.md, "Contracts")."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from sandbox.model import Status
from sandbox.pipeline import judgement_json
from sandbox.store import Role, Source
from webapp import current_service
from webapp.access import batch_or_404, submission_workspace, visible_ids
from webapp.auth import RateLimiter, audit, current_user, requires
from webapp.body import json_object
from webapp.errors import ApiError
from webapp.openapi import openapi_document
from webapp.serialize import batch_json
from webapp.templates_api import from_template

api = Blueprint("api", __name__)
submissions = RateLimiter()  # per user; scheduled runs count too

OUTPUT_PAGE = 1 << 20
SUBMIT_FIELDS = {
    "script",
    "commands",
    "workspace",
    "priority",
    "timeout_s",
    "retries",
    "needs",
    "on_failure",
    "deadline_s",
    "artifacts",
    "template",
    "params",
}


def _typed(body: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(key, default)
    if value is None or value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ApiError(400, "invalid_input", f"`{key}` must be {names}")
    return value


def _needs(value: Any) -> dict[int, list[int]] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_input", "`needs` maps a command index to earlier indices")
    out: dict[int, list[int]] = {}
    for k, v in value.items():
        if (
            not (str(k).isascii() and str(k).isdigit())
            or not isinstance(v, list)
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in v)
        ):
            raise ApiError(400, "invalid_input", '`needs` looks like {"3": [0, 1]}')
        out[int(k)] = v
    return out


@api.post("/batches")
@requires(Role.OPERATOR)
def submit() -> tuple[Response, int]:
    user = current_user()
    body = json_object(SUBMIT_FIELDS)
    if isinstance(body.get("script"), str):
        _fits(body["script"])
    if not submissions.allow(f"user:{user.id}", current_app.config["SUBMIT_RATE"]):
        audit("rate_limited", target="/batches")
        raise ApiError(429, "rate_limited", "too many submissions; wait a minute and retry")
    workspace = _typed(body, "workspace", str, "default")
    submission_workspace(workspace)
    params: dict[str, str] | None = None
    if "template" in body:
        if "script" in body or "commands" in body:
            raise ApiError(400, "invalid_input", "give `template` or `script`/`commands`, not both")
        body["script"], params = from_template(body["template"], body.get("params"))
    elif "params" in body:
        raise ApiError(400, "invalid_input", "`params` goes with `template`")
    record = current_service().submit(
        user,
        params=params,
        script=_typed(body, "script", str, None),
        commands=_typed(body, "commands", list, None),
        workspace=workspace,
        priority=_typed(body, "priority", int, 5),
        timeout_s=_typed(body, "timeout_s", (int, float), None),
        retries=_typed(body, "retries", int, 0),
        needs=_needs(body.get("needs")),
        source=_source(),
        on_failure=_typed(body, "on_failure", str, None),
        deadline_s=_typed(body, "deadline_s", (int, float), None),
        artifacts=_typed(body, "artifacts", list, None),
    )
    audit(
        "batch_submitted",
        target=record.id,
        detail={
            "script": record.script,
            "commands": [
                {"index": c.index, "class": c.cls.value, "reasons": list(c.reasons)}
                for c in record.commands
            ],
        },
    )
    return jsonify(batch_json(record)), 201


def _source() -> Source:
    return Source.API if request.headers.get("Authorization") else Source.WEB


@api.post("/batches/<batch_id>/rerun")
@requires(Role.OPERATOR)
def rerun(batch_id: str) -> tuple[Response, int]:
    user = current_user()
    batch_or_404(batch_id, write=True)
    body = json_object({"only"}) if request.get_data() else {}  # no body: all of it
    if not submissions.allow(f"user:{user.id}", current_app.config["SUBMIT_RATE"]):
        audit("rate_limited", target=f"/batches/{batch_id}/rerun")
        raise ApiError(429, "rate_limited", "too many submissions; wait a minute and retry")
    only = _typed(body, "only", str, "all")
    record = current_service().rerun(user, batch_id, only=only, source=_source())
    audit("batch_rerun", target=record.id, detail={"rerun_of": batch_id, "only": only})
    return jsonify(batch_json(record)), 201


@api.get("/batches")
@requires(Role.VIEWER)
def list_batches() -> Response:
    args = request.args
    filters: dict[str, Any] = {}
    if "status" in args:
        try:
            filters["status"] = [Status(s) for s in args.get("status", "").split(",")]
        except ValueError:
            raise ApiError(400, "invalid_input", "unknown status in `status`") from None
    if "source" in args:
        try:
            filters["source"] = Source(args["source"])
        except ValueError:
            raise ApiError(400, "invalid_input", "`source` is web, api, schedule or cli") from None
    if args.get("q"):
        filters["text"] = args["q"][:200]
    if "schedule_id" in args:
        filters["schedule_id"] = _int_arg("schedule_id", 0, 1, 1 << 62)
    limit = _int_arg("limit", 50, 1, 200)
    offset = _int_arg("offset", 0, 0, 10_000_000)
    seen = visible_ids(current_service().store, current_user())
    if seen is not None:
        filters["workspace_ids"] = seen
    page = current_service().list_batches(
        limit=limit, offset=offset, cursor=args.get("cursor"), **filters
    )
    return jsonify(
        {
            "items": [batch_json(b, with_commands=False) for b in page.items],
            "total": page.total,
            "next_cursor": page.next_cursor,
        }
    )


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not lo <= int(raw) <= hi:
        raise ApiError(400, "invalid_input", f"`{name}` must be a whole number from {lo} to {hi}")
    return int(raw)


@api.get("/batches/<batch_id>")
@requires(Role.VIEWER)
def get_batch(batch_id: str) -> Response:
    return jsonify(batch_json(batch_or_404(batch_id)))


@api.post("/batches/<batch_id>/cancel")
@requires(Role.OPERATOR)
def cancel_batch(batch_id: str) -> Response:
    batch_or_404(batch_id, write=True)
    record = current_service().cancel_batch(current_user(), batch_id)
    audit("batch_cancelled", target=batch_id)
    return jsonify(batch_json(record))


@api.post("/batches/<batch_id>/commands/<command_id>/cancel")
@requires(Role.OPERATOR)
def cancel_command(batch_id: str, command_id: str) -> Response:
    batch_or_404(batch_id, write=True)
    current_service().cancel_command(current_user(), batch_id, command_id)
    audit("command_cancelled", target=f"{batch_id}/{command_id}")
    return jsonify({"status": "cancelling"})


@api.get("/batches/<batch_id>/commands/<command_id>/output")
@requires(Role.VIEWER)
def output(batch_id: str, command_id: str) -> Response:
    offset = _int_arg("offset", 0, 0, 1 << 40)
    # at most OUTPUT_PAGE per stream and response, whatever is asked: read on by offset
    limit = min(_int_arg("limit", OUTPUT_PAGE, 1, 8 << 20), OUTPUT_PAGE)
    batch_or_404(batch_id)
    svc = current_service()
    result: dict[str, Any] = {}
    truncated = False
    for stream in ("stdout", "stderr"):
        data, next_offset, size = svc.read_output(batch_id, command_id, stream, offset, limit)
        result[stream] = data.decode("utf-8", "replace")
        result[f"{stream}_next_offset"] = next_offset
        truncated |= next_offset < size
    command = svc.store.batches.get_command(command_id)
    result["truncated"] = truncated or command.truncated
    return jsonify(result)


@api.get("/batches/<batch_id>/commands/<command_id>/log")
@requires(Role.VIEWER)
def log_file(batch_id: str, command_id: str) -> Response:
    """One stream's whole output as a plain-text download (the page shows a window)."""
    stream = request.args.get("stream", "stdout")
    batch_or_404(batch_id)
    svc = current_service()
    svc.read_output(batch_id, command_id, stream, 0, 0)  # checks ids and stream name
    command = svc.store.batches.get_command(command_id)

    def chunks() -> Iterator[bytes]:
        offset = 0
        while True:
            data, offset, _ = svc.read_output(batch_id, command_id, stream, offset, 1 << 20)
            if not data:
                return
            yield data

    name = f"{batch_id}-{command.index}-{stream}.log"
    return Response(
        chunks(),
        mimetype="text/plain",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@api.post("/classify")
@requires(Role.VIEWER)
def classify() -> Response:
    key = f"user:{current_user().id}"
    with _classifying_lock:  # before the body is even parsed: a refusal is cheap
        if key in _classifying:
            raise ApiError(429, "rate_limited", "one classification at a time per user")
        _classifying.add(key)
    try:
        body = json_object({"script"})
        script = _typed(body, "script", str, None)
        if script is None:
            raise ApiError(400, "invalid_input", "`script` (text) is required")
        _fits(script)
        judgement = current_service().classify(script)
    finally:
        with _classifying_lock:
            _classifying.discard(key)
    return jsonify(judgement_json(judgement))


_classifying: set[str] = set()  # users with a classification under way
_classifying_lock = threading.Lock()


def _fits(script: str) -> None:
    limit = current_app.config["MAX_SCRIPT_BYTES"]
    size = len(script.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise ApiError(413, "too_large", f"the script is {size} bytes; the limit is {limit}")


@api.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())


@api.get("/metrics")
@requires(Role.VIEWER)
def metrics_json() -> Response:
    """The same numbers as /metrics, as JSON, with p50/p90/p95/p99, and the live hub's."""
    summary = current_service().metrics_summary()
    hub = current_app.extensions.get("bashfleet_live")
    if hub is not None:
        summary["live"] = hub.stats()
    return jsonify(summary)


@api.get("/nodes")
@requires(Role.VIEWER)
def list_nodes() -> Response:
    """Scale-out: the worker nodes, their load and their workspaces (none when embedded)."""
    svc = current_service()
    cluster = svc.cluster
    nodes = cluster.nodes() if cluster is not None else []
    moves = svc.mover.under_way() if svc.mover is not None else []
    return jsonify(
        {
            "mode": "cluster" if cluster is not None else "embedded",
            "nodes": [
                {
                    "name": n.name,
                    "status": n.status,
                    "slots": n.slots,
                    "running": n.running,
                    "free_memory": n.free_memory,
                    "last_seen": n.last_seen.isoformat(),
                    "workspaces": list(n.workspaces),
                    "moving": [  # workspaces moving from or to the node
                        {k: m[k] for k in ("workspace", "source", "target", "state")}
                        for m in moves
                        if n.name in (m["source"], m["target"])
                    ],
                }
                for n in nodes
            ],
        }
    )
