"""Workspace files on the nodes, through the broker: the files API in cluster mode and
workspace moves (move.py) ask the node where a workspace lives to list, read, write,
pack or restore it.

    control plane                            Redis                           node NAME
    FileChannel.call(node, op, ...) --- signed {"kind": "files", "op", "xfer"} ---> serve_files
      (an upload: its sha256 and size      list bashfleet:xfer:ID:in  ------> chunks in
       are in the signed message)
    header, chunks, end    <------------ list bashfleet:xfer:ID:out <------- signed header,
                                                                            chunks, signed end

The request travels like a job (Celery queue, ``sign``/``verify``, the node's nonce check:
a forged one is refused and audited as ``cluster_message_refused``). Bytes travel in
chunks of at most 1 MiB under a random transfer id, at most ``WINDOW`` chunks waiting
(the sender waits for the reader), keys expiring after ``TTL_S``. The node signs its
header and its end marker (bytes and sha256), and the reader checks the bytes it got
against them; the node checks an upload against the sha256 in the signed request.

Node operations (``op``): ``tree``, ``usage``, ``get`` (a file, or a folder as .tar.gz),
``put`` (an upload: the same checks as embedded, sandbox/uploads.py), ``pack`` (the whole
workspace as .tar.gz, links left out and counted), ``restore`` (a packed workspace into a
fresh folder that then replaces the old one; none: an empty one) and ``drop``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from sandbox.cluster import wire
from sandbox.cluster.signing import ForgedMessage, sign, verify
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

XFER_KEY = "bashfleet:xfer:"  # + ID + ":in" (to the node) or ":out" (from it)
XFER_ID = re.compile(r"[0-9a-f]{32}")
TTL_S = 120  # a transfer's keys expire this long after their last chunk
WINDOW = 16  # chunks waiting in a list before the sender waits
STALL_S = 60.0  # no progress for this long: the transfer fails
POLL_S = 0.005
WORK_S = 900.0  # how long a node may take to unpack an upload before it answers


class TransferFailed(FilesError):
    """The node did not answer, refused, or sent bytes that do not match (HTTP 502/503)."""

    def __init__(self, message: str, *, status: int = 502, code: str = "node_unavailable") -> None:
        super().__init__(message, status=status, code=code)


def _key(xfer: str, way: str) -> str:
    return f"{XFER_KEY}{xfer}:{way}"


def _push(client: Any, key: str, item: bytes, *, alive: Any = None) -> None:
    """Append one item; wait while the reader has ``WINDOW`` items to take."""
    pipe = client.pipeline(transaction=False)
    pipe.rpush(key, item)
    pipe.expire(key, TTL_S)
    length = pipe.execute()[0]
    if length < WINDOW:
        return
    deadline = time.monotonic() + STALL_S
    while client.llen(key) >= WINDOW // 2:
        if time.monotonic() > deadline or (alive is not None and not alive()):
            client.delete(key)
            raise TransferFailed("the other side stopped reading the transfer")
        time.sleep(POLL_S)


def _pull(client: Any, key: str, *, alive: Any = None, stall_s: float = STALL_S) -> bytes:
    deadline = time.monotonic() + stall_s
    while True:
        got = client.blpop([key], timeout=1)
        if got is not None:
            return bytes(got[1])
        if time.monotonic() > deadline:
            raise TransferFailed(f"no answer for {stall_s:g} s", status=504, code="node_timeout")
        if alive is not None and not alive():
            raise TransferFailed("the node was lost during the transfer", status=503)


def file_digest(path: Path) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


# --- the control plane's side ----------------------------------------------------------------


class FileChannel:
    """Ask a node about one of its workspaces (``ControlPlane.files()``)."""

    def __init__(self, plane: Any) -> None:
        self.plane = plane
        self.redis = wire.redis_client(plane.broker, timeout_s=10.0)

    def call(
        self,
        node: str,
        op: str,
        workspace: str,
        *,
        upload: Path | None = None,
        **args: Any,
    ) -> tuple[dict[str, Any], Iterator[bytes]]:
        """Send the request (and the upload); the node's header, and an iterator over the
        bytes that follow (empty for tree/usage/put/restore/drop; it checks the size and
        the sha256 at its end and raises TransferFailed if they do not match)."""
        if not self.plane.is_live(node):
            raise TransferFailed(f"node {node} is not live", status=503)
        xfer = secrets.token_hex(16)
        body: dict[str, Any] = {
            "kind": "files",
            "node": node,
            "op": op,
            "xfer": xfer,
            "workspace": workspace,
            **args,
        }
        if upload is not None:
            body["size"], body["sha256"] = file_digest(upload)
        try:
            head = self._ask(node, xfer, body, upload)
        except RedisError as e:
            raise TransferFailed(f"the broker does not answer ({e})", status=503) from e
        if head.get("t") != "h":
            raise TransferFailed(f"node {node} answered out of order")
        if not head.get("ok"):
            status = int(head.get("status", 502))
            raise FilesError(
                str(head.get("message", "refused"))[:2000],
                status=502 if status == 500 else status,  # the node's fault, not the portal's
                code=str(head.get("code", "node_error")),
            )
        if not head.get("stream"):
            return head, iter(())
        return head, self._receive(node, xfer)

    def _ask(
        self, node: str, xfer: str, body: dict[str, Any], upload: Path | None
    ) -> dict[str, Any]:
        try:
            self.plane._publish(node, body)
        except Exception as e:
            raise TransferFailed(f"cannot reach the broker: {e}", status=503) from e
        out = _key(xfer, "out")
        try:
            if upload is not None:
                self._send(node, xfer, upload)
            # unpacking a large upload may take the node a while: it is waited for as long
            # as the node heartbeats
            wait_s = WORK_S if upload is not None else STALL_S
            answer = _pull(self.redis, out, alive=self._alive(node), stall_s=wait_s)
            head = self._signed(node, xfer, answer)
        except BaseException:
            with contextlib.suppress(Exception):
                self.redis.delete(_key(xfer, "in"), out)
            raise
        if not head.get("stream"):
            self.redis.delete(out)
        return head

    def _alive(self, node: str) -> Any:
        return lambda: self.plane.is_live(node)

    def _send(self, node: str, xfer: str, path: Path) -> None:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                _push(self.redis, _key(xfer, "in"), chunk, alive=self._alive(node))

    def _receive(self, node: str, xfer: str) -> Iterator[bytes]:
        key = _key(xfer, "out")
        h, size = hashlib.sha256(), 0
        try:
            while True:
                item = _pull(self.redis, key, alive=self._alive(node))
                if item[:1] == b"c":
                    h.update(item[1:])
                    size += len(item) - 1
                    yield item[1:]
                    continue
                end = self._signed(node, xfer, item)
                if end.get("t") != "e":
                    raise TransferFailed(f"node {node} answered out of order")
                if end.get("error"):
                    raise TransferFailed(f"node {node}: {end['error']}")
                if end.get("bytes") != size or end.get("sha256") != h.hexdigest():
                    raise TransferFailed(
                        f"the bytes from node {node} do not match its checksum "
                        f"({size} received, {end.get('bytes')} sent)",
                        code="checksum_mismatch",
                    )
                return
        except RedisError as e:
            raise TransferFailed(f"the broker does not answer ({e})", status=503) from e
        finally:
            with contextlib.suppress(Exception):
                self.redis.delete(key)

    def _signed(self, node: str, xfer: str, item: bytes) -> dict[str, Any]:
        if item[:1] != b"{":
            raise TransferFailed(f"node {node} answered out of order")
        try:
            body = verify(self.plane.key, json.loads(item))
            if body.get("xfer") != xfer or body.get("node") != node:
                raise ForgedMessage("an answer to another transfer")
        except (ForgedMessage, ValueError) as e:
            with contextlib.suppress(Exception):
                self.plane.audit.append(
                    "cluster_message_refused",
                    actor="control",
                    target=xfer,
                    detail={"node": node, "reason": f"transfer answer: {e}"[:500]},
                )
            raise TransferFailed(f"an answer from node {node} was refused: {e}") from e
        return body

    def fetch(self, node: str, op: str, workspace: str, dest: Path, **args: Any) -> dict[str, Any]:
        """A streamed answer into ``dest``; the header plus ``bytes`` and ``sha256``."""
        head, chunks = self.call(node, op, workspace, **args)
        h, size = hashlib.sha256(), 0
        with open(dest, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                h.update(chunk)
                size += len(chunk)
        return {**head, "bytes": size, "sha256": h.hexdigest()}


# --- the node's side -------------------------------------------------------------------------


class _Answer:
    def __init__(self, node: Any, xfer: str) -> None:
        self.node = node
        self.xfer = xfer
        self.key = _key(xfer, "out")
        self.started = False

    def _signed(self, t: str, **fields: Any) -> bytes:
        body = {"t": t, "xfer": self.xfer, "node": self.node.name, **fields}
        return json.dumps(sign(self.node.key, body)).encode()

    def head(self, *, stream: bool = False, **fields: Any) -> None:
        self.started = True
        _push(self.node.redis, self.key, self._signed("h", ok=True, stream=stream, **fields))

    def fail(self, e: FilesError) -> None:
        if self.started:  # mid-stream: the end marker says so
            _push(self.node.redis, self.key, self._signed("e", error=str(e)[:1000]))
            return
        self.started = True
        item = self._signed("h", ok=False, status=e.status, code=e.code, message=str(e)[:2000])
        _push(self.node.redis, self.key, item)

    def stream(self, chunks: Iterator[bytes]) -> None:
        """The bytes in chunks of at most CHUNK (small pieces, such as a tar's headers of
        many small files, gathered: one Redis round trip per chunk), then the end marker."""
        h, size, buf = hashlib.sha256(), 0, bytearray()
        for piece in chunks:
            h.update(piece)
            size += len(piece)
            buf += piece
            while len(buf) >= CHUNK:
                _push(self.node.redis, self.key, b"c" + bytes(buf[:CHUNK]))
                del buf[:CHUNK]
        if buf:
            _push(self.node.redis, self.key, b"c" + bytes(buf))
        _push(self.node.redis, self.key, self._signed("e", bytes=size, sha256=h.hexdigest()))


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
            node.redis.delete(_key(xfer, "in"))


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
    key = _key(str(body["xfer"]), "in")
    h, size = hashlib.sha256(), 0
    with open(dest, "xb") as f:
        while size < want_size:
            chunk = _pull(node.redis, key)
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
