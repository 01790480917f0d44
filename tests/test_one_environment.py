"""One workspace, one environment: a safe command runs on the workspace's image, never
on the host, and sees what a container of that workspace sees (real bubblewrap, the real
Docker engine, real processes)."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from sandbox.events import CommandMisjudged, Event, EventBus, OutputReceived
from sandbox.executors import cgroups
from sandbox.executors.docker import DockerExecutor
from sandbox.executors.local import LocalExecutor
from sandbox.executors.rootfs import ImageTrees
from sandbox.image import SANDBOX_UID
from sandbox.model import CommandClass, Job, Limits, Outcome, Status
from sandbox.routing import instance_alive, make_router, new_instance_id
from sandbox.scheduler import BatchSpec, CommandSpec, Scheduler
from tests.docker_fixtures import TEST_UID

pytestmark = pytest.mark.docker
pytest_plugins = ("docker_fixtures",)  # docker_client, sandbox_image, docker_executor, ...

PROBES = [
    "ls /usr/bin | wc -l",
    "cat /etc/os-release",
    "id",
    "pwd",
    "env | grep -v '^BASHFLEET_JOB=' | sort",  # the marker's value is each pool's own
    "umask",
    "ulimit -n",
    "hostname",
    "ls -a /",
    "python3 --version",
    "echo $HOME $SHLVL",
    "ls -ld /workspace | cut -d' ' -f1,3,4",
    "stat -c '%a %U' /tmp && touch /tmp/x $HOME/y && echo writable",
]


class Collect:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.err: list[bytes] = []

    def __call__(self, stream: str, data: bytes) -> None:
        (self.out if stream == "stdout" else self.err).append(data)

    @property
    def text(self) -> str:
        return b"".join(self.out).decode()


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> ImageTrees:
    return ImageTrees(tmp_path_factory.mktemp("data") / "rootfs")


@pytest.fixture
def image_pool(trees: ImageTrees, sandbox_image: str) -> Iterator[LocalExecutor]:
    ex = LocalExecutor(use_bwrap=True, trees=trees, image=sandbox_image, fallback_uid=SANDBOX_UID)
    assert ex.prepare() is None
    yield ex
    ex.close()


def job(ws: Path, command: str, n: int, read_only: bool = True) -> Job:
    return Job(
        id=f"probe{n}-{time.monotonic_ns()}",
        command=command,
        cls=CommandClass.SAFE,
        workspace=ws,
        read_only=read_only,
        timeout_s=30,
    )


def run(ex: Any, j: Job) -> tuple[Outcome, str, str]:
    sink = Collect()
    outcome = ex.run(j, sink)
    return outcome, sink.text, b"".join(sink.err).decode()


def test_every_probe_says_the_same_in_both_pools(
    image_pool: LocalExecutor, docker_executor: DockerExecutor, docker_workspace: Path
) -> None:
    (docker_workspace / "a.txt").write_text("a\n")
    differ = []
    for n, probe in enumerate(PROBES):
        local, l_out, l_err = run(image_pool, job(docker_workspace, probe, n))
        box, d_out, d_err = run(docker_executor, job(docker_workspace, probe, n))
        assert local.status is Status.SUCCEEDED, (probe, l_err)
        assert box.status is Status.SUCCEEDED, (probe, d_err)
        if l_out != d_out:
            differ.append((probe, l_out, d_out))
    assert not differ, differ


def test_no_host_path_exists_in_the_sandbox(
    image_pool: LocalExecutor, tmp_path: Path, trees: ImageTrees
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    os.chown(ws, SANDBOX_UID, SANDBOX_UID)
    marker = Path("/opt") / f"bashfleet-host-marker-{os.getpid()}"
    marker.write_text("HOST-ONLY-MARKER\n")
    (ws / "to-data").symlink_to(trees.root)
    (ws / "to-root").symlink_to("/root")
    try:
        script = (
            f"cat {marker}; ls /opt /root /home; cat /etc/shadow; cat /proc/1/environ; "
            f"ls {trees.root} to-data/ to-root/; ls /var/run/docker.sock /run/docker.sock; "
            "cat /etc/hostname; echo END"
        )
        outcome, out, err = run(image_pool, job(ws, script, 0))
    finally:
        marker.unlink()
    assert out.endswith("END\n"), (out, err)
    assert "HOST-ONLY-MARKER" not in out + err
    assert "docker.sock" in err and "No such file" in err
    assert str(os.getpid()) not in out
    assert not (outcome.status is Status.SUCCEEDED and "root:" in out)


def test_each_workspace_sees_only_itself(image_pool: LocalExecutor, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for ws in (a, b):
        ws.mkdir()
        (ws / f"only-in-{ws.name}").write_text(ws.name)
    _, out, _ = run(image_pool, job(a, f"ls /workspace; ls {b} {tmp_path} 2>&1; true", 0))
    assert "only-in-a" in out and "only-in-b" not in out


def test_a_misjudged_write_is_run_again_writable_before_what_follows(
    image_pool: LocalExecutor,
    docker_executor: DockerExecutor,
    docker_workspace: Path,
    docker_client: Any,
    docker_instance_id: str,
) -> None:
    """The judge calls `echo x > out.txt` safe here on purpose (the spec is built by hand):
    the write fails in the read-only sandbox, the command is marked misjudged and run
    again in a container before what depends on it, which sees the file, as in a serial
    run (a later reader that the plan did not link to it, and that ran beside its first
    attempt, is not run again: that is the judge's to get right)."""
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    sched = Scheduler(
        {"local": image_pool, "docker": docker_executor},
        make_router("auto", True, local_ready=lambda: image_pool.usable),
        bus=bus,
    )
    batch = BatchSpec(
        workspace=docker_workspace,
        commands=(
            CommandSpec(index=0, command="echo partial; echo x > out.txt", cls=CommandClass.SAFE),
            CommandSpec(index=1, command="cat out.txt", cls=CommandClass.SAFE, needs=(0,)),
        ),
        timeout_s=60,
    )
    try:
        batch_id = sched.submit(batch)
        assert sched.wait(batch_id, 90)
        result = sched.result(batch_id)
    finally:
        sched.shutdown()
        docker_executor.close_batch(batch_id)  # (the scheduler's own close is in the background)
        label = {"label": f"bashfleet.instance={docker_instance_id}"}
        deadline = time.monotonic() + 15
        while docker_client.containers.list(ignore_removed=True, all=True, filters=label):
            assert time.monotonic() < deadline, "the batch container was never removed"
            time.sleep(0.1)
    assert [r[1] for r in result] == [Status.SUCCEEDED, Status.SUCCEEDED], result
    assert (docker_workspace / "out.txt").read_text() == "x\n"
    misjudged = [e for e in events if isinstance(e, CommandMisjudged)]
    assert [e.index for e in misjudged] == [0] and "misjudged" in misjudged[0].reason
    assert result[0][3] == "docker" and result[1][3] == "local"
    stdout: dict[int, bytes] = {0: b"", 1: b""}
    for e in events:  # what the store keeps: a misjudged attempt's output is discarded
        if isinstance(e, CommandMisjudged):
            stdout[e.index] = b""
        elif isinstance(e, OutputReceived) and e.stream == "stdout":
            stdout[e.index] += e.data
    assert stdout == {0: b"partial\n", 1: b"x\n"}


def test_unpacking_is_once_per_image_id_and_never_half(
    trees: ImageTrees, sandbox_image: str, tmp_path: Path
) -> None:
    first = trees.tree(sandbox_image)
    assert trees.tree(sandbox_image) == first
    assert (first / "workspace").is_dir() and (first / "usr/bin/bash").exists()
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".partial")]
    setid = [
        p for p in (first / "usr/bin").iterdir() if not p.is_symlink() and p.stat().st_mode & 0o6000
    ]
    assert setid == []
    stale = first.parent / ("0" * 64)
    stale.mkdir()
    removed = trees.prune({sandbox_image})
    assert stale in removed and not stale.exists() and first.is_dir()


def test_the_server_never_runs_a_command_unsandboxed(tmp_path: Path) -> None:
    """No bubblewrap: the image-view pool refuses every job (never the host)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    ex = LocalExecutor(use_bwrap=False, trees=ImageTrees(tmp_path / "rootfs"), image="x:1")
    assert not ex.usable and "bubblewrap" in (ex.problem or "")
    from sandbox.errors import ExecutorError

    for read_only in (True, False):
        with pytest.raises(ExecutorError, match="sandbox is unusable"):
            ex.run(job(ws, "touch /tmp/never", 0, read_only=read_only), Collect())
    router = make_router("auto", False, "no engine", local_ready=lambda: ex.usable)
    name, why = router(CommandClass.SAFE)
    assert name is None and "cannot run commands" in (why or "")
    docker_router = make_router("auto", True, local_ready=lambda: ex.usable)
    assert docker_router(CommandClass.SAFE) == ("docker", None)
    shutil.rmtree(ws)


def test_a_job_over_its_memory_is_oom_killed_and_nothing_else(
    image_pool: LocalExecutor, tmp_path: Path
) -> None:
    """Its own memory cgroup: tmpfs pages count too (no address-space limit sees them)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    os.chown(ws, SANDBOX_UID, SANDBOX_UID)
    limits = Limits(memory_bytes=64 << 20, tmpfs_bytes=512 << 20)
    fill = replace(
        job(ws, "head -c 300M /dev/zero > /tmp/fill; echo survived", 0, read_only=False),
        limits=limits,
    )
    outcome, out, _err = run(image_pool, fill)
    assert outcome.status is Status.OOM_KILLED, outcome
    assert "memory limit" in (outcome.error or "")
    small = replace(
        job(ws, "head -c 10M /dev/zero > /tmp/fill && echo fine", 1, False), limits=limits
    )
    outcome, out, _err = run(image_pool, small)
    assert outcome.status is Status.SUCCEEDED and out == "fine\n"


@pytest.mark.parametrize("read_only", [True, False], ids=["warm-sandbox", "own-sandbox"])
def test_a_job_holds_no_capability_at_all(
    image_pool: LocalExecutor, docker_workspace: Path, read_only: bool
) -> None:
    probe = "grep -E '^(Uid|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status"
    outcome, out, err = run(image_pool, job(docker_workspace, probe, 0, read_only=read_only))
    assert outcome.status is Status.SUCCEEDED, err
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert fields["Uid"].split() == [str(TEST_UID)] * 4
    for cap in ("CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[cap], 16) == 0, (cap, fields)
    assert fields["NoNewPrivs"] == "1"


def test_a_portal_spares_a_worker_nodes_containers() -> None:
    """Another process on the same engine never removes a node's containers (the node
    cleans up its own when it starts; it may run in another PID namespace)."""
    assert instance_alive("node.n1.999999.1")  # no such process here: still spared
    assert instance_alive(new_instance_id("server"))
    assert not instance_alive("server-999999-1")
    # /proc/stat's btime may move a second between readers: still this live process
    start = int(psutil.Process().create_time())
    for off in (-1, 1):
        assert instance_alive(f"server-{os.getpid()}-{start + off}")
        assert cgroups._instance_alive(f"{os.getpid()}-{start + off}")
    assert not instance_alive(f"server-{os.getpid()}-{start - 60}")  # a reused pid


def test_unpack_containers_left_by_a_dead_process_are_swept(
    trees: ImageTrees, docker_client: Any, sandbox_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A portal killed mid-unpack leaves its (never started) export container; the next
    unpack removes the labelled ones older than any unpack may take, and nothing else."""
    from sandbox.executors import rootfs

    left = docker_client.containers.create(
        sandbox_image, ["true"], labels={"bashfleet.rootfs": "1"}
    )
    other = docker_client.containers.create(sandbox_image, ["true"])
    try:
        monkeypatch.setattr(rootfs, "STALE_UNPACK_S", 1)
        time.sleep(1.5)
        deadline = time.monotonic() + 20  # the engine runs one prune at a time: try again
        while True:
            trees._sweep()
            ids = {c.id for c in docker_client.containers.list(ignore_removed=True, all=True)}
            if left.id not in ids or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert left.id not in ids and other.id in ids
    finally:
        for c in (left, other):
            with contextlib.suppress(Exception):
                c.remove(force=True)
