"""Command output on disk: DATA/output/<batch_id>/<command_id>.<stream>, append-only.

One writer process per data folder (the server). Open write handles are kept in
a small LRU so a batch of 1,000 commands does not hold 2,000 descriptors; each
handle has its own lock, so appends to different commands run in parallel and
appends to one command get consecutive offsets. Ids are checked (no "/", no
"..") and every path component is opened with O_NOFOLLOW relative to its parent
directory's descriptor, so a symlink planted in the folder is never followed.
No fsync per write: output is a log, the database holds the state.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from sandbox.errors import InputError
from sandbox.store.ids import check_id

STREAMS = ("stdout", "stderr")
OUTPUT = "output"
DEFAULT_MAX_OPEN = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC

Key = tuple[str, str, str]


@dataclass
class _Handle:
    fd: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False


class OutputStore:
    def __init__(self, data_dir: str | os.PathLike[str], *, max_open: int = DEFAULT_MAX_OPEN):
        self.root = Path(data_dir).resolve() / OUTPUT
        self._max_open = max(1, max_open)
        self._handles: OrderedDict[Key, _Handle] = OrderedDict()
        self._lock = threading.Lock()

    def append(self, batch_id: str, command_id: str, stream: str, data: bytes) -> int:
        """Append ``data``; returns the offset where it starts."""
        key = _key(batch_id, command_id, stream)
        if not data:
            return self.size(batch_id, command_id, stream)
        while True:
            handle = self._handle(key)
            with handle.lock:
                if handle.closed:  # evicted between lookup and lock: open again
                    continue
                view = memoryview(data)
                while view:
                    written = os.write(handle.fd, view)
                    view = view[written:]
                # O_APPEND leaves the position at the end of what this write added, even
                # if another descriptor of the same file appended meanwhile.
                return os.lseek(handle.fd, 0, os.SEEK_CUR) - len(data)

    def read(
        self, batch_id: str, command_id: str, stream: str, offset: int = 0, limit: int = 1 << 20
    ) -> tuple[bytes, int, int]:
        """Up to ``limit`` bytes from ``offset``: (data, next_offset, size of the file now).
        A missing file reads as empty."""
        key = _key(batch_id, command_id, stream)
        if offset < 0 or limit < 0:
            raise InputError("offset and limit must not be negative")
        fd = self._open(key, _READ_FLAGS, create=False)
        if fd is None:
            return b"", offset, 0
        try:
            size = os.fstat(fd).st_size
            data = os.pread(fd, min(limit, max(0, size - offset)), offset) if limit else b""
        finally:
            os.close(fd)
        return data, offset + len(data), size

    def size(self, batch_id: str, command_id: str, stream: str) -> int:
        key = _key(batch_id, command_id, stream)
        fd = self._open(key, _READ_FLAGS, create=False)
        if fd is None:
            return 0
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def discard(self, batch_id: str, command_id: str) -> None:
        """Empty a command's output (an attempt whose output does not count)."""
        for stream in STREAMS:
            key = _key(batch_id, command_id, stream)
            while True:
                handle = self._handle(key)
                with handle.lock:
                    if handle.closed:
                        continue
                    os.ftruncate(handle.fd, 0)
                    break

    def close_command(self, batch_id: str, command_id: str) -> None:
        """Release the handles of a finished command (optional: the LRU would anyway)."""
        for stream in STREAMS:
            key = _key(batch_id, command_id, stream)
            with self._lock:
                handle = self._handles.pop(key, None)
            if handle is not None:
                _close(handle)

    def remove_batch(self, batch_id: str) -> None:
        """Delete a batch's output (retention)."""
        check_id(batch_id, "batch id")
        with self._lock:
            mine = [k for k in self._handles if k[0] == batch_id]
            handles = [self._handles.pop(k) for k in mine]
        for handle in handles:
            _close(handle)
        path = self.root / batch_id
        if path.is_symlink():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)  # does not follow symlinks inside

    def close(self) -> None:
        with self._lock:
            handles = list(self._handles.values())
            self._handles.clear()
        for handle in handles:
            _close(handle)

    def __enter__(self) -> OutputStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def open_handles(self) -> int:
        with self._lock:
            return len(self._handles)

    def _handle(self, key: Key) -> _Handle:
        with self._lock:
            handle = self._handles.get(key)
            if handle is not None:
                self._handles.move_to_end(key)
                return handle
        # Open outside the global lock: mkdir and open may be slow.
        fd = self._open(key, _APPEND_FLAGS, create=True)
        assert fd is not None
        fresh = _Handle(fd=fd)
        evicted: list[_Handle] = []
        with self._lock:
            handle = self._handles.get(key)
            if handle is not None:  # another thread opened it first
                evicted.append(fresh)
            else:
                handle = self._handles[key] = fresh
            self._handles.move_to_end(key)
            while len(self._handles) > self._max_open:
                evicted.append(self._handles.popitem(last=False)[1])
        for old in evicted:
            _close(old)
        return handle

    def _open(self, key: Key, flags: int, *, create: bool) -> int | None:
        """Open DATA/output/<batch>/<command>.<stream> without following any symlink
        below the data folder; None when it does not exist and ``create`` is False."""
        batch_id, command_id, stream = key
        name = f"{batch_id}/{command_id}.{stream}"
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        root_fd = batch_fd = -1
        try:
            root_fd = os.open(self.root, _DIR_FLAGS)
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(batch_id, 0o750, dir_fd=root_fd)
            batch_fd = os.open(batch_id, _DIR_FLAGS, dir_fd=root_fd)
            return os.open(f"{command_id}.{stream}", flags, 0o640, dir_fd=batch_fd)
        except FileNotFoundError:
            if create:
                raise
            return None
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR):
                raise InputError(f"output {name}: a symlink or not a plain file") from e
            raise
        finally:
            for fd in (batch_fd, root_fd):
                if fd >= 0:
                    os.close(fd)


def _key(batch_id: str, command_id: str, stream: str) -> Key:
    if stream not in STREAMS:
        raise InputError(f"invalid stream {stream!r}: stdout or stderr")
    return check_id(batch_id, "batch id"), check_id(command_id, "command id"), stream


def _close(handle: _Handle) -> None:
    with handle.lock:
        if not handle.closed:
            handle.closed = True
            os.close(handle.fd)
