"""Files in and out of workspaces, batch artifacts, disk use, retention (REST, /api/v1).

    PUT  /workspaces/NAME/files?path=DIR[&format=tar|tgz|zip|file][&name=FILE]  operator
    GET  /workspaces/NAME/files?path=P     a file as it is, or a folder as .tar.gz
    GET  /workspaces/NAME/tree?path=DIR    one folder's entries (links shown, not followed)
    GET  /workspaces/NAME/usage            bytes: folder, stored output, artifacts
    GET  /batches/ID/artifacts             the files kept when the batch ended
    GET  /batches/ID/artifacts/PATH        one of them
    POST /retention                        run retention now (admin)

Every workspace goes through ``webapp.access.workspace_or_404``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request

from sandbox.store import Role
from sandbox.workspace_files import FilesError, read_chunks, rel_parts
from webapp import current_service
from webapp.access import workspace_or_404
from webapp.auth import audit, requires
from webapp.errors import ApiError, error_response

files_api = Blueprint("files_api", __name__)
UPLOAD_PATH = re.compile(r"/api/v1/workspaces/[^/?#\s]+/files")


@files_api.after_request
def _close_uploads(response: Response) -> Response:
    # an upload refused before its body was read: close, so the rest is not read as a
    # next request (nor drained, up to the upload limit)
    if request.method == "PUT":
        response.headers["Connection"] = "close"
    return response


@files_api.errorhandler(FilesError)
def _refused(e: FilesError) -> tuple[Response, int]:
    return error_response(e.status, e.code, str(e))


def _path_arg() -> str:
    path = request.args.get("path", "")
    rel_parts(path)  # 400 with what is wrong
    return path


@files_api.put("/workspaces/<name>/files")
@requires(Role.OPERATOR)
def upload(name: str) -> tuple[Response, int]:
    ws = workspace_or_404(name, write=True)
    path = _path_arg()
    fmt = request.args.get("format") or _format_from_type(request.content_type)
    limit = current_service().files.uploads.max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            413, "too_large", f"the upload is over {limit} bytes (BASHFLEET_UPLOAD_MAX_BYTES)"
        )
    request.max_content_length = limit + 1  # the service stops it at the limit itself
    try:
        done = current_service().files.upload(
            ws, request.stream, path=path, fmt=fmt, name=request.args.get("name")
        )
    except FilesError as e:
        audit("upload_refused", target=ws.name, detail={"path": path, "why": str(e)[:300]})
        raise
    audit("files_uploaded", target=ws.name, detail=done)
    return jsonify(done), 201


def _format_from_type(content_type: str | None) -> str | None:
    kind = (content_type or "").split(";")[0].strip().lower()
    return {
        "application/gzip": "tar",
        "application/x-gzip": "tar",
        "application/x-tar": "tar",
        "application/x-gtar": "tar",
        "application/zip": "zip",
        "application/x-zip-compressed": "zip",
    }.get(kind)


@files_api.get("/workspaces/<name>/files")
@requires(Role.VIEWER)
def download(name: str) -> Response:
    ws = workspace_or_404(name, write=False)
    path = _path_arg()
    kind, chunks, size = current_service().files.download(ws, path)  # 409: a link, a fifo
    base = (rel_parts(path) or (ws.name,))[-1]
    if kind == "dir":
        audit("files_downloaded", target=ws.name, detail={"path": path or ".", "kind": "folder"})
        return _attachment(chunks, f"{base}.tar.gz", "application/gzip")
    audit("files_downloaded", target=ws.name, detail={"path": path, "bytes": size})
    response = _attachment(chunks, base, "application/octet-stream")
    response.headers["Content-Length"] = str(size)
    return response


def _attachment(chunks: Iterator[bytes], filename: str, mimetype: str) -> Response:
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", filename)[:100] or "download"
    return Response(
        chunks,
        mimetype=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="{ascii_name}"; '
            f"filename*=UTF-8''{quote(filename.encode('utf-8', 'surrogateescape'))}",
            "X-Content-Type-Options": "nosniff",
        },
        direct_passthrough=True,
    )


@files_api.get("/workspaces/<name>/tree")
@requires(Role.VIEWER)
def list_tree(name: str) -> Response:
    ws = workspace_or_404(name, write=False)
    listing = current_service().files.tree(ws, _path_arg())
    return jsonify({"workspace": ws.name, **listing})


@files_api.get("/workspaces/<name>/usage")
@requires(Role.VIEWER)
def usage(name: str) -> Response:
    ws = workspace_or_404(name, write=False)
    out = current_service().files.usage(ws)
    config = current_service().config
    out["budget_bytes"] = config.workspace_budget_bytes
    out["retention_days"] = config.retention_days
    return jsonify(out)


def _batch_workspace(batch_id: str) -> str:
    batch = current_service().get_batch(batch_id)  # 404 for an unknown batch
    workspace_or_404(batch.workspace_name, write=False)
    return batch.workspace_name


@files_api.get("/batches/<batch_id>/artifacts")
@requires(Role.VIEWER)
def list_artifacts(batch_id: str) -> Response:
    svc = current_service()
    workspace = _batch_workspace(batch_id)
    batch = svc.get_batch(batch_id)
    collecting = False
    if batch.status.final and batch.artifact_patterns:
        collecting = not svc.artifacts.wait(batch_id, 5.0)
    items = svc.store.artifacts.list(batch_id)
    return jsonify(
        {
            "batch_id": batch_id,
            "workspace": workspace,
            "patterns": list(batch.artifact_patterns),
            "collecting": collecting or not batch.status.final,
            "items": [
                {
                    "path": a.path,
                    "size": a.size,
                    "sha256": a.sha256,
                    "url": f"/api/v1/batches/{batch_id}/artifacts/{quote(a.path)}",
                }
                for a in items
            ],
        }
    )


@files_api.get("/batches/<batch_id>/artifacts/<path:path>")
@requires(Role.VIEWER)
def get_artifact(batch_id: str, path: str) -> Response:
    svc = current_service()
    _batch_workspace(batch_id)
    record = svc.store.artifacts.get(batch_id, path)
    if record is None:
        raise ApiError(404, "not_found", f"batch {batch_id} has no artifact {path[:200]!r}")
    fd, size = svc.artifacts.open(batch_id, path)
    response = _attachment(read_chunks(fd, size), rel_parts(path)[-1], "application/octet-stream")
    response.headers["Content-Length"] = str(size)
    response.headers["X-Checksum-Sha256"] = record.sha256
    return response


@files_api.post("/retention")
@requires(Role.ADMIN)
def run_retention() -> Response:
    done = current_service().run_retention()
    audit("retention_requested", target="retention", detail=done)
    return jsonify(done)
