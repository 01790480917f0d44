"""The node's side of workspace file transfers (transfer.py has the wire and the control
plane's side): ``serve_files`` answers one signed ``"kind": "files"`` request, on the
node's pool, for a workspace under its data folder; ``sweep`` clears what a transfer cut
short by a crash left. Every path is opened as sandbox/workspace_files.py does (no link
followed); an upload or a restore is checked whole (sandbox/uploads.py) before a byte is
written, and only after its bytes match the sha256 of the signed request.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sandbox.cluster.signing import ForgedMessage, seal, sign, unseal
from sandbox.cluster.transfer import (
    XFER_ID,
    TransferFailed,
    chunk_context,
    pull,
    push,
    xfer_key,
)
from sandbox.uploads import UploadLimits, detect, install, plan
from sandbox.workspace_files import (
    CHUNK,
    FilesError,
    Member,
    _tar_gz,
    folder_bytes,
    folder_tar_gz,
    kind_of,
    lstat_at,
    open_dir,
    open_file,
    open_root,
    read_chunks,
    rel_parts,
    tree,
    walk,
)

log = logging.getLogger(__name__)


class _Answer:
    def __init__(self, node: Any, xfer: str) -> None:
        self.node = node
        self.xfer = xfer
        self.key = xfer_key(xfer, "out")
        self.started = False
        self.sent = 0  # chunks so far (each sealed to its place)

    def _signed(self, t: str, **fields: Any) -> bytes:
        body = {"t": t, "xfer": self.xfer, "node": self.node.name, **fields}
        return json.dumps(sign(self.node.key, body)).encode()

    def head(self, *, stream: bool = False, **fields: Any) -> None:
        self.started = True
        push(self.node.redis, self.key, self._signed("h", ok=True, stream=stream, **fields))

    def fail(self, e: FilesError) -> None:
        if self.started:  # mid-stream: the end marker says so
            push(self.node.redis, self.key, self._signed("e", error=str(e)[:1000]))
            return
        self.started = True
        item = self._signed("h", ok=False, status=e.status, code=e.code, message=str(e)[:2000])
        push(self.node.redis, self.key, item)

    def stream(self, chunks: Iterator[bytes]) -> None:
        """The bytes in chunks of at most CHUNK (small pieces, such as a tar's headers of
        many small files, gathered: one Redis round trip per chunk), then the end marker."""
        h, size, buf = hashlib.sha256(), 0, bytearray()
        for piece in chunks:
            h.update(piece)
            size += len(piece)
            buf += piece
            while len(buf) >= CHUNK:
                self._chunk(bytes(buf[:CHUNK]))
                del buf[:CHUNK]
        if buf:
            self._chunk(bytes(buf))
        push(self.node.redis, self.key, self._signed("e", bytes=size, sha256=h.hexdigest()))

    def _chunk(self, data: bytes) -> None:
        where = chunk_context(self.xfer, "out", self.sent)
        push(self.node.redis, self.key, b"c" + seal(self.node.key, data, where))
        self.sent += 1


def serve_files(node: Any, body: dict[str, Any]) -> None:
    """One file operation of a signed request (run on the node's pool, never on Celery's
    thread). ``node``: the NodeWorker (name, key, redis, root, data)."""
    xfer = str(body.get("xfer", ""))
    if not XFER_ID.fullmatch(xfer):
        log.warning("node %s: a file request without a transfer id", node.name)
        return
    answer = _Answer(node, xfer)
    try:
        from sandbox.store.workspaces import check_workspace_name

        try:
            name = check_workspace_name(str(body.get("workspace", "")))
        except Exception as e:
            raise FilesError(str(e)) from None
        op = _OPS.get(str(body.get("op", "")))
        if op is None:
            raise FilesError(f"unknown file operation {body.get('op')!r}")
        op(node, node.root / name, body, answer)
    except FilesError as e:
        _try(answer.fail, e)
    except TransferFailed as e:  # the control plane went away: nothing to tell
        log.warning("node %s: transfer %s: %s", node.name, xfer, e)
    except Exception as e:
        log.exception("node %s: file operation failed", node.name)
        why = FilesError(
            f"node {node.name}: {type(e).__name__}: {e}", status=500, code="node_error"
        )
        _try(answer.fail, why)
    finally:
        with contextlib.suppress(Exception):
            node.redis.delete(xfer_key(xfer, "in"))


def _try(f: Any, *args: Any) -> None:
    try:
        f(*args)
    except Exception as e:
        log.warning("cannot answer a file request: %s", e)


def _ready(node: Any, ws: Path) -> None:
    from sandbox.cluster.worker import _own_workspace

    ws.mkdir(parents=True, exist_ok=True)
    _own_workspace(ws)


def _op_tree(node: Any, ws: Path, body: dict[str, Any], answer: _Answer) -> None:
    _ready(node, ws)
    listing = tree(ws, rel_parts(str(body.get("path", ""))), limit=int(body.get("limit", 1000)))
    answer.head(result=listing)


def _op_usage(node: Any, ws: Path, body: dict[str, Any], answer: _Answer) -> None:
    used, partial = folder_bytes(ws)
    answer.head(result={"bytes": used, "partial": partial})


def _op_get(node: Any, ws: Path, body: dict[str, Any], answer: _Answer) -> None:
    _ready(node, ws)
    parts = rel_parts(str(body.get("path", "")))
    max_bytes, max_entries = int(body["max_bytes"]), int(body["max_entries"])
    fd = open_root(ws)
    try:
        kind = kind_of(lstat_at(fd, parts).st_mode)
    finally:
        os.close(fd)
    if kind == "dir":
        chunks, total = folder_tar_gz(ws, parts, max_bytes=max_bytes, max_entries=max_entries)
        answer.head(stream=True, kind="dir", files_bytes=total)
        answer.stream(chunks)
        return
    ffd, size = open_file(ws, parts)  # 409 for a link or a special file
    if size > max_bytes:
        os.close(ffd)
        raise FilesError(
            f"the file is over {max_bytes} bytes (BASHFLEET_DOWNLOAD_MAX_BYTES)",
            status=413,
            code="too_large",
        )
    answer.head(stream=True, kind="file", size=size)
    answer.stream(read_chunks(ffd, size))


def _op_pack(node: Any, ws: Path, body: dict[str, Any], answer: _Answer) -> None:
    """The whole workspace; links are left out (an upload refuses them) and counted."""
    _ready(node, ws)
    max_bytes, max_entries = int(body["max_bytes"]), int(body["max_entries"])
    root_fd = open_root(ws)
    try:
        fd = open_dir(root_fd, ())
    finally:
        os.close(root_fd)
    try:
        members: list[Member] = []
        links = total = 0
        for m in walk(fd, max_entries=max_entries):
            if m.kind == "link":
                links += 1
                continue
            members.append(m)
            total += m.size
            if total > max_bytes or len(members) > max_entries:
                raise FilesError(
                    f"the workspace is over {max_bytes} bytes or {max_entries} entries",
                    status=413,
                    code="too_large",
                )
    except BaseException:
        os.close(fd)
        raise
    answer.head(stream=True, kind="dir", files_bytes=total, links_skipped=links)
    answer.stream(_tar_gz(fd, members))


def _receive(node: Any, body: dict[str, Any], dest: Path) -> None:
    """The upload's chunks into ``dest``; its size and sha256 as the signed request says."""
    want_size, want_sha = int(body["size"]), str(body["sha256"])
    xfer = str(body["xfer"])
    key = xfer_key(xfer, "in")
    h, size, seq = hashlib.sha256(), 0, 0
    with open(dest, "xb") as f:
        while size < want_size:
            try:
                chunk = unseal(node.key, pull(node.redis, key), chunk_context(xfer, "in", seq))
            except ForgedMessage as e:
                raise FilesError(
                    f"chunk {seq} of the upload was refused ({e}); nothing was written",
                    status=502,
                    code="checksum_mismatch",
                ) from e
            seq += 1
            size += len(chunk)
            if size > want_size:
                break
            h.update(chunk)
            f.write(chunk)
    if size != want_size or h.hexdigest() != want_sha:
        raise FilesError(
            "the upload's bytes do not match the checksum in its signed request; "
            "nothing was written",
            status=502,
            code="checksum_mismatch",
        )


def _limits(body: dict[str, Any]) -> UploadLimits:
    raw, default = body.get("limits") or {}, UploadLimits()
    return UploadLimits(
        max_bytes=int(raw.get("max_bytes", default.max_bytes)),
        extracted_bytes=int(raw.get("extracted_bytes", default.extracted_bytes)),
        entries=int(raw.get("entries", default.entries)),
    )


def _scratch(node: Any, xfer: str) -> Path:
    tmp = Path(node.data) / "tmp" / "xfer"
    tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
    return tmp / xfer


def _op_put(node: Any, ws: Path, body: dict[str, Any], answer: _Answer) -> None:
    _ready(node, ws)
    base = _scratch(node, str(body["xfer"]))
    upload = base.with_suffix(".upload")
    try:
        _receive(node, body, upload)
        limits = _limits(body)
        kind = detect(upload, body.get("format") or None)
        entries = plan(upload, kind, limits, body.get("name") or None)
        target = rel_parts(str(body.get("path", "")))
        staging = base.with_suffix(".d")
        done = install(
            upload, kind, entries, workspace=ws, target=target, staging=staging, limits=limits
        )
    finally:
        upload.unlink(missing_ok=True)
    answer.head(result={"format": kind, **done})


def _op_restore(node: Any, ws: Path, body: dict[str, Any], answer: _Answer) -> None:
    """A packed workspace (or none: empty) into a fresh folder, checked whole before it is
    unpacked, which then takes the old folder's place."""
    xfer = str(body["xfer"])
    base = _scratch(node, xfer)
    fresh = node.root / f".restore-{xfer}"
    upload = base.with_suffix(".upload")
    done = {"files": 0, "folders": 0, "bytes": 0}
    try:
        fresh.mkdir()
        _ready(node, fresh)
        if "sha256" in body:
            _receive(node, body, upload)
            limits = _limits(body)
            entries = plan(upload, "tar", limits)
            done = install(
                upload,
                "tar",
                entries,
                workspace=fresh,
                target=(),
                staging=base.with_suffix(".d"),
                limits=limits,
            )
        _replace(node, ws, fresh, xfer)
    finally:
        upload.unlink(missing_ok=True)
        shutil.rmtree(fresh, ignore_errors=True)
    answer.head(result=done)


def _replace(node: Any, ws: Path, fresh: Path, xfer: str) -> None:
    old = node.root / f".old-{xfer}"
    with contextlib.suppress(FileNotFoundError):
        os.rename(ws, old)
    os.rename(fresh, ws)
    shutil.rmtree(old, ignore_errors=True)


def sweep(root: Path, data: Path) -> None:
    """At a node's start: what a transfer cut short left behind. A restore or a drop only
    ever works on a folder that is not the workspace's home, so all of it is garbage."""
    for left in (
        *root.glob(".restore-*"),
        *root.glob(".old-*"),
        *(data / "tmp" / "xfer").glob("*"),
    ):
        if left.is_dir() and not left.is_symlink():
            shutil.rmtree(left, ignore_errors=True)
        else:
            left.unlink(missing_ok=True)


def _op_drop(node: Any, ws: Path, body: dict[str, Any], answer: _Answer) -> None:
    old = node.root / f".old-{body['xfer']}"
    with contextlib.suppress(FileNotFoundError):
        os.rename(ws, old)
    shutil.rmtree(old, ignore_errors=True)
    answer.head(result={})


_OPS = {
    "tree": _op_tree,
    "usage": _op_usage,
    "get": _op_get,
    "put": _op_put,
    "pack": _op_pack,
    "restore": _op_restore,
    "drop": _op_drop,
}
