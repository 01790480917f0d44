"""The files API in cluster mode: ``Service.files`` when the portal has a broker.

A workspace's files live on its node, so listing, reading, measuring and writing them is
a request to that node (transfer.py); a workspace without a node is placed first, as a
submission would place it. Everything the control plane can decide alone stays here and
unchanged: access, the busy and quota checks, the whole-archive check of an upload
(which the node repeats before it writes), the limits and the answers. A workspace being
moved takes no upload (409 ``moving``); reads go to the node it is still on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sandbox.cluster.transfer import TransferFailed
from sandbox.store import WorkspaceRecord
from sandbox.workspace_files import FilesError, rel_parts
from sandbox.workspace_io import WorkspaceIO


class ClusterFiles(WorkspaceIO):
    def __init__(self, *args: Any, plane: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plane = plane
        self.moving: Any = None  # set by the service: name -> is a move under way

    def _node(self, ws: WorkspaceRecord) -> str:
        return str(self.plane.place(ws.name))  # 503 when no node is live

    def upload(self, ws: WorkspaceRecord, body: IO[bytes], **kwargs: Any) -> dict[str, Any]:
        if self.moving is not None and self.moving(ws.name):
            raise FilesError(
                f"workspace {ws.name!r} is being moved to another node; upload when the "
                "move has ended",
                status=409,
                code="moving",
            )
        return super().upload(ws, body, **kwargs)

    def _install(
        self,
        ws: WorkspaceRecord,
        body_path: Path,
        kind: str,
        entries: list[Any],
        target: tuple[str, ...],
        fmt: str | None,
        name: str | None,
        token: str,
    ) -> dict[str, int]:
        limits = {
            "max_bytes": self.uploads.max_bytes,
            "extracted_bytes": self.uploads.extracted_bytes,
            "entries": self.uploads.entries,
        }
        head, _ = self.plane.files().call(
            self._node(ws),
            "put",
            ws.name,
            upload=body_path,
            path="/".join(target),
            format=kind,
            name=name or "",
            limits=limits,
        )
        result = head.get("result") or {}
        return {k: int(result.get(k, 0)) for k in ("files", "folders", "bytes")}

    def tree(self, ws: WorkspaceRecord, path: str) -> dict[str, Any]:
        rel_parts(path)  # 400 here, before any request
        head, _ = self.plane.files().call(
            self._node(ws), "tree", ws.name, path=path, limit=self.downloads.tree_entries
        )
        return dict(head["result"])

    def download(self, ws: WorkspaceRecord, path: str) -> tuple[str, Iterator[bytes], int | None]:
        rel_parts(path)
        head, chunks = self.plane.files().call(
            self._node(ws),
            "get",
            ws.name,
            path=path,
            max_bytes=self.downloads.max_bytes,
            max_entries=self.downloads.max_entries,
        )
        if head.get("kind") == "dir":
            return "dir", chunks, None
        return "file", chunks, int(head["size"])

    def folder_bytes(self, ws: WorkspaceRecord) -> tuple[int, bool]:
        node = self.plane.placement.get(ws.name)
        if node is None:
            return 0, False  # never placed: nothing on any node yet
        try:
            head, _ = self.plane.files().call(node, "usage", ws.name)
        except TransferFailed:
            return 0, True  # its node is lost or silent: the count is partial
        return int(head["result"]["bytes"]), bool(head["result"]["partial"])
