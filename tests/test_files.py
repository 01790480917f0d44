"""Files in and out of a workspace (sandbox/uploads.py, sandbox/workspace_files.py): a
hostile archive corpus, planted symlinks, caps, exact round trips. Each refusal is
checked against a listing of the whole folder tree taken before: nothing written
anywhere, nothing half-extracted, no staging left."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from sandbox.store import WorkspaceRecord
from sandbox.uploads import UploadLimits
from sandbox.workspace_files import FilesError, folder_bytes, rel_parts
from sandbox.workspace_io import DownloadLimits, WorkspaceIO

LIMITS = UploadLimits(max_bytes=8 << 20, extracted_bytes=32 << 20, entries=50)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[WorkspaceIO, WorkspaceRecord, Path]:
    data = tmp_path / "data"
    ws_path = data / "workspaces" / "w"
    ws_path.mkdir(parents=True)
    (ws_path / "keep.txt").write_text("old\n")
    (data / "tmp" / "uploads").mkdir(parents=True)  # made by the first upload
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "secret").write_text("do not touch\n")
    io_ = WorkspaceIO(
        cast(Any, None), data, LIMITS, DownloadLimits(max_bytes=4 << 20), busy=lambda _w: False
    )
    ws = WorkspaceRecord(
        id=1,
        name="w",
        path=ws_path,
        image=None,
        network="none",
        env={},
        limits={},
        owner_user_id=None,
        owner_team_id=None,
        created_at=datetime.now(UTC),
    )
    return io_, ws, sentinel


def listing(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every path under ``root`` (links not followed): kind, size, content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = ""
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                digest = os.readlink(p)
            out[str(p.relative_to(root))] = (oct(stat.S_IFMT(st.st_mode)), st.st_size, digest)
    return out


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]], gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def info(name: str, kind: bytes = tarfile.REGTYPE, **kw: Any) -> tarfile.TarInfo:
    i = tarfile.TarInfo(name)
    i.type = kind
    for k, v in kw.items():
        setattr(i, k, v)
    return i


def zip_bytes(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def hostile_corpus(tmp: Path, sentinel: Path) -> dict[str, tuple[bytes, int, str]]:
    """name -> (archive, expected status, expected error code)."""
    corpus: dict[str, tuple[bytes, int, str]] = {}
    corpus["tar zip slip"] = (tar_bytes([(info("../../x"), b"pwned")]), 400, "unsafe_archive")
    corpus["tar slip inside"] = (
        tar_bytes([(info("a/../../x"), b"pwned")]),
        400,
        "unsafe_archive",
    )
    corpus["tar absolute"] = (
        tar_bytes([(info(str(sentinel / "abs")), b"pwned")]),
        400,
        "unsafe_archive",
    )
    corpus["tar symlink then file through it"] = (
        tar_bytes(
            [
                (info("link", tarfile.SYMTYPE, linkname=str(sentinel)), None),
                (info("link/pwned"), b"pwned"),
            ]
        ),
        400,
        "unsafe_archive",
    )
    corpus["tar hard link"] = (
        tar_bytes([(info("h", tarfile.LNKTYPE, linkname=str(sentinel / "secret")), None)]),
        400,
        "unsafe_archive",
    )
    corpus["tar char device"] = (
        tar_bytes([(info("null", tarfile.CHRTYPE, devmajor=1, devminor=3), None)]),
        400,
        "unsafe_archive",
    )
    corpus["tar fifo"] = (tar_bytes([(info("p", tarfile.FIFOTYPE), None)]), 400, "unsafe_archive")
    corpus["tar control char"] = (tar_bytes([(info("a\nb"), b"x")]), 400, "unsafe_archive")
    corpus["tar too deep"] = (
        tar_bytes([(info("d/" * 40 + "f"), b"x")]),
        400,
        "unsafe_archive",
    )
    corpus["tar good file then bad"] = (
        tar_bytes([(info("fine.txt"), b"fine"), (info("../evil"), b"x")]),
        400,
        "unsafe_archive",
    )
    corpus["tar file and folder"] = (
        tar_bytes([(info("a"), b"x"), (info("a/b"), b"y")]),
        400,
        "unsafe_archive",
    )
    corpus["tar too many entries"] = (
        tar_bytes([(info(f"f{i}"), b"x") for i in range(60)]),
        413,
        "too_large",
    )
    # a 10 GB sparse file: GNU tar stores only its map; the declared size refuses it
    sparse = tmp / "sparse"
    sparse.mkdir(parents=True)
    with open(sparse / "big", "wb") as f:
        f.truncate(10 << 30)
    subprocess.run(["tar", "-cSzf", str(tmp / "sparse.tgz"), "-C", str(sparse), "big"], check=True)
    corpus["tar 10 GB sparse"] = ((tmp / "sparse.tgz").read_bytes(), 413, "too_large")
    (sparse / "big").unlink()
    corpus["zip slip"] = (zip_bytes([("../../x", b"pwned")]), 400, "unsafe_archive")
    corpus["zip absolute"] = (zip_bytes([(str(sentinel / "abs"), b"pwned")]), 400, "unsafe_archive")
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    link.create_system = 3
    corpus["zip symlink then file"] = (
        zip_bytes([(link, str(sentinel).encode()), ("link/pwned", b"x")]),
        400,
        "unsafe_archive",
    )
    fifo = zipfile.ZipInfo("fifo")
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    fifo.create_system = 3
    corpus["zip fifo"] = (zip_bytes([(fifo, b"")]), 400, "unsafe_archive")
    # zipfile's writer cuts a name at NUL: write one, then put the NUL in by hand
    nul = zip_bytes([("aQQQQQb", b"x")]).replace(b"aQQQQQb", b"a\x00QQQQb")
    corpus["zip NUL in name"] = (nul, 400, "unsafe_archive")
    corpus["zip backslash slip"] = (zip_bytes([("..\\..\\x", b"x")]), 400, "unsafe_archive")
    # a zip bomb: 200 MB of zeros in ~200 KB, over the 32 MB cap by what it declares
    bomb = io.BytesIO()
    with (
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("zeros", "w", force_zip64=True) as f,
    ):
        block = b"\0" * (1 << 20)
        for _ in range(200):
            f.write(block)
    corpus["zip bomb"] = (bomb.getvalue(), 413, "too_large")
    corpus["zip bomb that lies about its size"] = (lying_bomb(), 400, "bad_archive")
    corpus["tar.gz that is not a tar"] = (gzip.compress(b"just text\n"), 400, "bad_archive")
    return corpus


def lying_bomb() -> bytes:
    """A zip whose headers say 1,000 bytes where 20 MB inflate."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros", b"\0" * (20 << 20))
    data = bytearray(buf.getvalue())
    real = (20 << 20).to_bytes(4, "little")
    fake = (1000).to_bytes(4, "little")
    assert data.count(real) == 2  # local header and central directory
    return bytes(data.replace(real, fake))


def test_the_hostile_corpus_is_refused_and_nothing_is_written(
    setup: tuple[WorkspaceIO, WorkspaceRecord, Path], tmp_path: Path
) -> None:
    files, ws, sentinel = setup
    corpus = hostile_corpus(tmp_path / "build", sentinel)
    before = listing(tmp_path)
    for name, (archive, status, code) in corpus.items():
        with pytest.raises(FilesError) as refused:
            files.upload(ws, io.BytesIO(archive), path="sub/dir")
        assert (refused.value.status, refused.value.code) == (status, code), (name, refused.value)
        assert "nothing" in str(refused.value) or status == 400, (name, str(refused.value))
        assert listing(tmp_path) == before, name  # nothing anywhere, no staging left
    assert not (ws.path / "sub").exists()
    assert (sentinel / "secret").read_text() == "do not touch\n"
    assert sorted(os.listdir(sentinel)) == ["secret"]


def test_planted_symlinks_refuse_the_upload_and_are_never_followed(
    setup: tuple[WorkspaceIO, WorkspaceRecord, Path], tmp_path: Path
) -> None:
    files, ws, sentinel = setup
    (ws.path / "out").symlink_to(sentinel)  # what a command could have done
    (ws.path / "real").mkdir()
    (ws.path / "real" / "f").symlink_to(sentinel / "secret")
    good = tar_bytes([(info("pwned"), b"pwned")])
    before = listing(tmp_path)
    for path, archive in (
        ("out", good),  # the target folder is a link
        ("out/deeper", good),
        ("", tar_bytes([(info("out/pwned"), b"pwned")])),  # a member goes through it
        ("", tar_bytes([(info("out"), b"replace the link")])),  # a member replaces it
        ("real", tar_bytes([(info("f"), b"through a file link")])),
    ):
        with pytest.raises(FilesError) as refused:
            files.upload(ws, io.BytesIO(archive), path=path)
        assert refused.value.status == 409, (path, refused.value)
        assert listing(tmp_path) == before, path
    with pytest.raises(FilesError) as single:
        files.upload(ws, io.BytesIO(b"data"), path="out", fmt="file", name="x")
    assert single.value.status == 409
    assert listing(tmp_path) == before
    # reading: the link is shown, never followed
    root = files.tree(ws, "")
    out = next(e for e in root["entries"] if e["name"] == "out")
    assert out["type"] == "link" and out["target"] == str(sentinel)
    for path in ("out", "out/secret", "real/f"):
        with pytest.raises(FilesError) as read:
            files.open_file(ws, path)
        assert read.value.status == 409, path
    with pytest.raises(FilesError):
        files.tree(ws, "out")
    chunks, _ = files.folder(ws, "")
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:gz") as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert members["out"].issym() and members["out"].linkname == str(sentinel)
    assert members["real/f"].issym()
    assert "out/secret" not in members
    assert b"do not touch" not in b"".join(files.folder(ws, "")[0])


def test_special_files_are_not_read(setup: tuple[WorkspaceIO, WorkspaceRecord, Path]) -> None:
    files, ws, _ = setup
    os.mkfifo(ws.path / "pipe")
    odd = os.fsencode(ws.path) + b"/odd\xff.txt"  # a name that is not UTF-8
    with open(odd, "wb") as f:
        f.write(b"odd")
    names = {e["name"] for e in files.tree(ws, "")["entries"]}
    assert "odd\ufffd.txt" in names and "pipe" in names
    os.unlink(odd)
    with pytest.raises(FilesError) as fifo:
        files.open_file(ws, "pipe")  # O_NONBLOCK: refused at once, never hangs
    assert fifo.value.status == 409
    chunks, _ = files.folder(ws, "")
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:gz") as tf:
        assert tf.getnames() == ["keep.txt"]


def test_round_trips_keep_exact_bytes_and_owner(
    setup: tuple[WorkspaceIO, WorkspaceRecord, Path],
) -> None:
    files, ws, _ = setup
    if os.geteuid() == 0:
        os.chown(ws.path, 1000, 1000)  # as Service.submit leaves a workspace
    blobs = {
        "src/main.c": b"int main(void) { return 0; }\n",
        "src/deep/er/bin.dat": bytes(range(256)) * 1000,
        "run.sh": b"#!/bin/sh\necho hi\n",
        "empty": b"",
        "caf\u00e9 \u540d.txt": b"unicode name",
    }
    members = []
    for name, data in blobs.items():
        members.append((info(name, mode=0o755 if name.endswith(".sh") else 0o644), data))
    done = files.upload(ws, io.BytesIO(tar_bytes(members)), path="proj")
    assert done["format"] == "tar" and done["files"] == len(blobs)
    assert done["bytes"] == sum(len(b) for b in blobs.values())
    for name, data in blobs.items():
        p = ws.path / "proj" / name
        assert p.read_bytes() == data, name
        if os.geteuid() == 0:
            assert p.stat().st_uid == 1000, name
    assert os.access(ws.path / "proj" / "run.sh", os.X_OK)
    if os.geteuid() == 0:
        assert (ws.path / "proj" / "src" / "deep").stat().st_uid == 1000
    chunks, total = files.folder(ws, "proj")
    assert total == done["bytes"]
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:gz") as tf:
        got = {
            m.name: tf.extractfile(m).read()  # type: ignore[union-attr]
            for m in tf.getmembers()
            if m.isreg()
        }
    assert got == blobs
    # zip, into the same folder: replaces files, keeps the others
    zipped = zip_bytes([("src/main.c", b"changed\n"), ("z/new.bin", b"\x00\xff" * 5000)])
    assert files.upload(ws, io.BytesIO(zipped), path="proj")["format"] == "zip"
    assert (ws.path / "proj/src/main.c").read_bytes() == b"changed\n"
    assert (ws.path / "proj/z/new.bin").read_bytes() == b"\x00\xff" * 5000
    assert (ws.path / "proj/run.sh").read_bytes() == blobs["run.sh"]
    # one file, and its download
    payload = os.urandom(100_000)
    one = files.upload(ws, io.BytesIO(payload), path="bin", name="blob.bin")
    assert one["format"] == "file" and one["bytes"] == len(payload)
    fd, size = files.open_file(ws, "bin/blob.bin")
    from sandbox.workspace_files import read_chunks

    assert size == len(payload) and b"".join(read_chunks(fd, size)) == payload
    listing_ = files.tree(ws, "proj")
    names = [(e["name"], e["type"]) for e in listing_["entries"]]
    assert names[:3] == [("src", "dir"), ("z", "dir"), ("caf\u00e9 \u540d.txt", "file")]
    assert folder_bytes(ws.path)[0] > len(payload)


def test_caps(setup: tuple[WorkspaceIO, WorkspaceRecord, Path], tmp_path: Path) -> None:
    files, ws, _ = setup
    before = listing(tmp_path)
    with pytest.raises(FilesError) as big:
        files.upload(ws, io.BytesIO(b"x" * (LIMITS.max_bytes + 1)), name="big")
    assert big.value.status == 413
    assert listing(tmp_path) == before  # the partial body is gone too
    (ws.path / "huge").write_bytes(b"y" * (5 << 20))
    with pytest.raises(FilesError) as folder:
        files.folder(ws, "")
    assert folder.value.status == 413
    with pytest.raises(FilesError) as one:
        files.open_file(ws, "huge")
    assert one.value.status == 413
    with pytest.raises(FilesError) as no_name:
        files.upload(ws, io.BytesIO(b"plain"))
    assert no_name.value.status == 400 and "name" in str(no_name.value)


@pytest.mark.parametrize(
    "path", ["..", "a/../..", "a/\x00", "x\ny", "a\\b", "d/" * 40, "n" * 300, 5]
)
def test_bad_paths_are_refused(path: Any) -> None:
    with pytest.raises(FilesError):
        rel_parts(path)


def test_paths_that_are_fine() -> None:
    assert rel_parts("") == () and rel_parts("/") == () and rel_parts("./a//b/") == ("a", "b")
    with pytest.raises(FilesError):
        rel_parts("/abs", absolute_ok=False)


class SlowBody(io.RawIOBase):
    """A request body that stops after its first chunk until released."""

    def __init__(self, started: Any, release: Any) -> None:
        self.started, self.release, self.sent = started, release, False

    def read(self, size: int = -1) -> bytes:
        if self.sent:
            return b""
        self.started.set()
        assert self.release.wait(30)
        self.sent = True
        return b"payload"


def test_an_upload_and_a_batch_exclude_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from sandbox.errors import PolicyError
    from sandbox.executors.rootfs import ROOTFS_ENV
    from sandbox.service import Service, ServiceConfig
    from tests.portal import SHARED_ROOTFS

    monkeypatch.setenv(ROOTFS_ENV, str(SHARED_ROOTFS))
    svc = Service.open(
        ServiceConfig(data_dir=tmp_path / "d", isolation="local", autoscale=False, schedules=False)
    )
    try:
        ws = svc.store.workspaces.get_or_create("busy")
        started, release = threading.Event(), threading.Event()
        result: dict[str, Any] = {}
        t = threading.Thread(
            target=lambda: result.update(
                svc.files.upload(ws, SlowBody(started, release), name="f.txt")  # type: ignore[arg-type]
            )
        )
        t.start()
        assert started.wait(10)
        with pytest.raises(PolicyError, match="upload"):
            svc.submit(None, script="ls", workspace="busy")
        with pytest.raises(FilesError) as second:
            svc.files.upload(ws, io.BytesIO(b"x"), name="g")
        assert second.value.status == 409
        release.set()
        t.join(10)
        assert result["files"] == 1 and (ws.path / "f.txt").read_bytes() == b"payload"
        batch = svc.submit(None, script="sleep 5", workspace="busy")
        with pytest.raises(FilesError) as running:
            svc.files.upload(ws, io.BytesIO(b"x"), name="h")
        assert running.value.status == 409 and running.value.code == "busy"
        svc.cancel_batch(None, batch.id)
    finally:
        svc.close()
