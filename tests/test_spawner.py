"""Warm sandboxes (sandbox/executors/spawner.py): reuse, leftovers, death, idling, closing."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sandbox.errors import ExecutorError
from sandbox.executors import cgroups, spawner
from sandbox.executors.local import LocalExecutor
from sandbox.model import Limits, Status
from tests.test_local_executor import (
    SMALL_PIDS,
    Recorder,
    bomb,
    bubblewrap,  # noqa: F401  (the fixture behind needs_bwrap)
    make_job,
    needs_bwrap,
    require_pids_cgroups,
    run,
    sleep_arg,
    survivors,
)

pytestmark = needs_bwrap


@pytest.fixture
def warm() -> Iterator[LocalExecutor]:
    ex = LocalExecutor(use_bwrap=True, warm=True)
    yield ex
    ex.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def server_python(ex: LocalExecutor) -> psutil.Process:
    """The Python server inside the one warm sandbox (bwrap -> bwrap init -> python)."""
    assert ex._spawners is not None
    (server,) = ex._spawners.servers()
    assert server.pid is not None
    outer = psutil.Process(server.pid)
    return next(p for p in outer.children(recursive=True) if "python" in p.name())


def test_one_sandbox_serves_many_jobs(warm: LocalExecutor, workspace: Path) -> None:
    pids = set()
    for i in range(5):
        outcome, out = run(warm, make_job(workspace, f"echo {i}; echo $$"))
        assert outcome.status is Status.SUCCEEDED
        first, pid = out.text("stdout").split()
        assert first == str(i)
        pids.add(int(pid))
    assert len(pids) == 5  # a shell each...
    assert warm._spawners is not None and len(warm._spawners.servers()) == 1  # ...one sandbox
    other = workspace.parent / "other"
    other.mkdir()
    assert run(warm, make_job(other, "pwd"))[1].text("stdout") == f"{other.resolve()}\n"
    assert len(warm._spawners.servers()) == 2  # a sandbox per workspace


def test_a_leftover_that_left_session_and_environment_is_killed(
    warm: LocalExecutor, workspace: Path
) -> None:
    tag = sleep_arg()  # the one escape the marker and group cannot catch: the subreaper does
    job = make_job(workspace, f"(setsid env -i sleep {tag} &); echo started")
    outcome, out = run(warm, job)
    assert outcome.status is Status.SUCCEEDED and out.text("stdout") == "started\n"
    run(warm, make_job(workspace, "true"))  # any job's end sweeps such orphans
    assert survivors(tag) == []


def test_jobs_in_flight_keep_their_processes(warm: LocalExecutor, workspace: Path) -> None:
    """One job's end must not kill another job's (marked or same-session) processes."""
    long = make_job(workspace, "(sleep 0.6 &); setsid sleep 0.6 & sleep 0.6; wait; echo ok")
    result: list[tuple[object, Recorder]] = []
    thread = threading.Thread(target=lambda: result.append(run(warm, long)))
    thread.start()
    time.sleep(0.2)
    for _ in range(5):
        assert run(warm, make_job(workspace, "true"))[0].status is Status.SUCCEEDED
    thread.join()
    outcome, out = result[0]
    assert outcome.status is Status.SUCCEEDED  # type: ignore[attr-defined]
    assert out.text("stdout") == "ok\n"


def test_the_server_dying_mid_job_fails_that_job_and_the_next_one_works(
    warm: LocalExecutor, workspace: Path
) -> None:
    run(warm, make_job(workspace, "true"))
    python = server_python(warm)
    tag = sleep_arg()
    job = make_job(workspace, f"setsid sleep {tag} & sleep {tag}")
    threading.Timer(0.3, python.send_signal, args=(signal.SIGKILL,)).start()
    t0 = time.monotonic()
    with pytest.raises(ExecutorError, match="warm sandbox died") as info:
        warm.run(job, Recorder())
    assert info.value.retryable
    assert time.monotonic() - t0 < 2
    assert survivors(tag) == []  # the pid namespace went with its server
    outcome, out = run(warm, make_job(workspace, "echo again"))
    assert outcome.status is Status.SUCCEEDED and out.text("stdout") == "again\n"
    assert server_python(warm).pid != python.pid


def test_a_job_cannot_reach_into_the_server(warm: LocalExecutor, workspace: Path) -> None:
    """The server is not dumpable: a job cannot read its environment, fds or memory."""
    script = (
        "head -c 200 /proc/2/cmdline | tr '\\0' ' ' | grep -q python && echo SERVER; "
        "cat /proc/2/environ >/dev/null 2>&1 && echo ENVIRON; "
        "readlink /proc/2/fd/0 >/dev/null 2>&1 && echo FDS; "
        "head -c1 /proc/2/mem >/dev/null 2>&1 && echo MEM; true"
    )
    outcome, out = run(warm, make_job(workspace, script))
    assert outcome.status is Status.SUCCEEDED
    assert out.text("stdout") == "SERVER\n"


def test_idle_sandboxes_are_closed(
    warm: LocalExecutor, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spawner, "IDLE_S", 0.2)
    run(warm, make_job(workspace, "true"))
    python = server_python(warm)
    python.wait(timeout=5)  # the reader checks once a second
    outcome, _ = run(warm, make_job(workspace, "true"))
    assert outcome.status is Status.SUCCEEDED
    assert server_python(warm).pid != python.pid


def test_close_ends_every_sandbox(workspace: Path) -> None:
    ex = LocalExecutor(use_bwrap=True, warm=True)
    run(ex, make_job(workspace, "true"))
    python = server_python(ex)
    ex.close()
    python.wait(timeout=5)
    with pytest.raises(psutil.NoSuchProcess):
        python.status()


def test_a_huge_command_takes_a_bwrap_of_its_own(warm: LocalExecutor, workspace: Path) -> None:
    command = "true " + "x" * (spawner.MAX_REQUEST + 1) + "; echo big"
    outcome, out = run(warm, make_job(workspace, command))
    assert outcome.status is Status.SUCCEEDED and out.text("stdout") == "big\n"


def test_limits_without_bash_env_take_a_bwrap_of_their_own(
    warm: LocalExecutor, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warm, "_bash_env_works", lambda sandboxed: False)
    job = make_job(workspace, "ulimit -n", limits=Limits(open_files=77))
    outcome, out = run(warm, job)
    assert outcome.status is Status.SUCCEEDED and out.text("stdout") == "77\n"


def test_the_server_is_not_in_bashfleets_session() -> None:
    """A Ctrl-C to the CLI's process group must not reach the warm sandbox first."""
    ex = LocalExecutor(use_bwrap=True, warm=True)
    try:
        run(ex, make_job(Path("/tmp"), "true"))
        assert ex._spawners is not None
        (server,) = ex._spawners.servers()
        assert server.pid is not None and os.getsid(server.pid) != os.getsid(0)
    finally:
        ex.close()


def test_tmp_is_fresh_again_once_the_sandbox_is_quiet(warm: LocalExecutor, workspace: Path) -> None:
    fresh = run(warm, make_job(workspace, "ls -A /tmp"))[1].text("stdout")  # mount skeleton
    first, _ = run(warm, make_job(workspace, "mkdir /tmp/d && touch /tmp/d/f /tmp/g"))
    assert first.status is Status.SUCCEEDED
    outcome, out = run(warm, make_job(workspace, "ls -A /tmp"))
    assert outcome.status is Status.SUCCEEDED and out.text("stdout") == fresh


def test_a_replaced_workspace_gets_a_new_sandbox(warm: LocalExecutor, workspace: Path) -> None:
    (workspace / "f").write_text("old\n")
    assert run(warm, make_job(workspace, "cat f"))[1].text("stdout") == "old\n"
    workspace.rename(workspace.with_name("gone"))
    workspace.mkdir()
    (workspace / "f").write_text("new\n")
    assert run(warm, make_job(workspace, "cat f"))[1].text("stdout") == "new\n"


def test_nothing_outlives_a_killed_bashfleet(workspace: Path) -> None:
    """bwrap --die-with-parent: the warm sandbox and its jobs die with the process that owns it."""
    tag = sleep_arg()
    command = f"setsid sleep {tag} & sleep {tag}"
    code = (
        "from pathlib import Path; from tests.test_local_executor import *; "
        "ex = LocalExecutor(use_bwrap=True, warm=True); "
        f"ex.run(make_job(Path({str(workspace)!r}), {command!r}), Recorder())"
    )
    owner = psutil.Popen([sys.executable, "-c", code], cwd=Path(__file__).parent.parent)
    deadline = time.monotonic() + 10
    while not survivors(tag, wait_s=0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert survivors(tag, wait_s=0), "the job did not start"
    owner.kill()
    owner.wait()
    assert survivors(tag, wait_s=2) == []


def start_and_wait(
    ex: LocalExecutor, job: object, cancel_after: float | None = None
) -> tuple[object, Recorder]:
    """``start`` (the watch-loop path); the result that ``on_done`` got."""
    sink, done = Recorder(), threading.Event()
    results: list[object] = []

    def on_done(result: object) -> None:
        results.append(result)
        done.set()

    assert ex.start(job, sink, on_done)  # type: ignore[arg-type]
    if cancel_after is not None:
        time.sleep(cancel_after)
        ex.cancel(job.id)  # type: ignore[attr-defined]
    assert done.wait(20)
    assert len(results) == 1
    return results[0], sink


def test_start_runs_jobs_without_a_thread_each(warm: LocalExecutor, workspace: Path) -> None:
    job = make_job(workspace, "echo first")
    assert not warm.start(job, Recorder(), lambda r: None)  # self-tests not run yet: run() it
    run(warm, job)
    threads = threading.active_count()
    outcomes = [
        start_and_wait(warm, make_job(workspace, f"echo {i}; exit {i % 3}")) for i in range(6)
    ]
    for i, (outcome, out) in enumerate(outcomes):
        assert outcome.exit_code == i % 3  # type: ignore[attr-defined]
        assert out.text("stdout") == f"{i}\n"
    assert threading.active_count() <= threads + 1  # the one watch thread


def test_start_honours_timeout_and_cancel(warm: LocalExecutor, workspace: Path) -> None:
    run(warm, make_job(workspace, "true"))
    token = f"bf-{os.getpid()}-{time.monotonic_ns()}"
    outcome, _ = start_and_wait(warm, make_job(workspace, f"sleep 30 # {token}", timeout_s=0.5))
    assert outcome.status is Status.TIMED_OUT  # type: ignore[attr-defined]
    outcome, _ = start_and_wait(
        warm, make_job(workspace, f"sleep 31 & sleep 30 # {token}"), cancel_after=0.3
    )
    assert outcome.status is Status.CANCELLED  # type: ignore[attr-defined]
    assert survivors(token) == []


def test_start_reports_a_dead_server_as_an_executor_error(
    warm: LocalExecutor, workspace: Path
) -> None:
    run(warm, make_job(workspace, "true"))
    sink, done = Recorder(), threading.Event()
    results: list[object] = []
    job = make_job(workspace, "sleep 30")
    assert warm.start(job, sink, lambda r: (results.append(r), done.set()))
    time.sleep(0.3)
    server_python(warm).kill()
    assert done.wait(20)
    assert isinstance(results[0], ExecutorError)
    assert "warm sandbox died" in str(results[0])


# -- the sandbox's pids cgroup ---------------------------------------------------------------


def test_the_sandbox_runs_in_its_own_pids_cgroup(workspace: Path) -> None:
    """bwrap is started in the group (so is everything below it); a job cannot leave it (/sys
    is read-only in there); the group is removed with the sandbox."""
    pids_cgroups = require_pids_cgroups()
    assert pids_cgroups.base is not None
    ex = LocalExecutor(use_bwrap=True, warm=True)
    try:
        outcome, out = run(ex, make_job(workspace, "grep -E '^[0-9]+:pids:' /proc/self/cgroup"))
        assert outcome.status is Status.SUCCEEDED
        path = out.text("stdout").strip().split(":", 2)[2]
        assert path.startswith(f"/{cgroups.GROUP_DIR}/") and "/sandbox-" in path, path
        group = pids_cgroups.base / Path(path).name
        assert ex._spawners is not None
        (server,) = ex._spawners.servers()
        assert server.pid in [int(p) for p in (group / "cgroup.procs").read_text().split()]
        assert server_python(ex).pid in [
            int(p) for p in (group / "cgroup.procs").read_text().split()
        ]
        escape = f"echo $$ > {pids_cgroups.base.parent.parent}/cgroup.procs"
        outcome, out = run(ex, make_job(workspace, escape))
        assert outcome.status is Status.FAILED and "Read-only" in out.text("stderr")
    finally:
        ex.close()
    assert not group.exists()


def test_after_a_fork_bomb_the_sandbox_serves_the_next_job(workspace: Path) -> None:
    require_pids_cgroups()
    ex = LocalExecutor(use_bwrap=True, warm=True, pids=SMALL_PIDS)
    try:
        run(ex, make_job(workspace, "true"))
        before = server_python(ex).pid
        tag = sleep_arg()
        outcome, _ = run(ex, make_job(workspace, bomb(tag), timeout_s=2.0))
        assert outcome.status is Status.TIMED_OUT
        assert survivors(tag, wait_s=2) == []
        outcome, out = run(ex, make_job(workspace, "echo next"))
        assert (outcome.status, out.text("stdout")) == (Status.SUCCEEDED, "next\n")
        assert server_python(ex).pid == before  # the same sandbox: its dead were reaped
    finally:
        ex.close()
