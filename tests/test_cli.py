"""The `bashfleet` console script, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

BASHFLEET = str(Path(sys.executable).parent / "bashfleet")


def bf(*args: str, cwd: Path | None = None, input: str | None = None, timeout: float = 120):
    return subprocess.run(
        [BASHFLEET, *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_classify_json_one_object_per_argument_in_order() -> None:
    done = bf("classify", "--json", "ls -la", "rm -rf build && make", "sed -i s/a/b/ f.txt")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["command"] for r in rows] == ["ls -la", "rm -rf build && make", "sed -i s/a/b/ f.txt"]
    assert [r["class"] for r in rows] == ["safe", "dangerous", "sequential"]
    assert set(rows[0]) == {"command", "class", "reads", "writes", "reasons"}
    assert "f.txt" in rows[2]["writes"] and rows[2]["reasons"]


def test_classify_file_gives_one_object_per_statement(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("ls\n# note\necho hi > out.txt; cat out.txt\n")
    done = bf("classify", "--json", "--file", str(script))
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["command"] for r in rows] == ["ls", "echo hi > out.txt", "cat out.txt"]


def test_classify_human_form_teaches() -> None:
    done = bf("classify", "cp a b")
    assert done.returncode == 0
    assert done.stdout.startswith("sequential")
    assert "writes: b" in done.stdout and "- " in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["classify"], "give at least one COMMAND"),
        (["run", "/nonexistent/batch.sh"], "cannot read /nonexistent/batch.sh"),
        (["run", "--jobs", "0", "x"], "--jobs must be at least 1"),
        (["run", "--deadline", "0", "x"], "--deadline must be more than 0"),
        (["run", "--on-failure", "stop", "x"], "--on-failure: invalid choice: 'stop'"),
    ],
)
def test_bad_input_is_a_clear_error_not_a_traceback(args: list[str], message: str) -> None:
    done = bf(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"# only a comment\n", "no commands"),
        (b"ls\x00\xff\xfe", "binary"),
        (b"\xff\xfe\xfa", "not UTF-8"),
        (b"echo " + b"x" * (1 << 20) + b"\n", "limit is"),
    ],
)
def test_bad_scripts(tmp_path: Path, content: bytes, message: str) -> None:
    script = tmp_path / "s.sh"
    script.write_bytes(content)
    done = bf("run", str(script), "--workspace", str(tmp_path), "--isolation", "local")
    assert done.returncode == 2, done.stdout
    assert message in done.stderr and "Traceback" not in done.stderr


def test_run_tags_output_and_summarises(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("echo one\necho two >&2\nfalse\necho after > f.txt\ncat f.txt\n")
    done = bf("run", str(script), "--workspace", str(tmp_path), "--isolation", "local", "--json")
    assert done.returncode == 1  # `false` failed
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    cmds = summary["commands"]
    assert [c["status"] for c in cmds] == [
        "succeeded",
        "succeeded",
        "failed",
        "succeeded",
        "succeeded",
    ]
    assert cmds[0]["stdout"] == "one\n" and cmds[1]["stderr"] == "two\n"
    assert cmds[4]["stdout"] == "after\n"
    assert cmds[2]["exit_code"] == 1
    assert {"index", "command", "class", "executor", "status", "exit_code", "duration_s"} <= set(
        cmds[0]
    )
    assert summary["makespan_s"] > 0
    assert "[1] one" in done.stderr  # live output, tagged by index, goes to stderr with --json


def test_run_on_failure_and_deadline(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("false > f.txt\ncat f.txt\necho x > g.txt\n")
    local = ["--workspace", str(tmp_path), "--isolation", "local", "--json"]
    for policy, want in (
        ("skip_dependents", ["failed", "skipped", "succeeded"]),
        ("continue", ["failed", "succeeded", "succeeded"]),
    ):
        done = bf("run", str(script), "--on-failure", policy, *local)
        assert done.returncode == 1, done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert [c["status"] for c in summary["commands"]] == want, policy
    assert (
        "[2] skipped: reads f.txt, which #1 failed to write"
        in bf("run", str(script), *local).stderr
    )
    script.write_text("sleep 30\n")
    started = time.monotonic()
    done = bf("run", str(script), "--deadline", "0.5", *local)
    assert time.monotonic() - started < 10 and done.returncode == 1
    command = json.loads(done.stdout.strip().splitlines()[-1])["commands"][0]
    assert command["status"] == "timed_out"
    assert command["reason"] == "stopped: the batch's deadline (0.5 s) passed"


def test_eight_sleeps_run_in_parallel(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("sleep 1\n" * 8)
    done = bf("run", str(script), "--jobs", "8", "--workspace", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    # The batch's own makespan (not the CLI's start-up, which a loaded machine stretches):
    # eight 1 s sleeps in a row would take 8 s.
    assert summary["makespan_s"] < 2.5, summary["makespan_s"]


def test_timeout_kills_the_whole_tree(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text(
        "sleep 100.101\n"
        "{ setsid sleep 100.102 & sleep 100.103; }\n"
        "{ (sleep 100.104 | cat) & sleep 100.105; }\n"
    )
    started = time.monotonic()
    done = bf(
        "run",
        str(script),
        "--timeout",
        "1",
        "--workspace",
        str(tmp_path),
        "--isolation",
        "local",
        "--json",
    )
    elapsed = time.monotonic() - started
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert [c["status"] for c in summary["commands"]] == ["timed_out"] * 3
    # Killed at 1 s, not left waiting on the tree's 100 s sleeps; the CLI's own start-up
    # stretches on a loaded machine, so the wall-clock bound is loose and the batch's tight.
    assert summary["makespan_s"] < 2.5, summary["makespan_s"]
    assert elapsed < 20, elapsed
    time.sleep(0.2)
    left = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if any(a.startswith("100.10") for a in (p.info["cmdline"] or []))
    ]
    assert left == []


def run_with_peak_rss(*args: str) -> tuple[int, bytes, int]:
    """Run bashfleet, sampling its resident memory; (exit code, stdout, peak RSS bytes)."""
    proc = subprocess.Popen([BASHFLEET, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    me = psutil.Process(proc.pid)
    peak = 0
    chunks: list[bytes] = []
    import threading

    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    while proc.poll() is None:
        try:
            peak = max(peak, me.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    reader.join()
    return proc.returncode, b"".join(chunks), peak


def test_output_flood_is_capped_with_bounded_memory(tmp_path: Path) -> None:
    (tmp_path / "small.sh").write_text("echo small\n")
    _code, _out, baseline = run_with_peak_rss(
        "run", str(tmp_path / "small.sh"), "--workspace", str(tmp_path)
    )
    script = tmp_path / "s.sh"
    script.write_text("yes | head -c 200M\necho fine\n")
    # without --json nothing is kept: the 200 MB stream through with bounded memory
    code, out, peak = run_with_peak_rss("run", str(script), "--workspace", str(tmp_path))
    assert code == 0
    assert out.count(b"\n") < (10 << 20) // 2 + 10  # capped at 10 MiB of "y\n"
    assert b"output truncated" in out
    assert out.rstrip().endswith(b"fine") or b"[2] fine" in out
    assert peak - baseline < 50 << 20, (peak - baseline) / (1 << 20)


@pytest.mark.slow
def test_ten_thousand_commands_with_bounded_memory(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("".join(f"echo {i}\n" for i in range(10_000)))
    code, out, peak = run_with_peak_rss(
        "run", str(script), "--jobs", "8", "--workspace", str(tmp_path)
    )
    assert code == 0
    assert out.count(b"\n") == 10_000
    assert peak < 300 << 20, peak / (1 << 20)


def test_auto_refuses_without_docker_and_names_local(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("ls\nrm -rf build\n")
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    done = subprocess.run(
        [BASHFLEET, "run", str(script), "--workspace", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert [c["status"] for c in summary["commands"]] == ["succeeded", "refused"]
    assert "--isolation local" in summary["commands"][1]["reason"]
    assert done.returncode == 1
