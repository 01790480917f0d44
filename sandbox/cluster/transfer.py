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
against them; the node checks an upload against the sha256 in the signed request. Every
chunk is sealed (AES-256-GCM under the node's key, bound to its transfer, direction and
place in the sequence): a workspace's files are not readable in Redis, nor can a chunk be
swapped, dropped or moved unnoticed.

Node operations (``op``): ``tree``, ``usage``, ``get`` (a file, or a folder as .tar.gz),
``put`` (an upload: the same checks as embedded, sandbox/uploads.py), ``pack`` (the whole
workspace as .tar.gz, links left out and counted), ``restore`` (a packed workspace into a
fresh folder that then replaces the old one; none: an empty one) and ``drop``; they are
in node_files.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from sandbox.cluster import wire
from sandbox.cluster.signing import ForgedMessage, seal, unseal, verify
from sandbox.workspace_files import CHUNK, FilesError

log = logging.getLogger(__name__)

XFER_KEY = "bashfleet:xfer:"  # + ID + ":in" (to the node) or ":out" (from it)
XFER_ID = re.compile(r"[0-9a-f]{32}")
TTL_S = 120  # a transfer's keys expire this long after their last chunk
WINDOW = 16  # chunks waiting in a list before the sender waits
STALL_S = 60.0  # no progress for this long: the transfer fails
PUBLISH_WAIT_S = 5.0  # a request that has not left the outbox by then is not waited for
POLL_S = 0.005
WORK_S = 900.0  # how long a node may take to unpack an upload before it answers


class TransferFailed(FilesError):
    """The node did not answer, refused, or sent bytes that do not match (HTTP 502/503)."""

    def __init__(self, message: str, *, status: int = 502, code: str = "node_unavailable") -> None:
        super().__init__(message, status=status, code=code)


def xfer_key(xfer: str, way: str) -> str:
    return f"{XFER_KEY}{xfer}:{way}"


def chunk_context(xfer: str, way: str, seq: int) -> bytes:
    """What a sealed chunk is bound to: its transfer, its direction, its place."""
    return f"xfer:{xfer}:{way}:{seq}".encode()


def push(client: Any, key: str, item: bytes, *, alive: Any = None) -> None:
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


def pull(client: Any, key: str, *, alive: Any = None, stall_s: float = STALL_S) -> bytes:
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
        failed: list[Exception] = []
        try:
            self.plane._publish(node, body, on_error=failed.append)
        except Exception as e:
            raise TransferFailed(f"cannot reach the broker: {e}", status=503) from e
        # the outbox sends from its own thread: wait for this request to leave, so that a
        # broker that cannot take it answers 503 now rather than after the stall timeout
        self.plane.outbox.flush(PUBLISH_WAIT_S)
        if failed:
            raise TransferFailed(f"cannot reach the broker: {failed[0]}", status=503)
        out = xfer_key(xfer, "out")
        try:
            if upload is not None:
                self._send(node, xfer, upload)
            # unpacking a large upload may take the node a while: it is waited for as long
            # as the node heartbeats
            wait_s = WORK_S if upload is not None else STALL_S
            answer = pull(self.redis, out, alive=self._alive(node), stall_s=wait_s)
            head = self._signed(node, xfer, answer)
        except BaseException:
            with contextlib.suppress(Exception):
                self.redis.delete(xfer_key(xfer, "in"), out)
            raise
        if not head.get("stream"):
            self.redis.delete(out)
        return head

    def _alive(self, node: str) -> Any:
        return lambda: self.plane.is_live(node)

    def _send(self, node: str, xfer: str, path: Path) -> None:
        key, seq = self.plane.node_key(node), 0
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                sealed = seal(key, chunk, chunk_context(xfer, "in", seq))
                push(self.redis, xfer_key(xfer, "in"), sealed, alive=self._alive(node))
                seq += 1

    def _receive(self, node: str, xfer: str) -> Iterator[bytes]:
        key = xfer_key(xfer, "out")
        h, size, seq = hashlib.sha256(), 0, 0
        try:
            while True:
                item = pull(self.redis, key, alive=self._alive(node))
                if item[:1] == b"c":
                    chunk = self._open(node, xfer, item[1:], seq)
                    seq += 1
                    h.update(chunk)
                    size += len(chunk)
                    yield chunk
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

    def _open(self, node: str, xfer: str, blob: bytes, seq: int) -> bytes:
        try:
            return unseal(self.plane.node_key(node), blob, chunk_context(xfer, "out", seq))
        except ForgedMessage as e:
            self._refused(node, xfer, f"chunk {seq}: {e}")
            raise TransferFailed(f"a chunk from node {node} was refused: {e}") from e

    def _refused(self, node: str, xfer: str, reason: str) -> None:
        with contextlib.suppress(Exception):
            self.plane.audit.append(
                "cluster_message_refused",
                actor="control",
                target=xfer,
                detail={"node": node, "reason": f"transfer answer: {reason}"[:500]},
            )

    def _signed(self, node: str, xfer: str, item: bytes) -> dict[str, Any]:
        if item[:1] != b"{":
            raise TransferFailed(f"node {node} answered out of order")
        try:
            body = verify(self.plane.node_key(node), json.loads(item))
            if body.get("xfer") != xfer or body.get("node") != node:
                raise ForgedMessage("an answer to another transfer")
        except (ForgedMessage, ValueError) as e:
            self._refused(node, xfer, str(e))
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
