"""sandbox.store.output: append-only output files, by offset, safe paths."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest

from sandbox.errors import InputError
from sandbox.store.output import OutputStore


@pytest.fixture
def out(tmp_path: Path) -> OutputStore:
    store = OutputStore(tmp_path / "data", max_open=8)
    yield store  # type: ignore[misc]
    store.close()


def test_append_returns_offsets_and_read_pages_by_offset(out: OutputStore, tmp_path: Path) -> None:
    assert out.read("B1", "C1", "stdout") == (b"", 0, 0)  # nothing yet
    assert out.append("B1", "C1", "stdout", b"hello\n") == 0
    assert out.append("B1", "C1", "stdout", b"world\n") == 6
    assert out.append("B1", "C1", "stderr", b"oops\n") == 0
    assert out.append("B1", "C1", "stdout", b"") == 12
    assert out.read("B1", "C1", "stdout") == (b"hello\nworld\n", 12, 12)
    assert out.read("B1", "C1", "stdout", offset=6, limit=3) == (b"wor", 9, 12)
    assert out.read("B1", "C1", "stdout", offset=12) == (b"", 12, 12)
    assert out.read("B1", "C1", "stdout", offset=50) == (b"", 50, 12)
    assert out.read("B1", "C1", "stderr") == (b"oops\n", 5, 5)
    assert out.size("B1", "C1", "stdout") == 12 and out.size("B1", "C9", "stdout") == 0
    path = tmp_path / "data" / "output" / "B1" / "C1.stdout"
    assert path.read_bytes() == b"hello\nworld\n"
    with pytest.raises(InputError):
        out.read("B1", "C1", "stdout", offset=-1)
    # a new store (after a restart) continues where the file ends
    again = OutputStore(tmp_path / "data")
    assert again.append("B1", "C1", "stdout", b"!") == 12
    again.close()


def test_concurrent_appends_keep_every_chunk_at_its_offset(out: OutputStore) -> None:
    """24 threads x 100 appends over 12 commands, with only 8 handles open at a time."""
    threads, appends = 24, 100
    results: list[tuple[str, int, bytes]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        command = f"C{n % 12}"  # two threads per command: appends interleave
        try:
            for i in range(appends):
                chunk = f"[{n}:{i}]".encode() * (1 + i % 5)
                offset = out.append("B", command, "stdout", chunk)
                with lock:
                    results.append((command, offset, chunk))
                assert out.open_handles <= 8
        except BaseException as e:
            errors.append(e)

    pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert errors == []
    assert len(results) == threads * appends
    for command in {r[0] for r in results}:
        data, _, size = out.read("B", command, "stdout", limit=1 << 24)
        mine = sorted((o, c) for cmd, o, c in results if cmd == command)
        assert size == sum(len(c) for _, c in mine)
        position = 0
        for offset, chunk in mine:  # contiguous, no overlap, no gap
            assert offset == position
            assert data[offset : offset + len(chunk)] == chunk
            position += len(chunk)


@pytest.mark.parametrize(
    ("batch", "command", "stream"),
    [
        ("..", "c", "stdout"),
        ("../x", "c", "stdout"),
        ("b", "../../etc/passwd", "stdout"),
        ("a/b", "c", "stdout"),
        ("b", "c", "../x"),
        ("b", "c", "stdin"),
        ("", "c", "stdout"),
        ("b", ".hidden", "stdout"),
        ("/tmp", "c", "stdout"),
        ("b", "c\0d", "stdout"),
        ("b" * 65, "c", "stdout"),
    ],
)
def test_ids_that_could_escape_are_rejected(
    out: OutputStore, tmp_path: Path, batch: str, command: str, stream: str
) -> None:
    with pytest.raises(InputError):
        out.append(batch, command, stream, b"x")
    with pytest.raises(InputError):
        out.read(batch, command, stream)
    outside = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert outside == []


def test_symlinks_planted_in_the_folder_are_not_followed(out: OutputStore, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "data" / "output"
    out.append("B", "C", "stdout", b"ok")  # makes the folders
    (root / "B" / "C2.stdout").symlink_to(target)
    (root / "B" / "C3.stderr").symlink_to(tmp_path / "dangling")
    (root / "LINKED").symlink_to(elsewhere, target_is_directory=True)
    planted = [("B", "C2", "stdout"), ("B", "C3", "stderr"), ("LINKED", "C", "stdout")]
    for batch, command, stream in planted:
        with pytest.raises(InputError):
            out.append(batch, command, stream, b"evil")
        with pytest.raises(InputError):
            out.read(batch, command, stream)
    assert target.read_bytes() == b"precious"
    assert not (tmp_path / "dangling").exists() and list(elsewhere.iterdir()) == []
    out.remove_batch("LINKED")  # removes the link, not what it points to
    assert elsewhere.is_dir() and not (root / "LINKED").exists()


def test_remove_batch_and_close(out: OutputStore, tmp_path: Path) -> None:
    for n in range(3):
        out.append("B", f"C{n}", "stdout", b"x")
    out.append("KEEP", "C", "stderr", b"y")
    out.close_command("B", "C0")
    out.remove_batch("B")
    assert not (tmp_path / "data" / "output" / "B").exists()
    assert out.read("B", "C1", "stdout") == (b"", 0, 0)
    assert out.read("KEEP", "C", "stderr")[0] == b"y"
    assert out.append("B", "C1", "stdout", b"again") == 0  # a fresh file, a fresh handle
    out.close()
    assert out.open_handles == 0
    assert not [p for p in open_files() if str(tmp_path) in p]


def open_files() -> list[str]:
    fds = Path("/proc/self/fd")
    found = []
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):  # the descriptor listing /proc is gone already
            found.append(os.readlink(fd))
    return found
