"""DockerExecutor: pure parts (profiles, output splitting) and the real engine (marked docker)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sandbox.breaker import CircuitBreaker
from sandbox.errors import EngineUnavailable, ExecutorError
from sandbox.executors import docker_profiles as prof
from sandbox.executors.base import CHUNK_LIMIT, truncation_marker
from sandbox.executors.docker import DockerExecutor
from sandbox.executors.docker_output import OutputSplitter
from sandbox.model import CommandClass, Job, Limits, Status

pytest_plugins = ("docker_fixtures",)  # docker_client, sandbox_image, docker_executor, ...

DANGEROUS = CommandClass.DANGEROUS
ENGINE_SOCKET = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
SEQUENTIAL = CommandClass.SEQUENTIAL


def job(ws: Path, command: str, cls: CommandClass = DANGEROUS, **kw: Any) -> Job:
    return Job(
        id=kw.pop("id", f"j{time.monotonic_ns()}"), command=command, cls=cls, workspace=ws, **kw
    )


class Collected:
    """An ``on_output`` sink that keeps everything, with arrival times."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes, float]] = []

    def __call__(self, stream: str, data: bytes) -> None:
        self.chunks.append((stream, data, time.monotonic()))

    def text(self, stream: str) -> str:
        return b"".join(d for s, d, _ in self.chunks if s == stream).decode(errors="replace")


def containers_of(client: Any, instance_id: str) -> list[Any]:
    label = f"bashfleet.instance={instance_id}"
    return list(client.containers.list(ignore_removed=True, all=True, filters={"label": label}))


# -- pure ------------------------------------------------------------------------------------


def test_dangerous_spec_takes_the_tighter_limits_and_never_the_network(tmp_path: Path) -> None:
    j = job(tmp_path, "x", network=True, limits=Limits(memory_bytes=256 << 20, pids=10_000))
    spec = prof.spec_for(j, "img", prof.DANGEROUS)
    assert (spec.role, spec.batch_id, spec.network) == ("single", "", False)
    assert spec.memory_bytes == 256 << 20 and spec.pids == prof.DANGEROUS.pids


def test_batch_spec_is_per_batch_and_may_use_the_network(tmp_path: Path) -> None:
    j = job(tmp_path, "x", SEQUENTIAL, batch_id="b1", network=True)
    spec = prof.spec_for(j, "img", prof.BATCH)
    assert (spec.role, spec.batch_id, spec.network) == ("batch", "b1", True)


def test_root_owned_workspace_runs_as_the_unprivileged_sandbox_user(tmp_path: Path) -> None:
    expected = "1000:1000" if os.stat(tmp_path).st_uid == 0 else None
    user = prof.workspace_user(str(tmp_path))
    assert user == (expected or f"{os.getuid()}:{os.getgid()}")
    assert not user.startswith("0:")


def test_create_kwargs_lock_the_container_down(tmp_path: Path) -> None:
    spec = prof.spec_for(job(tmp_path, "x", read_only=True), "img", prof.DANGEROUS)
    kw = prof.create_kwargs(spec, "inst", "b1")
    assert kw["network_mode"] == "none" and kw["read_only"] and kw["init"]
    assert kw["cap_drop"] == ["ALL"] and kw["security_opt"] == ["no-new-privileges"]
    assert kw["privileged"] is False and kw["mem_limit"] == kw["memswap_limit"]
    assert kw["volumes"] == {spec.workspace: {"bind": "/workspace", "mode": "ro"}}
    assert "docker.sock" not in repr(kw)
    assert kw["labels"]["bashfleet.instance"] == "inst" and "bashfleet.command" in kw["labels"]


def test_splitter_sends_whole_lines_and_caps_each_stream() -> None:
    got: list[tuple[str, bytes]] = []
    s = OutputSplitter(lambda st, d: got.append((st, d)), cap=10)
    s.feed("stdout", b"abc")
    assert got == []  # an incomplete line waits
    s.feed("stdout", b"d\nef")
    s.feed("stderr", b"e\n")
    assert got == [("stdout", b"abcd\n"), ("stderr", b"e\n")]
    s.feed("stdout", b"ghijklmn\nmore\n")
    s.flush()
    out = b"".join(d for st, d in got if st == "stdout")
    assert out == b"abcd\nefghi" + truncation_marker(10) and s.truncated


def test_splitter_never_sends_more_than_a_chunk() -> None:
    got: list[bytes] = []
    s = OutputSplitter(lambda st, d: got.append(d), cap=1 << 30)
    s.feed("stdout", b"x" * (3 * CHUNK_LIMIT + 5))
    s.flush()
    assert max(map(len, got)) <= CHUNK_LIMIT and sum(map(len, got)) == 3 * CHUNK_LIMIT + 5


def test_unreachable_engine_fails_fast_and_opens_the_breaker(tmp_path: Path) -> None:
    ex = DockerExecutor(base_url="unix:///tmp/bashfleet-nonexistent.sock", instance_id="t")
    t0 = time.monotonic()
    for _ in range(3):
        with pytest.raises(EngineUnavailable, match="Docker engine unavailable"):
            ex.run(job(tmp_path, "true"), Collected())
    with pytest.raises(EngineUnavailable, match=r"breaker open until \d\d:\d\d:\d\d"):
        ex.run(job(tmp_path, "true"), Collected())
    assert ex.breaker.state == "open"
    assert time.monotonic() - t0 < 30
    ex.shutdown()


# -- real engine -----------------------------------------------------------------------------

SECURITY_PROBE = r"""
echo "uid=$(id -u)"
grep -E '^(CapEff|NoNewPrivs):' /proc/self/status
touch /x 2>/dev/null && echo "root-writable" || echo "root-readonly"
touch /etc/x /usr/x 2>/dev/null && echo "etc-writable" || echo "etc-readonly"
echo "ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ,)"
echo made > /workspace/made.txt && echo "workspace-written"
"""


@pytest.mark.docker
def test_dangerous_command_runs_locked_down(
    docker_executor: DockerExecutor, docker_workspace: Path
) -> None:
    owner = docker_workspace.stat().st_uid
    assert owner != 0  # the fixture gives the workspace to a non-root user
    out = Collected()
    outcome = docker_executor.run(job(docker_workspace, SECURITY_PROBE), out)
    text = out.text("stdout")
    assert outcome.status is Status.SUCCEEDED, (outcome, text, out.text("stderr"))
    assert "uid=0" not in text and f"uid={owner}" in text
    assert "CapEff:\t0000000000000000" in text and "NoNewPrivs:\t1" in text
    assert "root-readonly" in text and "etc-readonly" in text
    assert "ifaces=lo," in text
    made = docker_workspace / "made.txt"
    assert made.read_text() == "made\n"
    assert (made.stat().st_uid, made.stat().st_gid) == (owner, owner)


@pytest.mark.docker
def test_containers_carry_the_isolation_settings(
    docker_executor: DockerExecutor,
    docker_workspace: Path,
    docker_client: Any,
    docker_instance_id: str,
) -> None:
    docker_executor.open_batch("b1", str(docker_workspace), {"sequential", "dangerous"})
    docker_executor.run(job(docker_workspace, "true", SEQUENTIAL, batch_id="b1"), Collected())
    roles = {}
    for c in containers_of(docker_client, docker_instance_id):
        host = c.attrs["HostConfig"]
        roles[c.labels["bashfleet.role"]] = host
        assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
        assert host["ReadonlyRootfs"] and host["Init"] and not host["Privileged"]
        assert host["NetworkMode"] == "none" and host["Memory"] == host["MemorySwap"] > 0
        assert host["PidsLimit"] > 0 and host["NanoCpus"] > 0 and "/tmp" in host["Tmpfs"]
        assert host["LogConfig"] == {
            "Type": "json-file",
            "Config": {"max-size": "1m", "max-file": "1"},
        }
        assert host["Binds"] == [f"{docker_workspace.resolve()}:/workspace:rw"]
        assert c.labels["bashfleet.batch"] == "b1" and "bashfleet.command" in c.labels
        owner = docker_workspace.stat()
        assert c.attrs["Config"]["User"] == f"{owner.st_uid}:{owner.st_gid}"
    assert set(roles) == {"batch", "single"}
    assert roles["single"]["Memory"] < roles["batch"]["Memory"]
    assert roles["single"]["PidsLimit"] < roles["batch"]["PidsLimit"]
    docker_executor.close_batch("b1")
    assert containers_of(docker_client, docker_instance_id) == []


@pytest.mark.docker
def test_output_is_live_and_separate_and_capped(
    docker_executor: DockerExecutor, docker_workspace: Path
) -> None:
    out = Collected()
    t0 = time.monotonic()
    cmd = "echo first; echo oops >&2; sleep 1; head -c 300000 /dev/zero | tr '\\0' x; echo; exit 3"
    outcome = docker_executor.run(job(docker_workspace, cmd, output_cap=100_000), out)
    assert outcome.status is Status.FAILED and outcome.exit_code == 3 and outcome.truncated
    first = next(t for s, d, t in out.chunks if d == b"first\n")
    assert first - t0 < 0.9  # arrived before the command's sleep ended
    assert out.text("stderr") == "oops\n"
    assert out.text("stdout").endswith(truncation_marker(100_000).decode())
    assert max(len(d) for _, d, _ in out.chunks) <= CHUNK_LIMIT


@pytest.mark.docker
def test_batch_container_is_shared_so_system_changes_carry_over(
    docker_executor: DockerExecutor, docker_workspace: Path
) -> None:
    docker_executor.open_batch("b1", str(docker_workspace), {"sequential", "conditional"})
    first = docker_executor.run(
        job(docker_workspace, "echo kept > /tmp/state", SEQUENTIAL, batch_id="b1"), Collected()
    )
    out = Collected()
    second = docker_executor.run(
        job(docker_workspace, "cat /tmp/state", CommandClass.CONDITIONAL, batch_id="b1"), out
    )
    assert first.status.ok and second.status.ok and out.text("stdout") == "kept\n"
    fresh = Collected()
    docker_executor.run(
        job(docker_workspace, "cat /tmp/state || echo absent", batch_id="b1"), fresh
    )
    assert fresh.text("stdout").strip().endswith("absent")  # dangerous: a fresh container
    docker_executor.close_batch("b1")


@pytest.mark.docker
def test_warm_exec_is_much_cheaper_than_docker_run(
    docker_executor: DockerExecutor, docker_workspace: Path, sandbox_image: str
) -> None:
    docker_executor.open_batch("b1", str(docker_workspace), {"sequential", "dangerous"})
    docker_executor.run(
        job(docker_workspace, "true", SEQUENTIAL, batch_id="b1"), Collected()
    )  # warm up
    n = 20
    t0 = time.monotonic()
    for i in range(n):
        assert docker_executor.run(
            job(docker_workspace, f"touch f{i}", SEQUENTIAL, batch_id="b1"), Collected()
        ).status.ok
    warm = (time.monotonic() - t0) / n
    t0 = time.monotonic()
    for i in range(5):
        assert docker_executor.run(
            job(docker_workspace, f"touch d{i}", batch_id="b1"), Collected()
        ).status.ok
    fresh = (time.monotonic() - t0) / 5
    t0 = time.monotonic()
    for _ in range(n):
        subprocess.run(["docker", "run", "--rm", sandbox_image, "true"], check=True)
    baseline = (time.monotonic() - t0) / n
    docker_executor.close_batch("b1")
    print(
        f"\nper command: warm exec {warm * 1000:.0f} ms, pooled dangerous container "
        f"{fresh * 1000:.0f} ms, docker run --rm {baseline * 1000:.0f} ms "
        f"(warm/baseline = {warm / baseline:.2f})"
    )
    assert len(list(docker_workspace.glob("f*"))) == n
    assert warm <= 0.4 * baseline


@pytest.mark.docker
def test_fork_bomb_is_held_by_the_pids_limit(
    docker_executor: DockerExecutor,
    docker_workspace: Path,
    docker_client: Any,
    docker_instance_id: str,
) -> None:
    bomb = "b(){ b | b & }; b; sleep 30"
    t0 = time.monotonic()
    outcome = docker_executor.run(
        job(docker_workspace, bomb, timeout_s=3, limits=Limits(pids=64)), Collected()
    )
    assert outcome.status is Status.TIMED_OUT
    assert outcome.error and "process limit (64)" in outcome.error
    assert time.monotonic() - t0 < 3 + 2
    assert containers_of(docker_client, docker_instance_id) == []


@pytest.mark.docker
@pytest.mark.parametrize("cls", [DANGEROUS, SEQUENTIAL])
def test_memory_hog_is_oom_killed(
    docker_client: Any,
    sandbox_image: str,
    docker_instance_id: str,
    docker_workspace: Path,
    cls: CommandClass,
) -> None:
    small = replace(prof.BATCH, memory_bytes=256 << 20)
    ex = DockerExecutor(
        sandbox_image, docker_instance_id, docker_client, profiles={SEQUENTIAL: small}
    )
    try:
        hog = "head -c 600m /dev/zero | tail"
        outcome = ex.run(
            job(docker_workspace, hog, cls, timeout_s=30, limits=Limits(memory_bytes=256 << 20)),
            Collected(),
        )
        assert outcome.status is Status.OOM_KILLED, outcome
        assert outcome.error and "memory limit (256 MiB)" in outcome.error
        # the batch container survives an OOM kill and is still usable
        if cls is SEQUENTIAL:
            assert ex.run(job(docker_workspace, "true", cls), Collected()).status.ok
    finally:
        ex.shutdown()
    assert containers_of(docker_client, docker_instance_id) == []


def _leftover_sleep(ex: DockerExecutor, ws: Path) -> str:
    out = Collected()
    ex.run(job(ws, "ps -eo args | grep -c '^sleep 31' || true", SEQUENTIAL, batch_id="b1"), out)
    return out.text("stdout").strip()


@pytest.mark.docker
def test_timed_out_commands_are_gone_on_time(
    docker_executor: DockerExecutor,
    docker_workspace: Path,
    docker_client: Any,
    docker_instance_id: str,
) -> None:
    docker_executor.open_batch("b1", str(docker_workspace), {"sequential"})
    for cls in (SEQUENTIAL, DANGEROUS):
        t0 = time.monotonic()
        # the command also starts a child in its own session: the marker catches it
        cmd = "setsid sleep 31 & sleep 31"
        outcome = docker_executor.run(
            job(docker_workspace, cmd, cls, batch_id="b1", timeout_s=1), Collected()
        )
        assert outcome.status is Status.TIMED_OUT and outcome.signal == 9
        assert time.monotonic() - t0 < 1 + 2
    assert _leftover_sleep(docker_executor, docker_workspace) == "0"
    roles = [c.labels["bashfleet.role"] for c in containers_of(docker_client, docker_instance_id)]
    assert roles == ["batch"]
    docker_executor.close_batch("b1")


@pytest.mark.docker
@pytest.mark.parametrize("cls", [SEQUENTIAL, DANGEROUS])
def test_cancelled_commands_are_gone_quickly(
    docker_executor: DockerExecutor, docker_workspace: Path, cls: CommandClass
) -> None:
    docker_executor.open_batch("b1", str(docker_workspace), {"sequential"})
    j = job(docker_workspace, "sleep 31", cls, batch_id="b1", timeout_s=60)
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(docker_executor.run(j, Collected())))
    worker.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    docker_executor.cancel(j.id)
    worker.join(10)
    assert result and result[0].status is Status.CANCELLED
    assert time.monotonic() - t0 < 5
    assert _leftover_sleep(docker_executor, docker_workspace) == "0"
    docker_executor.close_batch("b1")


@pytest.mark.docker
def test_recover_orphans_removes_an_earlier_instances_containers(
    docker_client: Any, sandbox_image: str, docker_executor: DockerExecutor, docker_workspace: Path
) -> None:
    earlier = DockerExecutor(sandbox_image, f"{docker_executor.instance_id}-old", docker_client)
    earlier.open_batch("b0", str(docker_workspace), {"sequential"})
    j = job(docker_workspace, "sleep 30", SEQUENTIAL, batch_id="b0", id="cmd-running")
    died = threading.Thread(target=lambda: _swallow(lambda: earlier.run(j, Collected())))
    died.start()
    spec = prof.spec_for(job(docker_workspace, "x"), sandbox_image, prof.DANGEROUS)
    kwargs = prof.create_kwargs(spec, earlier.instance_id, "b0")
    kwargs["labels"]["bashfleet.command"] = "cmd-labelled"
    docker_client.containers.create(**kwargs)  # never started
    time.sleep(1.0)  # the running command has written its marker

    recovered = docker_executor.recover_orphans()

    assert sorted(recovered) == ["cmd-labelled", "cmd-running"]
    assert containers_of(docker_client, earlier.instance_id) == []
    died.join(10)
    assert not died.is_alive()
    earlier.shutdown()


def _swallow(fn: Any) -> None:
    with contextlib.suppress(ExecutorError):
        fn()


@pytest.mark.docker
def test_missing_image_is_a_clear_executor_error(
    docker_client: Any, docker_instance_id: str, docker_workspace: Path
) -> None:
    ex = DockerExecutor("bashfleet-no-such-image:0", docker_instance_id, docker_client)
    with pytest.raises(ExecutorError, match="bashfleet image build"):
        ex.run(job(docker_workspace, "true"), Collected())
    ex.shutdown()


@pytest.mark.docker
def test_engine_lost_mid_use_fails_clearly_opens_the_breaker_and_recovers(
    docker_client: Any, sandbox_image: str, docker_instance_id: str, docker_workspace: Path
) -> None:
    # The executor reaches the engine through a symlink; removing it is the engine going away
    # for this executor only (the shared dockerd keeps running for everyone else).
    assert ENGINE_SOCKET.startswith("/"), f"the engine must be on a local socket ({ENGINE_SOCKET})"
    link = docker_workspace.parent / "engine.sock"
    link.symlink_to(ENGINE_SOCKET)
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=15, clock=lambda: now[0])
    ex = DockerExecutor(
        sandbox_image, docker_instance_id, base_url=f"unix://{link}", breaker=breaker
    )
    try:
        ex.open_batch("b1", str(docker_workspace), {"sequential"})
        assert ex.run(
            job(docker_workspace, "true", SEQUENTIAL, batch_id="b1"), Collected()
        ).status.ok
        link.unlink()
        t0 = time.monotonic()
        for _ in range(3):
            with pytest.raises(EngineUnavailable, match="Docker engine unavailable"):
                ex.run(job(docker_workspace, "true", SEQUENTIAL, batch_id="b1"), Collected())
        assert breaker.state == "open"
        with pytest.raises(EngineUnavailable, match="breaker open until"):
            ex.run(job(docker_workspace, "true", SEQUENTIAL, batch_id="b1"), Collected())
        assert time.monotonic() - t0 < 30
        link.symlink_to(ENGINE_SOCKET)
        now[0] += 15  # cooldown over: one trial goes through and closes the breaker
        assert ex.run(
            job(docker_workspace, "true", SEQUENTIAL, batch_id="b1"), Collected()
        ).status.ok
        assert breaker.state == "closed"
    finally:
        if not link.exists():
            link.unlink(missing_ok=True)
            link.symlink_to(ENGINE_SOCKET)
        ex.shutdown()
