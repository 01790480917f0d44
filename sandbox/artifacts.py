"""Artifacts: files a batch names (``["dist/*.whl", "report.html"]``), copied out of its
workspace when it ends (any final status) into DATA/artifacts/<batch_id>/ and recorded
(path, size, sha256), so they outlive later changes to the workspace.

Globs are relative to the workspace: ``*`` and ``?`` stay within one folder, ``**``
crosses folders. Only regular files are copied; no symlink is followed (a link matching
a glob is left out, a linked folder is not entered). Copying runs on the collector's own
thread, never on the scheduler's.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import re
import shutil
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import InputError
from sandbox.events import BatchFinished, Event
from sandbox.store import Store
from sandbox.store.ids import check_id
from sandbox.workspace_files import (
    CHUNK,
    DIR_FLAGS,
    FILE_FLAGS,
    FilesError,
    open_dir,
    rel_parts,
    text,
    walk,
)

log = logging.getLogger(__name__)
ARTIFACTS = "artifacts"
MAX_PATTERNS = 20


@dataclass(frozen=True, slots=True)
class ArtifactLimits:
    max_files: int = 1000  # per batch
    max_bytes: int = 1 << 30  # per batch
    max_walk: int = 100_000  # entries looked at in the workspace


def check_patterns(value: object) -> tuple[str, ...]:
    """The ``artifacts`` of a submission: a list of at most MAX_PATTERNS relative globs."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(p, str) for p in value):
        raise InputError('`artifacts` is a list of globs, e.g. ["dist/*.whl", "report.html"]')
    if len(value) > MAX_PATTERNS:
        raise InputError(f"`artifacts`: at most {MAX_PATTERNS} globs")
    out = []
    for p in value:
        if not p.strip() or len(p) > 255:
            raise InputError("`artifacts`: each glob has 1 to 255 characters")
        try:
            rel_parts(p, "`artifacts`", absolute_ok=False)
        except FilesError as e:
            raise InputError(str(e)) from None
        out.append(p)
    return tuple(out)


def _regex(pattern: str) -> re.Pattern[str]:
    parts = [p for p in pattern.split("/") if p and p != "."]
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
            continue
        text = ""
        for c in part:
            text += "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
        out.append(text if last else text + "/")
    return re.compile("".join(out))


def matches(patterns: Sequence[str], path: str) -> bool:
    return any(_regex(p).fullmatch(path) for p in patterns)


def artifact_root(data_dir: Path) -> Path:
    return data_dir.resolve() / ARTIFACTS


def collect(
    workspace: Path,
    patterns: Sequence[str],
    dest: Path,
    limits: ArtifactLimits,
) -> list[tuple[str, int, str]]:
    """Copy the workspace's regular files matching ``patterns`` into ``dest`` (made here);
    (path, size, sha256) of each. Stops at the limits (what fits is kept, and logged)."""
    if not patterns:
        return []
    regexes = [_regex(p) for p in patterns]
    try:
        ws_fd = os.open(workspace, DIR_FLAGS)
    except OSError as e:
        log.warning("artifacts: workspace %s unusable: %s", workspace, e)
        return []
    found: list[tuple[str, int, str]] = []
    total = 0
    try:
        dest.mkdir(parents=True, exist_ok=True)
        dest_fd = os.open(dest, DIR_FLAGS)
        try:
            for m in _files(ws_fd, limits.max_walk):
                rel = "/".join(m)
                if not any(r.fullmatch(rel) for r in regexes) or text(rel) != rel:
                    continue  # (a name that is not UTF-8 cannot be stored or asked for)
                if len(found) >= limits.max_files:
                    log.warning("artifacts: more than %d files; the rest left", limits.max_files)
                    break
                copied = _copy(ws_fd, m, dest_fd, limits.max_bytes - total)
                if copied is None:
                    continue
                found.append((rel, *copied))
                total += copied[0]
        finally:
            os.close(dest_fd)
    finally:
        os.close(ws_fd)
    return found


def _files(ws_fd: int, max_walk: int) -> Iterator[tuple[str, ...]]:
    try:
        for m in walk(ws_fd, max_entries=max_walk):
            if m.kind == "file":
                yield m.parts
    except FilesError as e:
        log.warning("artifacts: %s", e)


def _copy(ws_fd: int, parts: tuple[str, ...], dest_fd: int, room: int) -> tuple[int, str] | None:
    try:
        sfd = open_dir(ws_fd, parts[:-1])
    except FilesError:
        return None
    try:
        src = os.open(parts[-1], FILE_FLAGS, dir_fd=sfd)
    except OSError:
        return None
    finally:
        os.close(sfd)
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > room:
            log.warning("artifacts: %s is over the size left (%d bytes)", "/".join(parts), room)
            return None
        dfd = open_dir(dest_fd, parts[:-1], create=True)
        try:
            dst = os.open(
                parts[-1],
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o640,
                dir_fd=dfd,
            )
        finally:
            os.close(dfd)
        digest, size = hashlib.sha256(), 0
        try:
            while size < st.st_size and (chunk := os.read(src, min(CHUNK, st.st_size - size))):
                digest.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dst, view) :]
        finally:
            os.close(dst)
        return size, digest.hexdigest()
    finally:
        os.close(src)


class ArtifactCollector:
    """Subscribed to the event bus: a finished batch with artifact globs is queued, and
    its files are copied by this collector's thread. ``wait(batch_id)`` until done."""

    def __init__(
        self,
        store: Store,
        data_dir: Path,
        limits: ArtifactLimits,
    ) -> None:
        self.store = store
        self.root = artifact_root(data_dir)
        self.limits = limits
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._pending: set[str] = set()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="bashfleet-artifacts", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        if isinstance(event, BatchFinished):
            with self._cond:
                self._pending.add(event.batch_id)
            self._queue.put(event.batch_id)

    def wait(self, batch_id: str, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: batch_id not in self._pending, timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while (batch_id := self._queue.get()) is not None:
            try:
                self.collect(batch_id)  # the globs were stored with the batch
            except Exception:
                log.exception("artifacts of %s: not collected", batch_id)
            finally:
                with self._cond:
                    self._pending.discard(batch_id)
                    self._cond.notify_all()

    def collect(self, batch_id: str) -> int:
        batch = self.store.batches.get(batch_id)
        if not batch.artifact_patterns or self.store.artifacts.list(batch_id):
            return 0
        workspace = self.store.workspaces.get(batch.workspace_id)
        dest = self.root / check_id(batch_id, "batch id")
        items = collect(workspace.path, batch.artifact_patterns, dest, self.limits)
        return self.store.artifacts.add(batch_id, items)

    def remove(self, batch_id: str) -> None:
        path = self.root / check_id(batch_id, "batch id")
        if path.is_symlink():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
        self.store.artifacts.remove(batch_id)

    def open(self, batch_id: str, path: str) -> tuple[int, int]:
        """(descriptor, size) of a stored artifact, opened without following links."""
        from sandbox.workspace_files import open_file

        return open_file(self.root / check_id(batch_id, "batch id"), rel_parts(path))
