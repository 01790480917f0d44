"""Reading a workspace's files from the server, never through a symlink.

A command may have planted anything in its workspace (``out -> /etc``, a fifo, a
hard link): every path here is opened one component at a time relative to its
parent's descriptor with ``O_NOFOLLOW``, a folder must be a real folder, a file a
regular file (opened ``O_NONBLOCK``, so a fifo never blocks the server). Symlinks are
listed as links and put into a downloaded tar as links; their targets are never read.

    parts = rel_parts("src/app")                     # InputError on "..", NUL, ...
    listing = tree(ws_root, parts, limit=1000)
    fd, size = open_file(ws_root, parts)
    chunks, total = folder_tar_gz(ws_root, parts, max_bytes=1 << 30, max_entries=100_000)
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.errors import InputError

MAX_DEPTH = 32
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024
CHUNK = 1 << 20
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class FilesError(InputError):
    """A file operation was refused; ``status`` and ``code`` are the HTTP answer."""

    def __init__(self, message: str, *, status: int = 400, code: str = "invalid_input") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def check_name(name: str, where: str) -> str:
    """One path component: no NUL or control character, not "." or "..", not too long."""
    if name in (".", ".."):
        raise FilesError(f"{where}: '..' and '.' are not allowed in a path", code="unsafe_path")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name) or "\\" in name:
        raise FilesError(
            f"{where}: a name holds a control character, NUL or backslash", code="unsafe_path"
        )
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise FilesError(
            f"{where}: a name is longer than {MAX_NAME_BYTES} bytes", code="unsafe_path"
        )
    return name


def rel_parts(path: str, where: str = "path", *, absolute_ok: bool = True) -> tuple[str, ...]:
    """The components of a path inside a workspace ("" and "/" are its root). A leading
    "/" means the workspace's root when ``absolute_ok`` (query parameters), and is
    refused otherwise (archive members)."""
    if not isinstance(path, str):
        raise FilesError(f"{where} must be text")
    if path.startswith("/") and not absolute_ok:
        raise FilesError(f"{where}: absolute path {path[:100]!r} refused", code="unsafe_path")
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise FilesError(f"{where}: longer than {MAX_PATH_BYTES} bytes", code="unsafe_path")
    parts = tuple(p for p in path.split("/") if p and p != ".")
    if ".." in path.split("/"):
        raise FilesError(f"{where}: '..' is not allowed ({path[:100]!r})", code="unsafe_path")
    if len(parts) > MAX_DEPTH:
        raise FilesError(f"{where}: deeper than {MAX_DEPTH} folders", code="unsafe_path")
    for p in parts:
        check_name(p, where)
    return parts


def shown(parts: tuple[str, ...]) -> str:
    return "/".join(parts) or "."


def open_root(root: Path) -> int:
    try:
        return os.open(root, DIR_FLAGS)
    except OSError as e:
        raise FilesError(f"the workspace folder is unusable: {e.strerror}", status=409) from e


def open_dir(
    root_fd: int,
    parts: tuple[str, ...],
    *,
    create: bool = False,
    owner: tuple[int, int] | None = None,
) -> int:
    """A descriptor of the folder ``parts`` below ``root_fd`` (which stays open), every
    component a real folder; missing ones are made when ``create`` (owned by ``owner``)."""
    fd = os.dup(root_fd)
    for i, name in enumerate(parts):
        try:
            if create:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                    made = True
                except FileExistsError:
                    made = False
            nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
            if create and made and owner is not None:
                chown_fd(nfd, owner)
        except FileNotFoundError:
            os.close(fd)
            raise FilesError(
                f"no folder {shown(parts[: i + 1])!r}", status=404, code="not_found"
            ) from None
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EEXIST):
                raise FilesError(
                    f"{shown(parts[: i + 1])!r} is a symlink or not a folder; refused",
                    status=409,
                    code="not_a_folder",
                ) from None
            raise
        os.close(fd)
        fd = nfd
    return fd


def chown_fd(fd: int, owner: tuple[int, int]) -> None:
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.fchown(fd, *owner)


def lstat_at(root_fd: int, parts: tuple[str, ...]) -> os.stat_result:
    """lstat of ``parts`` (its folders must be real folders); FilesError 404 if missing."""
    if not parts:
        return os.fstat(root_fd)
    fd = open_dir(root_fd, parts[:-1])
    try:
        return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        raise FilesError(
            f"no file or folder {shown(parts)!r}", status=404, code="not_found"
        ) from None
    finally:
        os.close(fd)


def kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def text(name: str) -> str:
    """A file name as shown in JSON: bytes that are not UTF-8 (kept by os as surrogates)
    become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def tree(root: Path, parts: tuple[str, ...], *, limit: int = 1000) -> dict[str, Any]:
    """One folder's entries (name, type, size, mtime; a link's target), sorted by name,
    at most ``limit``; ``truncated`` says whether there were more."""
    root_fd = open_root(root)
    try:
        st = lstat_at(root_fd, parts)
        if not stat.S_ISDIR(st.st_mode):
            raise FilesError(
                f"{shown(parts)!r} is a {kind_of(st.st_mode)}, not a folder; download it with "
                "GET .../files?path=",
                status=409,
                code="not_a_folder",
            )
        fd = open_dir(root_fd, parts)
    finally:
        os.close(root_fd)
    entries: list[dict[str, Any]] = []
    seen = 0
    try:
        with os.scandir(fd) as it:
            for entry in it:
                seen += 1
                if seen > 100_000:  # never read an unbounded folder whole
                    break
                try:
                    est = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                item: dict[str, Any] = {
                    "name": text(entry.name),
                    "type": kind_of(est.st_mode),
                    "size": est.st_size if stat.S_ISREG(est.st_mode) else 0,
                    "mtime": _iso(est.st_mtime),
                }
                if stat.S_ISLNK(est.st_mode):
                    with contextlib.suppress(OSError):
                        item["target"] = text(os.readlink(entry.name, dir_fd=fd))
                entries.append(item)
    finally:
        os.close(fd)
    entries.sort(key=lambda e: (e["type"] != "dir", e["name"]))
    return {
        "path": shown(parts),
        "entries": entries[:limit],
        "truncated": len(entries) > limit or seen > 100_000,
    }


def open_file(root: Path, parts: tuple[str, ...]) -> tuple[int, int]:
    """(descriptor, size) of the regular file ``parts``; never a link, fifo or device."""
    if not parts:
        raise FilesError("the workspace root is a folder", status=409, code="not_a_file")
    root_fd = open_root(root)
    try:
        dfd = open_dir(root_fd, parts[:-1])
    finally:
        os.close(root_fd)
    try:
        fd = os.open(parts[-1], FILE_FLAGS, dir_fd=dfd)
    except FileNotFoundError:
        raise FilesError(f"no file {shown(parts)!r}", status=404, code="not_found") from None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise FilesError(
                f"{shown(parts)!r} is a symlink or a special file; refused",
                status=409,
                code="not_a_file",
            ) from None
        raise
    finally:
        os.close(dfd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FilesError(
            f"{shown(parts)!r} is a {kind_of(st.st_mode)}, not a regular file",
            status=409,
            code="not_a_file",
        )
    return fd, st.st_size


def read_chunks(fd: int, size: int) -> Iterator[bytes]:
    """Exactly ``size`` bytes of ``fd`` (zeros if the file shrank meanwhile); closes it."""
    try:
        left, offset = size, 0
        while left > 0:
            data = os.pread(fd, min(CHUNK, left), offset)
            if not data:
                data = b"\0" * min(CHUNK, left)
            offset += len(data)
            left -= len(data)
            yield data
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Member:
    parts: tuple[str, ...]  # relative to the downloaded folder
    kind: str  # dir | file | link
    size: int
    mode: int
    mtime: float
    target: str = ""


def walk(
    dir_fd: int, *, max_entries: int, prefix: tuple[str, ...] = (), depth: int = 0
) -> Iterator[Member]:
    """Every folder, regular file and link below ``dir_fd`` (not closed), depth first;
    fifos, devices and sockets are left out. FilesError past ``max_entries``."""
    names = []
    with os.scandir(dir_fd) as it:
        for entry in it:
            names.append(entry.name)
            if len(names) > max_entries:
                raise FilesError(
                    f"more than {max_entries} entries; download a smaller folder",
                    status=413,
                    code="too_large",
                )
    for name in sorted(names):
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue
        parts = (*prefix, name)
        if stat.S_ISLNK(st.st_mode):
            with contextlib.suppress(OSError):
                target = os.readlink(name, dir_fd=dir_fd)
                yield Member(parts, "link", 0, 0o777, st.st_mtime, target)
        elif stat.S_ISREG(st.st_mode):
            yield Member(parts, "file", st.st_size, st.st_mode & 0o777, st.st_mtime)
        elif stat.S_ISDIR(st.st_mode) and depth < 4 * MAX_DEPTH:
            yield Member(parts, "dir", 0, st.st_mode & 0o777, st.st_mtime)
            try:
                sub = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                yield from walk(sub, max_entries=max_entries, prefix=parts, depth=depth + 1)
            finally:
                os.close(sub)


def folder_tar_gz(
    root: Path, parts: tuple[str, ...], *, max_bytes: int, max_entries: int
) -> tuple[Iterator[bytes], int]:
    """A folder as a streamed .tar.gz (and the bytes of the files in it). The listing is
    taken first, so a folder over ``max_bytes`` or ``max_entries`` is refused (413)
    before anything is sent; files are then read through their folders' descriptors."""
    root_fd = open_root(root)
    try:
        fd = open_dir(root_fd, parts)
    finally:
        os.close(root_fd)
    try:
        members: list[Member] = []
        total = 0
        for m in walk(fd, max_entries=max_entries):
            members.append(m)
            total += m.size
            if len(members) > max_entries:
                raise FilesError(
                    f"more than {max_entries} entries; download a smaller folder",
                    status=413,
                    code="too_large",
                )
            if total > max_bytes:
                raise FilesError(
                    f"the folder holds more than {max_bytes} bytes; download a smaller one",
                    status=413,
                    code="too_large",
                )
    except BaseException:
        os.close(fd)
        raise
    return _tar_gz(fd, members), total


def _tar_gz(fd: int, members: list[Member]) -> Iterator[bytes]:
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)
    try:
        for m in members:
            info = tarfile.TarInfo("/".join(m.parts))
            info.mtime = int(m.mtime)
            info.mode = m.mode
            data: Iterator[bytes] = iter(())
            if m.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif m.kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, m.target
            else:
                opened = _open_member(fd, m.parts)
                if opened is None:
                    continue  # gone, or replaced by something that is not a file
                info.size = m.size
                data = read_chunks(opened, m.size)
            yield gz.compress(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            for chunk in data:
                yield gz.compress(chunk)
            if info.size % 512:
                yield gz.compress(b"\0" * (512 - info.size % 512))
        yield gz.compress(b"\0" * 1024)
        yield gz.flush()
    finally:
        os.close(fd)


def _open_member(fd: int, parts: tuple[str, ...]) -> int | None:
    try:
        dfd = open_dir(fd, parts[:-1])
    except FilesError:
        return None
    try:
        ffd = os.open(parts[-1], FILE_FLAGS, dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    if not stat.S_ISREG(os.fstat(ffd).st_mode):
        os.close(ffd)
        return None
    return ffd


def folder_bytes(path: Path, *, max_entries: int = 200_000) -> tuple[int, bool]:
    """(bytes of the regular files below ``path``, whether the count stopped early);
    no symlink is followed. A missing folder is 0."""
    try:
        fd = os.open(path, DIR_FLAGS)
    except OSError:
        return 0, False
    total = seen = 0
    try:
        for m in walk(fd, max_entries=max_entries):
            total += m.size
            seen += 1
            if seen >= max_entries:
                return total, True
    except FilesError:
        return total, True
    finally:
        os.close(fd)
    return total, False
