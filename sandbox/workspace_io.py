"""Files in and out of workspaces, and what they use on disk: the part of the service
the files API calls (``Service.files``). Access checks are the caller's.

    io.upload(ws, body, path="src", fmt=None, name=None)  # -> {"files", "folders", "bytes"}
    io.tree(ws, "src"); io.open_file(ws, "a.txt"); io.folder(ws, "src")
    io.usage(ws)  # -> {"workspace_bytes", "output_bytes", "artifact_bytes", ...}

An upload while a batch of that workspace is pending, queued or running is refused
(409): the batch would see half an upload, and a command could swap a folder for a
link between the check and the move. Two uploads into one workspace do not overlap
either (409), and a batch submitted into a workspace while an upload is under way is
refused (``Service.submit``, 409).

A team's ``max_bytes`` (``io.team_bytes(team_id)``: the usage below summed over its
workspaces, cached ``TEAM_BYTES_TTL_S``) is enforced: an upload whose unpacked files
would take the team past it is refused before anything is written (413
``quota_exceeded``), and ``Service.submit`` refuses batches into a team workspace that is
already over it (429).
"""

from __future__ import annotations

import errno
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sandbox.store import Store, WorkspaceRecord
from sandbox.store.batches import UNFINISHED
from sandbox.uploads import UploadLimits, detect, install, plan, receive
from sandbox.workspace_files import (
    FilesError,
    folder_bytes,
    folder_tar_gz,
    kind_of,
    lstat_at,
    open_file,
    open_root,
    read_chunks,
    rel_parts,
    tree,
)


class QuotaFull(FilesError):
    """A team's ``max_bytes`` would be passed."""


TEAM_BYTES_TTL_S = 5.0  # how long a team's measured bytes are reused


@dataclass(frozen=True, slots=True)
class DownloadLimits:
    max_bytes: int = 1 << 30  # a folder's files, before compression
    max_entries: int = 100_000
    tree_entries: int = 1000


class WorkspaceIO:
    def __init__(
        self,
        store: Store,
        data_dir: Path,
        uploads: UploadLimits,
        downloads: DownloadLimits,
        *,
        busy: Callable[[WorkspaceRecord], bool] | None = None,
    ) -> None:
        self.store = store
        self.tmp = data_dir.resolve() / "tmp" / "uploads"
        self.uploads = uploads
        self.downloads = downloads
        self.busy = busy or self._has_unfinished
        self._uploading: set[int] = set()
        self._lock = threading.Lock()
        self._team_bytes: dict[int, tuple[float, int]] = {}  # team id -> (when, bytes)

    def uploading(self, workspace_id: int) -> bool:
        with self._lock:
            return workspace_id in self._uploading

    def _has_unfinished(self, ws: WorkspaceRecord) -> bool:
        page = self.store.batches.list(workspace_id=ws.id, status=list(UNFINISHED), limit=1)
        return page.total > 0

    def upload(
        self,
        ws: WorkspaceRecord,
        body: IO[bytes],
        *,
        path: str = "",
        fmt: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        target = rel_parts(path)
        if fmt is not None and fmt.lower() not in ("tar", "tgz", "tar.gz", "gz", "zip", "file"):
            raise FilesError("`format` is tar, tgz, tar.gz, zip or file")
        with self._lock:
            if ws.id in self._uploading:
                raise FilesError(
                    f"another upload into {ws.name!r} is under way; retry when it is done",
                    status=409,
                    code="busy",
                )
            self._uploading.add(ws.id)
        try:
            if self.busy(ws):
                raise FilesError(
                    f"a batch is pending or running in {ws.name!r}; upload when it has ended",
                    status=409,
                    code="busy",
                )
            self.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
            token = secrets.token_hex(8)
            body_path = self.tmp / f"{token}.upload"
            try:
                received = receive(body, body_path, self.uploads.max_bytes)
                kind, done = self._unpack(ws, body_path, target, fmt, name, token)
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                raise FilesError(
                    "the server's disk is full; the upload was not written",
                    status=507,
                    code="storage_full",
                ) from None
            finally:
                body_path.unlink(missing_ok=True)
        finally:
            with self._lock:
                self._uploading.discard(ws.id)
                if ws.owner_team_id is not None:
                    self._team_bytes.pop(ws.owner_team_id, None)
        return {"path": "/".join(target) or ".", "format": kind, "received": received, **done}

    def _unpack(
        self,
        ws: WorkspaceRecord,
        body_path: Path,
        target: tuple[str, ...],
        fmt: str | None,
        name: str | None,
        token: str,
    ) -> tuple[str, dict[str, int]]:
        kind = detect(body_path, fmt)
        entries = plan(body_path, kind, self.uploads, name)
        self.check_team_bytes(ws, sum(e.size for e in entries if e.kind == "file"))
        return kind, self._install(ws, body_path, kind, entries, target, fmt, name, token)

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
        """Write the checked upload into the workspace (a cluster: on its node)."""
        return install(
            body_path,
            kind,
            entries,
            workspace=ws.path,
            target=target,
            staging=self.tmp / f"{token}.d",
            limits=self.uploads,
        )

    def tree(self, ws: WorkspaceRecord, path: str) -> dict[str, Any]:
        return tree(ws.path, rel_parts(path), limit=self.downloads.tree_entries)

    def kind(self, ws: WorkspaceRecord, path: str) -> str:
        """What ``path`` is: file, dir, link or other (404 if missing)."""
        fd = open_root(ws.path)
        try:
            return kind_of(lstat_at(fd, rel_parts(path)).st_mode)
        finally:
            os.close(fd)

    def open_file(self, ws: WorkspaceRecord, path: str) -> tuple[int, int]:
        fd, size = open_file(ws.path, rel_parts(path))
        if size > self.downloads.max_bytes:
            os.close(fd)
            raise FilesError(
                f"the file is over {self.downloads.max_bytes} bytes (BASHFLEET_DOWNLOAD_MAX_BYTES)",
                status=413,
                code="too_large",
            )
        return fd, size

    def folder(self, ws: WorkspaceRecord, path: str) -> tuple[Iterator[bytes], int]:
        return folder_tar_gz(
            ws.path,
            rel_parts(path),
            max_bytes=self.downloads.max_bytes,
            max_entries=self.downloads.max_entries,
        )

    def download(self, ws: WorkspaceRecord, path: str) -> tuple[str, Iterator[bytes], int | None]:
        """("dir", a .tar.gz, None) or ("file", its bytes, its size); 404, 409 (a link or a
        special file) and 413 as FilesError."""
        if self.kind(ws, path) == "dir":
            chunks, _total = self.folder(ws, path)
            return "dir", chunks, None
        fd, size = self.open_file(ws, path)
        return "file", read_chunks(fd, size), size

    def folder_bytes(self, ws: WorkspaceRecord) -> tuple[int, bool]:
        return folder_bytes(ws.path)

    def usage(self, ws: WorkspaceRecord) -> dict[str, Any]:
        """Bytes on disk: the workspace folder (regular files, links not followed), and what
        the store keeps for its batches (output, artifacts)."""
        folder, partial = self.folder_bytes(ws)
        stored = self.store.artifacts.stored_bytes(ws.id)
        artifacts = self.store.artifacts.artifact_bytes(ws.id)
        total_stored = sum(stored.values())
        return {
            "workspace": ws.name,
            "workspace_bytes": folder,
            "workspace_bytes_partial": partial,
            "output_bytes": total_stored - artifacts,
            "artifact_bytes": artifacts,
            "batches": len(stored),
        }

    @staticmethod
    def total(usage: dict[str, Any]) -> int:
        return int(usage["workspace_bytes"] + usage["output_bytes"] + usage["artifact_bytes"])

    def team_bytes(self, team_id: int, *, fresh: bool = False) -> int:
        """The bytes of a team's workspaces (folders, stored output, artifacts), measured
        at most every ``TEAM_BYTES_TTL_S`` unless ``fresh``."""
        now = time.monotonic()
        with self._lock:
            cached = self._team_bytes.get(team_id)
        if cached is not None and not fresh and now - cached[0] < TEAM_BYTES_TTL_S:
            return cached[1]
        used = 0
        for workspace_id in self.store.workspaces.of_team(team_id):
            used += self.total(self.usage(self.store.workspaces.get(workspace_id)))
        with self._lock:
            self._team_bytes[team_id] = (now, used)
        return used

    def check_team_bytes(self, ws: WorkspaceRecord, adding: int) -> None:
        """QuotaFull (413) when ``adding`` bytes would take ``ws``'s team past its
        ``max_bytes``."""
        if ws.owner_team_id is None:
            return
        team = self.store.teams.get(ws.owner_team_id)
        if team.max_bytes is None:
            return
        used = self.team_bytes(team.id, fresh=True)
        if used + adding > team.max_bytes:
            raise QuotaFull(
                f"team {team.name} may store {team.max_bytes} bytes; it stores {used} and "
                f"this upload unpacks to {adding}: nothing was written; delete files or old "
                "batches, or ask an admin to raise the quota",
                status=413,
                code="quota_exceeded",
            )
