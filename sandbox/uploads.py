"""Putting files into a workspace: a .tar(.gz), a .zip or one file, all or nothing.

    receive(stream, tmp, max_bytes)        the body, to a file, size-capped (413)
    fmt = detect(tmp, given)                "tar" | "zip" | "file"
    entries = plan(tmp, fmt, limits, name)  every member checked before a byte is written
    install(tmp, fmt, entries, ws_root, target, staging_dir, owner)

The whole archive is checked first: ``..``, absolute names, symlinks, hard links,
devices and fifos, control characters, too deep, too many entries, too many bytes
(declared sizes; a zip bomb is also stopped while it inflates) all refuse the upload
with a 4xx and nothing written. The members are then extracted into a staging folder of
the server's own, and only then moved into the workspace through folder descriptors
opened with ``O_NOFOLLOW``: a symlink a command planted in the workspace (``out ->
/etc``) refuses the upload (409) and is never followed. Files end up owned by the
owner of the workspace folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sandbox.workspace_files import (
    CHUNK,
    DIR_FLAGS,
    FilesError,
    chown_fd,
    open_dir,
    open_root,
    rel_parts,
    shown,
)

FORMATS = ("tar", "zip", "file")
ALIASES = {"tgz": "tar", "tar.gz": "tar", "gz": "tar", "tar": "tar", "zip": "zip", "file": "file"}


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_bytes: int = 512 << 20  # the body as sent (compressed)
    extracted_bytes: int = 2 << 30  # what the members add up to
    entries: int = 20_000


@dataclass(frozen=True, slots=True)
class Entry:
    parts: tuple[str, ...]
    kind: str  # dir | file
    size: int
    executable: bool
    source: Any  # the TarInfo or ZipInfo (None for a single file)


def receive(stream: IO[bytes], dest: Path, max_bytes: int) -> int:
    """Copy the request body to ``dest`` (made new, 0600); 413 past ``max_bytes``, and
    ``dest`` is removed. Returns the bytes received."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    total = 0
    try:
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise FilesError(
                    f"the upload is over {max_bytes} bytes (BASHFLEET_UPLOAD_MAX_BYTES)",
                    status=413,
                    code="too_large",
                )
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        dest.unlink(missing_ok=True)
        raise
    os.close(fd)
    return total


def detect(path: Path, given: str | None) -> str:
    """``given`` (tar, tgz, tar.gz, zip, file) or the magic bytes: gzip/bzip2/xz or a
    ustar header -> tar, ``PK`` -> zip, anything else -> one file."""
    if given:
        fmt = ALIASES.get(given.lower())
        if fmt is None:
            raise FilesError("`format` is tar, tgz, tar.gz, zip or file", code="invalid_input")
        return fmt
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return "tar"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) == 512 and head[257:262] == b"ustar":
        return "tar"
    return "file"


def plan(path: Path, fmt: str, limits: UploadLimits, name: str | None = None) -> list[Entry]:
    """Every member, checked; FilesError (4xx) at the first that is refused."""
    if fmt == "file":
        if not name:
            raise FilesError("one file needs `name=` (the file's name in the folder)")
        parts = rel_parts(name, "name", absolute_ok=False)
        if len(parts) != 1:
            raise FilesError("`name` is one file name, without '/'")
        size = path.stat().st_size
        _cap(size, limits)
        return [Entry(parts, "file", size, False, None)]
    members = _tar_members(path, limits) if fmt == "tar" else _zip_members(path, limits)
    return _consistent(members)


def _cap(total: int, limits: UploadLimits) -> None:
    if total > limits.extracted_bytes:
        raise FilesError(
            f"the archive unpacks to more than {limits.extracted_bytes} bytes "
            "(BASHFLEET_UPLOAD_EXTRACTED_BYTES); nothing was extracted",
            status=413,
            code="too_large",
        )


def _count(n: int, limits: UploadLimits) -> None:
    if n > limits.entries:
        raise FilesError(
            f"the archive has more than {limits.entries} entries (BASHFLEET_UPLOAD_ENTRIES); "
            "nothing was extracted",
            status=413,
            code="too_large",
        )


def _refuse(name: str, why: str) -> FilesError:
    return FilesError(
        f"archive member {name[:200]!r}: {why}; nothing was extracted", code="unsafe_archive"
    )


def _member_parts(name: str) -> tuple[str, ...]:
    try:
        parts = rel_parts(name, f"archive member {name[:200]!r}", absolute_ok=False)
    except FilesError as e:
        raise FilesError(f"{e}; nothing was extracted", code="unsafe_archive") from None
    if not parts:
        raise _refuse(name, "an empty name")
    return parts


def _tar_members(path: Path, limits: UploadLimits) -> list[Entry]:
    out: list[Entry] = []
    total = 0
    try:
        with tarfile.open(path, "r:*") as tf:
            while True:
                m = tf.next()  # reads one header; skips the previous member's data
                if m is None:
                    break
                _count(len(out) + 1, limits)
                if m.issym() or m.islnk():
                    raise _refuse(m.name, f"a {'symlink' if m.issym() else 'hard link'}")
                if not (m.isreg() or m.isdir()):
                    raise _refuse(m.name, "a device, fifo or other special file")
                parts = _member_parts(m.name)
                total += m.size if m.isreg() else 0
                _cap(total, limits)  # before its data is even skipped
                kind = "file" if m.isreg() else "dir"
                out.append(Entry(parts, kind, m.size, bool(m.mode & 0o111), m))
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise FilesError(f"not a readable tar archive: {e}", code="bad_archive") from None
    return out


def _zip_members(path: Path, limits: UploadLimits) -> list[Entry]:
    out: list[Entry] = []
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as e:
        raise FilesError(f"not a readable zip archive: {e}", code="bad_archive") from None
    _count(len(infos), limits)
    for zi in infos:
        mode = zi.external_attr >> 16
        if zi.flag_bits & 0x1:
            raise _refuse(zi.filename, "encrypted")
        if stat.S_ISLNK(mode):
            raise _refuse(zi.filename, "a symlink")
        if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _refuse(zi.filename, "a device, fifo or other special file")
        if "\x00" in zi.orig_filename:  # zipfile cuts the name at a NUL; refuse it
            raise _refuse(zi.orig_filename, "a NUL in the name")
        parts = _member_parts(zi.filename)
        kind = "dir" if zi.is_dir() else "file"
        total += zi.file_size if kind == "file" else 0
        _cap(total, limits)
        out.append(Entry(parts, kind, zi.file_size, bool(mode & 0o111), zi))
    return out


def _consistent(entries: list[Entry]) -> list[Entry]:
    """No name twice as a file, no file where a folder is needed (or the other way)."""
    kinds: dict[tuple[str, ...], str] = {}
    for e in entries:
        for i in range(1, len(e.parts)):
            if kinds.setdefault(e.parts[:i], "dir") != "dir":
                raise _refuse(shown(e.parts), f"{shown(e.parts[:i])} is a file and a folder")
        before = kinds.get(e.parts)
        if before is not None and (before != e.kind or e.kind == "file"):
            raise _refuse(shown(e.parts), "the name appears twice")
        kinds[e.parts] = e.kind
    return entries


def install(
    path: Path,
    fmt: str,
    entries: list[Entry],
    *,
    workspace: Path,
    target: tuple[str, ...],
    staging: Path,
    limits: UploadLimits,
) -> dict[str, int]:
    """Extract into ``staging`` (a new folder; removed afterwards), check every place in
    the workspace, then move the members in. Returns files, folders and bytes written."""
    root_fd = open_root(workspace)
    try:
        st = os.fstat(root_fd)
        owner = (st.st_uid, st.st_gid)
        _check_places(root_fd, target, entries)
        staging.mkdir(mode=0o700)
        try:
            written = _extract(path, fmt, entries, staging, limits)
            dest_fd = open_dir(root_fd, target, create=True, owner=owner)
            try:
                _move_in(staging, dest_fd, entries, owner)
            finally:
                os.close(dest_fd)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        os.close(root_fd)
    return {
        "files": sum(e.kind == "file" for e in entries),
        "folders": sum(e.kind == "dir" for e in entries),
        "bytes": written,
    }


def _check_places(root_fd: int, target: tuple[str, ...], entries: list[Entry]) -> None:
    """Refuse (409) before anything is written if a place the upload needs holds a
    symlink, or a file where a folder goes, or a folder where a file goes."""
    seen: set[tuple[tuple[str, ...], str]] = set()
    wanted = [(e.parts[:i], "dir") for e in entries for i in range(1, len(e.parts))]
    wanted += [(e.parts, e.kind) for e in entries]
    for i in range(1, len(target) + 1):
        _expect(root_fd, target[:i], "dir")
    for parts, kind in wanted:
        if (parts, kind) in seen:
            continue
        seen.add((parts, kind))
        _expect(root_fd, (*target, *parts), kind)


def _expect(root_fd: int, full: tuple[str, ...], kind: str) -> None:
    try:
        parent = open_dir(root_fd, full[:-1])
    except FilesError as e:
        if e.status == 404:
            return  # made by the upload
        raise
    try:
        st = os.stat(full[-1], dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    finally:
        os.close(parent)
    where = shown(full)
    if stat.S_ISLNK(st.st_mode):
        raise FilesError(
            f"{where!r} in the workspace is a symlink; the upload is refused and nothing "
            "was written (remove the link first)",
            status=409,
            code="symlink_in_the_way",
        )
    if kind == "dir" and not stat.S_ISDIR(st.st_mode):
        raise FilesError(
            f"{where!r} in the workspace is not a folder; nothing was written",
            status=409,
            code="conflict",
        )
    if kind == "file" and not stat.S_ISREG(st.st_mode):
        raise FilesError(
            f"{where!r} in the workspace is a folder or special file; nothing was written",
            status=409,
            code="conflict",
        )


def _extract(
    path: Path, fmt: str, entries: list[Entry], staging: Path, limits: UploadLimits
) -> int:
    root = os.open(staging, DIR_FLAGS)
    written = 0
    try:
        if fmt == "file":
            with open(path, "rb") as single:
                written += _write(root, entries[0].parts, single, entries[0], limits, written)
            return written
        if fmt == "tar":
            with tarfile.open(path, "r:*") as tf:
                for e in entries:
                    if e.kind == "dir":
                        os.close(open_dir(root, e.parts, create=True))
                        continue
                    member = tf.extractfile(e.source)
                    assert member is not None
                    with member:
                        written += _write(root, e.parts, member, e, limits, written)
            return written
        with zipfile.ZipFile(path) as zf:
            for e in entries:
                if e.kind == "dir":
                    os.close(open_dir(root, e.parts, create=True))
                    continue
                with zf.open(e.source) as src:
                    written += _write(root, e.parts, src, e, limits, written)
        return written
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as e:
        raise FilesError(
            f"the archive is damaged: {e}; nothing was extracted", code="bad_archive"
        ) from None
    finally:
        os.close(root)


def _write(
    root: int, parts: tuple[str, ...], src: IO[bytes], e: Entry, limits: UploadLimits, before: int
) -> int:
    dfd = open_dir(root, parts[:-1], create=True)
    try:
        fd = os.open(
            parts[-1],
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o755 if e.executable else 0o644,
            dir_fd=dfd,
        )
    finally:
        os.close(dfd)
    n = 0
    try:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            n += len(chunk)
            if n > e.size or before + n > limits.extracted_bytes:
                # it inflates to more than it declared: a bomb
                raise FilesError(
                    f"archive member {shown(e.parts)!r} unpacks to more than it declares "
                    f"(or past {limits.extracted_bytes} bytes); nothing was extracted",
                    status=413,
                    code="too_large",
                )
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return n


def _move_in(staging: Path, dest_fd: int, entries: list[Entry], owner: tuple[int, int]) -> None:
    src_root = os.open(staging, DIR_FLAGS)
    try:
        dirs = sorted({e.parts[:i] for e in entries for i in range(1, len(e.parts))})
        dirs += sorted(e.parts for e in entries if e.kind == "dir")
        for parts in dirs:
            os.close(open_dir(dest_fd, parts, create=True, owner=owner))
        for e in entries:
            if e.kind != "file":
                continue
            sfd = open_dir(src_root, e.parts[:-1])
            dfd = open_dir(dest_fd, e.parts[:-1])
            try:
                _place(sfd, dfd, e.parts[-1], owner)
            finally:
                os.close(sfd)
                os.close(dfd)
    finally:
        os.close(src_root)


def _place(sfd: int, dfd: int, name: str, owner: tuple[int, int]) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
    try:
        chown_fd(fd, owner)
    finally:
        os.close(fd)
    try:
        # replaces a regular file of that name; never follows a link (none was there)
        os.rename(name, name, src_dir_fd=sfd, dst_dir_fd=dfd)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        _copy_across(sfd, dfd, name, owner)


def _copy_across(sfd: int, dfd: int, name: str, owner: tuple[int, int]) -> None:
    """The staging folder is on another file system: copy, without following links."""
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
    mode = os.fstat(src).st_mode & 0o777
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dfd)
    dst = os.open(
        name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd
    )
    try:
        for chunk in _chunks(src):
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst, view) :]
        chown_fd(dst, owner)
    finally:
        os.close(src)
        os.close(dst)


def _chunks(fd: int) -> Iterator[bytes]:
    while chunk := os.read(fd, CHUNK):
        yield chunk
