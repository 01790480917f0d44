"""The local executor against real processes: output, limits, timeouts, tree kill, bubblewrap."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from sandbox.errors import ExecutorError
from sandbox.executors import cgroups
from sandbox.executors.base import CHUNK_LIMIT, Executor, truncation_marker
from sandbox.executors.local import LocalExecutor
from sandbox.executors.streams import LineForwarder
from sandbox.model import CommandClass, Job, Limits, Outcome, Status

# scripts/setup installs bubblewrap; without it the sandbox tests fail, they never skip.
needs_bwrap = pytest.mark.usefixtures("bubblewrap")


@pytest.fixture
def bubblewrap() -> str:
    path = shutil.which("bwrap")
    assert path, "bubblewrap is missing: apt-get install -y bubblewrap (scripts/setup does)"
    return path


MODES = [
    "plain",
    "bwrap-cold",  # a bwrap per command (fails clearly if bubblewrap is missing)
    "bwrap-warm",  # a long-lived bwrap per workspace (spawner)
]
SANDBOXED = [m for m in MODES if m != "plain"]


class Recorder:
    """An OutputSink that keeps (time, stream, bytes), or only counts when told to."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.chunks: list[tuple[float, str, bytes]] = []
        self.sizes: dict[str, int] = {"stdout": 0, "stderr": 0}
        self.largest = 0
        self.last: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def __call__(self, stream: str, data: bytes) -> None:
        with self.lock:
            self.sizes[stream] += len(data)
            self.largest = max(self.largest, len(data))
            self.last[stream] = data
            if self.keep:
                self.chunks.append((time.monotonic(), stream, data))

    def text(self, stream: str) -> str:
        return b"".join(d for _, s, d in self.chunks if s == stream).decode()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_executor(mode: str, **kw: object) -> LocalExecutor:
    if mode == "plain":
        return LocalExecutor(use_bwrap=False, **kw)  # type: ignore[arg-type]
    return LocalExecutor(use_bwrap=True, warm=mode == "bwrap-warm", **kw)  # type: ignore[arg-type]


@pytest.fixture
def executor(mode: str) -> Iterator[LocalExecutor]:
    ex = make_executor(mode)
    yield ex
    ex.close()


@pytest.fixture(params=SANDBOXED)
def sandboxed(request: pytest.FixtureRequest) -> Iterator[LocalExecutor]:
    """An executor that sandboxes read-only jobs: cold (bwrap per command) or warm."""
    ex = make_executor(str(request.param))
    yield ex
    ex.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def make_job(workspace: Path, command: str, **kw: object) -> Job:
    # read_only jobs are the ones bubblewrap sandboxes; "plain" mode runs them unsandboxed.
    kw.setdefault("read_only", True)
    return Job(
        id=secrets.token_hex(4),
        command=command,
        cls=CommandClass.SAFE,
        workspace=workspace,
        **kw,  # type: ignore[arg-type]
    )


def run(ex: LocalExecutor, job: Job, sink: Recorder | None = None) -> tuple[Outcome, Recorder]:
    sink = sink or Recorder()
    return ex.run(job, sink), sink


def survivors(token: str, wait_s: float = 0.5) -> list[str]:
    """Live processes whose command line mentions ``token`` (after SIGKILL has had time to land)."""
    end = time.monotonic() + wait_s
    while True:
        found = []
        for p in psutil.process_iter(["cmdline", "status"]):
            if p.info["status"] != psutil.STATUS_ZOMBIE and token in " ".join(
                p.info["cmdline"] or ()
            ):
                found.append(" ".join(p.info["cmdline"]))
        if not found or time.monotonic() > end:
            return found
        time.sleep(0.05)


def sleep_arg() -> str:
    """A unique sleep duration, so this test's sleepers can be told from anyone else's."""
    return f"1000.{secrets.randbelow(10**9):09d}1"


# -- exit status, output ---------------------------------------------------------


def test_is_an_executor() -> None:
    assert isinstance(LocalExecutor(use_bwrap=False), Executor)


def test_success_failure_and_exit_code(executor: LocalExecutor, workspace: Path) -> None:
    ok, out = run(executor, make_job(workspace, "echo hello"))
    assert ok.status is Status.SUCCEEDED and ok.exit_code == 0 and ok.error is None
    assert out.text("stdout") == "hello\n"
    bad, _ = run(executor, make_job(workspace, "echo oops >&2; exit 3"))
    assert bad.status is Status.FAILED and bad.exit_code == 3 and bad.signal is None
    assert bad.duration_s >= 0


def test_runs_in_the_workspace_with_empty_stdin(executor: LocalExecutor, workspace: Path) -> None:
    (workspace / "here.txt").write_text("x")
    outcome, out = run(executor, make_job(workspace, "pwd; ls; cat"))
    assert outcome.status is Status.SUCCEEDED
    assert out.text("stdout") == f"{workspace.resolve()}\nhere.txt\n"


def test_streams_are_separate_and_line_streamed(executor: LocalExecutor, workspace: Path) -> None:
    script = "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.2; done; printf tail"
    outcome, out = run(executor, make_job(workspace, script))
    ended = time.monotonic()
    assert outcome.status is Status.SUCCEEDED
    assert out.text("stdout") == "out1\nout2\nout3\ntail"
    assert out.text("stderr") == "err1\nerr2\nerr3\n"
    first_at = next(t for t, s, _ in out.chunks if s == "stdout")
    assert ended - first_at > 0.3, "the first line should arrive while the command still runs"
    assert all(d.endswith(b"\n") for _, _, d in out.chunks[:-1]), "chunks are whole lines"


def test_output_cap_sends_marker_and_drains(executor: LocalExecutor, workspace: Path) -> None:
    rss_before = psutil.Process().memory_info().rss
    sink = Recorder(keep=False)
    t0 = time.monotonic()
    outcome, _ = run(executor, make_job(workspace, "yes | head -c 50M; echo done >&2"), sink)
    assert outcome.status is Status.SUCCEEDED, "the command was drained, not blocked"
    assert outcome.truncated
    cap = 10 << 20
    assert sink.sizes["stdout"] == cap + len(truncation_marker(cap))
    assert sink.last["stdout"] == truncation_marker(cap)
    assert sink.last["stderr"] == b"done\n"
    assert sink.largest <= CHUNK_LIMIT
    assert psutil.Process().memory_info().rss - rss_before < 50 << 20
    assert time.monotonic() - t0 < 10


def test_a_huge_single_line_is_chunked(executor: LocalExecutor, workspace: Path) -> None:
    size = 20 << 20
    sink = Recorder(keep=False)
    job = make_job(workspace, f"head -c {size} /dev/zero | tr '\\0' a", output_cap=32 << 20)
    outcome, _ = run(executor, job, sink)
    assert outcome.status is Status.SUCCEEDED and not outcome.truncated
    assert sink.sizes["stdout"] == size
    assert sink.largest == CHUNK_LIMIT


# -- timeout, cancel, leftovers ----------------------------------------------------


def escaping_children(tag: str) -> str:
    """Background children that leave in every way we know, each sleeping ``tag`` seconds."""
    return (
        f"setsid sleep {tag} & "  # new session
        f"( (sleep {tag} &) & ); "  # double fork, orphaned
        f"nohup sleep {tag} >/dev/null 2>&1 & "  # ignores SIGHUP
        f"sleep {tag} | cat & "  # a grandchild holding our stdout pipe
        f"setsid bash -c 'sleep {tag} | cat' & "  # a new session that also holds stdout
    )


def test_timeout_kills_the_whole_tree(executor: LocalExecutor, workspace: Path) -> None:
    tag = sleep_arg()
    job = make_job(workspace, escaping_children(tag) + f"sleep {tag}", timeout_s=1)
    t0 = time.monotonic()
    outcome, _ = run(executor, job)
    assert time.monotonic() - t0 < 2
    assert outcome.status is Status.TIMED_OUT and "timed out" in (outcome.error or "")
    assert survivors(tag) == []


def test_a_normal_end_kills_leftovers(executor: LocalExecutor, workspace: Path) -> None:
    tag = sleep_arg()
    t0 = time.monotonic()
    outcome, out = run(executor, make_job(workspace, escaping_children(tag) + "echo done"))
    assert time.monotonic() - t0 < 1.5, "a grandchild holding stdout must not keep us waiting"
    assert outcome.status is Status.SUCCEEDED and out.text("stdout") == "done\n"
    assert survivors(tag) == []


def test_no_survivors_under_concurrency(executor: LocalExecutor, workspace: Path) -> None:
    tag = sleep_arg()
    jobs = [make_job(workspace, f"setsid sleep {tag} & (sleep {tag} &); echo x") for _ in range(48)]
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda job: run(executor, job)[0], jobs))
    assert {o.status for o in outcomes} == {Status.SUCCEEDED}
    assert survivors(tag) == []


def test_closing_stdout_does_not_end_the_command(executor: LocalExecutor, workspace: Path) -> None:
    job = make_job(workspace, "exec >&- 2>&-; sleep 0.3; exit 4", read_only=False)
    outcome, _ = run(executor, job)
    assert outcome.status is Status.FAILED and outcome.exit_code == 4


def test_cancel_from_another_thread(executor: LocalExecutor, workspace: Path) -> None:
    tag = sleep_arg()
    job = make_job(workspace, f"setsid sleep {tag} & sleep {tag}")
    threading.Timer(0.3, executor.cancel, args=(job.id,)).start()
    t0 = time.monotonic()
    outcome, _ = run(executor, job)
    assert time.monotonic() - t0 < 1.3
    assert outcome.status is Status.CANCELLED
    assert survivors(tag) == []


def test_a_failing_sink_still_ends_the_job(executor: LocalExecutor, workspace: Path) -> None:
    tag = sleep_arg()

    def sink(stream: str, data: bytes) -> None:
        raise RuntimeError("sink broke")

    with pytest.raises(RuntimeError, match="sink broke"):
        executor.run(make_job(workspace, f"echo hi; sleep {tag}"), sink)
    assert survivors(tag) == []


def test_cancel_before_run_is_not_lost(workspace: Path) -> None:
    ex = LocalExecutor(use_bwrap=False)
    job = make_job(workspace, "touch ran", read_only=False)
    ex.cancel(job.id)
    outcome, _ = run(ex, job)
    assert outcome.status is Status.CANCELLED
    assert not (workspace / "ran").exists()


# -- environment and limits ----------------------------------------------------------


def test_environment_is_scrubbed(
    executor: LocalExecutor, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASHFLEET_SECRET", "x")
    monkeypatch.setenv("BASHFLEET_DATABASE_URL", "postgresql://u:p@h/db")
    job = make_job(
        workspace,
        "env; echo ---; cat /proc/self/environ | tr '\\0' '\\n'",
        env=(("GREETING", "hi"),),
    )
    outcome, out = run(executor, job)
    assert outcome.status is Status.SUCCEEDED
    listed, from_proc = out.text("stdout").split("---\n")
    for text in (listed, from_proc):
        names = {line.split("=", 1)[0] for line in text.splitlines()}
        assert "BASHFLEET_SECRET" not in text and "postgresql" not in text
        assert {"PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "GREETING"} <= names
        assert not {n for n in names if n.startswith("BASHFLEET_")} - {"BASHFLEET_JOB"}
        assert "TERM=dumb" in text and f"HOME={os.environ['HOME']}\n" not in text


LIMITS = Limits(cpu_s=50, memory_bytes=1 << 30, file_size_bytes=1 << 20, open_files=100)
SHOW_LIMITS = (
    "ulimit -S -t; ulimit -H -t; ulimit -v; ulimit -f; ulimit -n; echo ${BASH_ENV-unset}; "
    "bash -c 'ulimit -n'; ls /proc/self/fd"
)
EXPECTED_LIMITS = "50\n51\n1048576\n1024\n100\nunset\n100\n0\n1\n2\n3\n"  # 3: ls's own dir


def test_limits_are_set_and_leave_no_trace(executor: LocalExecutor, workspace: Path) -> None:
    outcome, out = run(executor, make_job(workspace, SHOW_LIMITS, limits=LIMITS))
    assert (outcome.status, out.text("stderr")) == (Status.SUCCEEDED, "")
    assert out.text("stdout") == EXPECTED_LIMITS


def test_limits_through_prlimit_when_bash_env_fails(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = LocalExecutor(use_bwrap=False)
    monkeypatch.setattr(ex, "_bash_env_works", lambda sandboxed: False)
    outcome, out = run(ex, make_job(workspace, SHOW_LIMITS, limits=LIMITS))
    assert outcome.status is Status.SUCCEEDED
    assert out.text("stdout") == EXPECTED_LIMITS


def test_no_limits_at_all(workspace: Path) -> None:
    none = Limits(cpu_s=None, memory_bytes=None, file_size_bytes=None, open_files=None)
    outcome, out = run(LocalExecutor(use_bwrap=False), make_job(workspace, "echo ok", limits=none))
    assert outcome.status is Status.SUCCEEDED and out.text("stdout") == "ok\n"


def test_file_size_limit(executor: LocalExecutor, workspace: Path) -> None:
    job = make_job(
        workspace,
        "head -c 10M /dev/zero > f",
        read_only=False,
        limits=Limits(file_size_bytes=1 << 20),
    )
    outcome, _ = run(executor, job)
    assert outcome.status is Status.FAILED
    assert "file size limit" in (outcome.error or "")
    assert (workspace / "f").stat().st_size <= 1 << 20


def test_file_size_limit_in_the_sandbox(sandboxed: LocalExecutor, workspace: Path) -> None:
    job = make_job(
        workspace, "head -c 10M /dev/zero > /tmp/f", limits=Limits(file_size_bytes=1 << 20)
    )
    outcome, _ = run(sandboxed, job)
    assert outcome.status is Status.FAILED
    assert "file size limit" in (outcome.error or "")


def test_memory_limit(executor: LocalExecutor, workspace: Path) -> None:
    job = make_job(
        workspace, "python3 -c 'x = bytearray(2 << 30)'", limits=Limits(memory_bytes=512 << 20)
    )
    outcome, out = run(executor, job)
    assert outcome.status is Status.FAILED
    assert "MemoryError" in out.text("stderr")
    assert "memory limit" in (outcome.error or "")


def test_cpu_limit(executor: LocalExecutor, workspace: Path) -> None:
    job = make_job(workspace, "while :; do :; done", limits=Limits(cpu_s=1), timeout_s=10)
    outcome, _ = run(executor, job)
    assert outcome.status is Status.FAILED
    assert "CPU time limit" in (outcome.error or "")


def test_missing_workspace_is_an_infrastructure_error(tmp_path: Path) -> None:
    with pytest.raises(ExecutorError, match="does not exist"):
        LocalExecutor(use_bwrap=False).run(make_job(tmp_path / "nope", "true"), Recorder())


# -- bubblewrap ------------------------------------------------------------------------


@needs_bwrap
def test_isolation_describes_what_is_in_force() -> None:
    assert LocalExecutor().isolation.startswith("bubblewrap (read-only workspace, pid namespace)")
    assert LocalExecutor(use_bwrap=False).isolation.startswith("process group only")


def test_read_only_workspace_cannot_be_written(sandboxed: LocalExecutor, workspace: Path) -> None:
    (workspace / "kept").write_text("original")
    job = make_job(workspace, "touch x; echo changed > kept; rm kept; touch /etc/x /x")
    outcome, out = run(sandboxed, job)
    assert outcome.status is Status.FAILED
    assert "Read-only file system" in out.text("stderr")
    assert sorted(p.name for p in workspace.iterdir()) == ["kept"]
    assert (workspace / "kept").read_text() == "original"
    assert not Path("/x").exists()


def test_writable_job_in_bwrap_mode_can_write(sandboxed: LocalExecutor, workspace: Path) -> None:
    outcome, _ = run(sandboxed, make_job(workspace, "touch x", read_only=False))
    assert outcome.status is Status.SUCCEEDED and (workspace / "x").exists()


def test_sandbox_cannot_touch_bashfleet(sandboxed: LocalExecutor, workspace: Path) -> None:
    me = os.getpid()
    script = (
        f"kill -9 {me} && echo KILLED; ls /proc/{me}/environ && echo SEEN; "
        "echo x > /proc/sys/kernel/domainname && echo SYSCTL; "
        "mount -o remount,rw / && echo REMOUNTED; true"
    )
    outcome, out = run(sandboxed, make_job(workspace, script))
    assert outcome.status is Status.SUCCEEDED
    assert out.text("stdout") == ""
    assert psutil.pid_exists(me)


def test_no_capabilities_inside(sandboxed: LocalExecutor, workspace: Path) -> None:
    job = make_job(workspace, "grep -E '^Cap(Prm|Eff)' /proc/self/status")
    outcome, out = run(sandboxed, job)
    assert outcome.status is Status.SUCCEEDED
    assert out.text("stdout").split() == ["CapPrm:", "0" * 16, "CapEff:", "0" * 16]


@pytest.mark.parametrize("warm", [False, True])
@needs_bwrap
def test_data_folder_is_hidden_but_the_workspace_inside_it_is_not(
    tmp_path: Path, warm: bool
) -> None:
    data = tmp_path / "data"
    ws = data / "workspaces" / "w1"
    ws.mkdir(parents=True)
    (data / "bashfleet.db").write_text("secret")
    (ws / "f").write_text("visible\n")
    ex = LocalExecutor(use_bwrap=True, hidden_paths=(data,), warm=warm)
    outcome, out = run(ex, make_job(ws, f"cat f; ls -A {data}; cat {data}/bashfleet.db"))
    ex.close()
    assert outcome.status is Status.FAILED
    assert out.text("stdout") == "visible\nworkspaces\n"
    assert "secret" not in out.text("stdout")


@pytest.mark.parametrize("warm", [False, True])
@needs_bwrap
def test_a_sandbox_that_cannot_start_is_an_infrastructure_error(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, warm: bool
) -> None:
    # warm: the long-lived sandbox cannot start either, and the job falls back to its own bwrap
    ex = LocalExecutor(use_bwrap=True, warm=warm)
    assert ex.isolation.startswith("bubblewrap") and ex._bwrap is not None
    view = ex._bwrap.argv
    broken = ["--ro-bind", "/nonexistent", "/x", "--"]
    monkeypatch.setattr(ex._bwrap, "argv", lambda *a, **kw: [*view(*a, **kw)[:-1], *broken])
    with pytest.raises(ExecutorError, match="could not set up the sandbox"):
        ex.run(make_job(workspace, "true"), Recorder())
    # ...while a command that merely looks like it is still the command's own failure
    fake = make_job(workspace, "echo 'bwrap: fake' >&2; exit 1")
    ex.close()
    good = LocalExecutor(use_bwrap=True, warm=warm)
    outcome, _ = run(good, fake)
    good.close()
    assert outcome.status is Status.FAILED and outcome.exit_code == 1


def test_docker_socket_folder_is_hidden(sandboxed: LocalExecutor, workspace: Path) -> None:
    outcome, out = run(sandboxed, make_job(workspace, "ls -A /run /var/run"))
    assert outcome.status is Status.SUCCEEDED
    assert "docker" not in out.text("stdout")


# -- the line forwarder (pure) -------------------------------------------------------


def test_forwarder_holds_partial_lines_until_newline_or_close() -> None:
    sink = Recorder()
    fwd = LineForwarder("stdout", sink, cap=100)
    fwd.feed(b"ab")
    assert sink.chunks == []
    fwd.feed(b"c\nde")
    fwd.close()
    assert [d for _, _, d in sink.chunks] == [b"abc\n", b"de"]


def test_forwarder_cuts_at_the_cap_once() -> None:
    sink = Recorder()
    fwd = LineForwarder("stderr", sink, cap=5)
    fwd.feed(b"1234\n5678\n")
    fwd.feed(b"more\n")
    fwd.close()
    assert [d for _, _, d in sink.chunks] == [b"1234\n", truncation_marker(5)]
    assert fwd.truncated


# -- the process-count limit (pids cgroups) ---------------------------------------------

SMALL_PIDS = cgroups.PidsLimits(job=64, sandbox=96)


@pytest.fixture
def pids_cgroups() -> cgroups.PidsCgroups:
    return require_pids_cgroups()


def require_pids_cgroups() -> cgroups.PidsCgroups:
    """This process's pids cgroups; CI runs as root, where they must work (never a skip)."""
    shared = cgroups.shared()
    assert shared.problem is None, (
        f"no pids cgroup for the local pool: {shared.problem} (run the tests as root with "
        "/sys/fs/cgroup writable; cgroup v1 pids hierarchy or v2 with the pids controller)"
    )
    assert shared.base is not None
    return shared


def bomb(tag: str, depth: int = 10) -> str:
    """A fork bomb that doubles at every level, bounded (2 x 2^(depth+1) processes if nothing
    held it, below this machine's pid_max) in case the limit under test does not hold."""
    return f"b(){{ [ $1 -lt {depth} ] && {{ b $(($1+1)) & b $(($1+1)) & }}; sleep {tag}; }}; b 0"


class GroupSampler:
    """Polls every group under this process's pids cgroup: the most tasks each one held."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.peak: dict[str, int] = {}
        self.cap: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for group in self.base.iterdir():
                try:
                    current = int((group / "pids.current").read_text())
                    self.cap[group.name] = int((group / "pids.max").read_text())
                except (OSError, ValueError):
                    continue
                self.peak[group.name] = max(self.peak.get(group.name, 0), current)

    def __enter__(self) -> GroupSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_fork_bomb_is_held_by_the_pids_cgroup(
    mode: str, pids_cgroups: cgroups.PidsCgroups, tmp_path: Path
) -> None:
    """Plain (a writable job, as with --isolation local), a bwrap of its own, the warm sandbox:
    the bomb never holds more tasks than its group allows, ends by its timeout, leaves nothing,
    and a command in another workspace runs meanwhile."""
    assert pids_cgroups.base is not None
    ex = make_executor(mode, pids=SMALL_PIDS)
    ws, other = tmp_path / "bomb", tmp_path / "other"
    ws.mkdir()
    other.mkdir()
    tag = sleep_arg()
    read_only = mode != "plain"
    limit = SMALL_PIDS.sandbox if mode == "bwrap-warm" else SMALL_PIDS.job
    job = make_job(
        ws, bomb(tag), timeout_s=3.0, read_only=read_only, limits=Limits(pids=SMALL_PIDS.job)
    )
    result: list[Outcome] = []
    try:
        with GroupSampler(pids_cgroups.base) as sampler:
            bomber = threading.Thread(target=lambda: result.append(run(ex, job)[0]))
            t0 = time.monotonic()
            bomber.start()
            time.sleep(1.0)  # the bomb is at its limit by now
            sentinel, out = run(ex, make_job(other, "echo alive", read_only=read_only))
            assert sentinel.status is Status.SUCCEEDED and out.text("stdout") == "alive\n"
            assert time.monotonic() - t0 < 2.5, "the sentinel had to wait for the bomb"
            bomber.join(10)
        assert result and result[0].status is Status.TIMED_OUT, result
        assert time.monotonic() - t0 < 6
        assert survivors(tag, wait_s=2) == []
        held = {name: n for name, n in sampler.peak.items() if sampler.cap.get(name) == limit}
        assert held and max(held.values()) == limit, (sampler.peak, sampler.cap)
        assert all(n <= sampler.cap[name] for name, n in sampler.peak.items()), sampler.peak
    finally:
        ex.close()
    if mode != "bwrap-warm":  # a job's group goes with it; a sandbox's with the sandbox
        assert not [g for g in pids_cgroups.base.iterdir() if g.name.startswith("job-")]


SHOW_PIDS_MAX = (
    'cat "/sys/fs/cgroup/pids$(grep -E "^[0-9]+:pids:" /proc/self/cgroup | cut -d: -f3)/pids.max"'
)


def test_each_job_or_sandbox_has_its_own_limit(
    mode: str, pids_cgroups: cgroups.PidsCgroups, workspace: Path
) -> None:
    ex = make_executor(mode)
    try:
        outcome, out = run(ex, make_job(workspace, SHOW_PIDS_MAX, limits=Limits(pids=300)))
        assert outcome.status is Status.SUCCEEDED, out.text("stderr")
        expected = cgroups.SANDBOX_PIDS_MAX if mode == "bwrap-warm" else 300
        assert out.text("stdout") == f"{expected}\n"
        job = make_job(workspace, SHOW_PIDS_MAX, limits=Limits(pids=None), read_only=False)
        outcome, out = run(ex, job)  # a writable job: never in the warm sandbox
        assert out.text("stdout") == f"{cgroups.JOB_PIDS_MAX}\n", out.text("stderr")
    finally:
        ex.close()


def test_the_cgroup_catches_what_left_session_and_environment(
    executor: LocalExecutor, pids_cgroups: cgroups.PidsCgroups, workspace: Path
) -> None:
    """``setsid env -i``: no group, no marker, orphaned once the shell exits; the pids cgroup
    still holds it (and the bwrap paths' pid namespaces)."""
    tag = sleep_arg()
    outcome, _ = run(executor, make_job(workspace, f"setsid env -i sleep {tag} & sleep 0.2"))
    assert outcome.status is Status.SUCCEEDED
    assert survivors(tag) == []


def test_limits_through_prlimit_still_join_the_cgroup(
    pids_cgroups: cgroups.PidsCgroups, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = LocalExecutor(use_bwrap=False)
    monkeypatch.setattr(ex, "_bash_env_works", lambda sandboxed: False)
    outcome, out = run(ex, make_job(workspace, SHOW_PIDS_MAX, limits=Limits(pids=77)))
    assert (outcome.status, out.text("stdout")) == (Status.SUCCEEDED, "77\n"), out.text("stderr")


def test_without_cgroups_the_pool_still_runs(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not root, or a read-only /sys: no limit (said once in the log and by doctor), jobs run."""
    unusable = cgroups.PidsCgroups(root=Path("/proc/no-cgroup-here"))
    assert unusable.problem is not None and unusable.group("job", 10) is None
    monkeypatch.setattr(cgroups, "shared", lambda: unusable)
    ex = LocalExecutor(use_bwrap=False)
    outcome, out = run(ex, make_job(workspace, "echo ok", read_only=False))
    assert outcome.status is Status.SUCCEEDED and out.text("stdout") == "ok\n"
    assert "no process-count limit" in ex.isolation


def test_groups_of_a_dead_bashfleet_are_removed_at_start(
    pids_cgroups: cgroups.PidsCgroups,
) -> None:
    assert pids_cgroups.base is not None
    stale = pids_cgroups.base.parent / "1-1"  # pid 1 did not start at second 1: gone
    group = stale / "job-1"
    group.mkdir(parents=True)
    tag = sleep_arg()
    leftover = psutil.Popen(
        ["/bin/sh", "-c", f'echo $$ > "$0" && exec sleep {tag}', str(group / "cgroup.procs")]
    )
    try:
        deadline = time.monotonic() + 5
        while not (group / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.01)
        cgroups.PidsCgroups()  # what a new bashfleet does first
        assert leftover.wait(5) == -9
        assert not stale.exists()
    finally:
        with contextlib.suppress(psutil.Error):
            leftover.kill()
        with contextlib.suppress(OSError):
            group.rmdir()
            stale.rmdir()


# -- by hand: python tests/test_local_executor.py [N] ----------------------------------


def _throughput(n: int = 1000, threads: int = 8) -> None:
    """`echo N` x n at `threads` wide: xargs -P vs LocalExecutor without and with bwrap."""
    import subprocess
    import sys
    import tempfile

    t0 = time.perf_counter()
    xargs = f"seq {n} | xargs -P{threads} -I{{}} bash -c 'echo {{}}' >/dev/null"
    subprocess.run(xargs, shell=True, check=True)
    base = time.perf_counter() - t0
    print(f"xargs -P{threads} bash -c:           {base:.2f} s")
    ws = Path(tempfile.mkdtemp())
    for mode in ("plain", "bwrap-cold", "bwrap-warm"):
        ex = make_executor(mode)
        ex.run(make_job(ws, "true"), Recorder())  # the self-tests are not measured
        jobs = [make_job(ws, f"echo {i}") for i in range(n)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            done = list(pool.map(lambda job, ex=ex: ex.run(job, Recorder(keep=False)), jobs))
        took = time.perf_counter() - t0
        assert all(o.status is Status.SUCCEEDED for o in done)
        t0 = time.perf_counter()
        for job in jobs[:100]:
            ex.run(job, lambda s, d: None)
        serial_ms = (time.perf_counter() - t0) * 10
        ex.close()
        label = f"LocalExecutor, {mode}:"
        print(f"{label:28s} {took:.2f} s = {took / base:.2f}x  ({serial_ms:.2f} ms/cmd serial)")
    sys.stdout.flush()


if __name__ == "__main__":
    import sys

    _throughput(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
