"""Abuse inside commands: fork bombs, memory bombs and disk fillers, through a real server.

Each test states its pass criteria (the contract of issue 8) in its docstring.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.hardening.conftest import (
    HEALTHZ_P99_MS,
    SENTINEL_GAP_MS,
    HealthProbe,
    HPortal,
    cgroup_tasks,
    hportal,
    pids_cgroup,
    sentinel,
    sentinel_gaps_ms,
    wait_gone,
)

BOMB_TIMEOUT_S = 3


def _bomb_run(p: HPortal, token: str, tag: str, figures: dict[str, Any], key: str) -> None:
    """Start a sentinel, then a fork bomb with a 3 s wall limit, and hold the server to the
    contract while it rages."""
    guard = p.submit(token, sentinel(70), workspace="sentinel", timeout_s=30)
    assert p.wait_status(guard["id"], token, 0, {"running"}, timeout=30)["status"] == "running"
    time.sleep(0.5)
    with HealthProbe(p.url) as probe:
        bomb = p.submit(token, f"{{ b(){{ b | b & }}; b; sleep {tag}; }}", timeout_s=BOMB_TIMEOUT_S)
        assert bomb["commands"][0]["class"] == "dangerous"
        done = p.wait_batch(bomb["id"], token, timeout=30)
        time.sleep(1.0)  # keep measuring right after the kill too
    guard_done = p.wait_batch(guard["id"], token, timeout=30)
    cmd = done["commands"][0]
    assert cmd["status"] == "timed_out", cmd  # a limit failure, not a success or a hang
    assert cmd["duration_s"] < BOMB_TIMEOUT_S + 2, cmd
    assert probe.p99 < HEALTHZ_P99_MS, probe.summary()
    assert probe.failures == 0, probe.summary()
    g = guard_done["commands"][0]
    assert g["status"] == "succeeded", g
    # the sentinel ran all the while the bomb did (else its gaps would prove nothing)
    assert g["started_at"] < cmd["started_at"] and cmd["finished_at"] < g["finished_at"], (g, cmd)
    gaps = sentinel_gaps_ms(p.output(guard["id"], g["id"], token)["stdout"])
    assert len(gaps) >= 60, gaps
    assert max(gaps) < SENTINEL_GAP_MS, max(gaps)
    assert wait_gone(tag) == []
    figures[key] = {
        "status": cmd["status"],
        "reason": cmd["reason"],
        "ended_after_s": round(cmd["duration_s"], 2),
        "wall_limit_s": BOMB_TIMEOUT_S,
        "sentinel_max_gap_ms": round(max(gaps), 1),
        **probe.summary(),
        "processes_left": 0,
    }


# attack: a fork bomb in a container starves the host of pids
@pytest.mark.docker
@pytest.mark.slow
def test_fork_bomb_in_a_container(docker_portal: HPortal, figures: dict[str, Any]) -> None:
    """A fork bomb in a container ends within its wall limit as a limit failure (the pids
    limit holds it; the reason names it), /healthz p99 < 500 ms meanwhile, a sentinel printing
    every 100 ms in another container is never 500 ms late, and no process is left."""
    p = docker_portal
    token = p.token("bomber", "operator")
    _bomb_run(p, token, "31.4159", figures, "fork_bomb_container")
    assert "process limit" in (figures["fork_bomb_container"]["reason"] or "")


# attack: a fork bomb in the local pool starves the host of pids
@pytest.mark.slow
def test_fork_bomb_in_the_local_pool(tmp_path: Path, figures: dict[str, Any]) -> None:
    """The same bomb in the local pool (`--isolation local`): ends at its wall limit as
    `timed_out`, /healthz p99 < 500 ms, the sentinel is never 500 ms late, nothing is left.

    The bomb is held by its job's own pids cgroup (its `pids` limit, 256): the peak of
    tasks seen stays within that of the baseline. The server itself also runs in an outer
    pids cgroup (1024), as a systemd unit with `TasksMax=` would, so that a regression here
    cannot take the shared test machine's pid space with it."""
    with pids_cgroup(1024) as prefix, hportal(tmp_path, isolation="local", prefix=prefix) as p:
        token = p.token("bomber", "operator")
        # the baseline with the server's long-lived helpers up: the judges' processes, the
        # workspace's warm sandbox, the scheduler's threads
        warm = p.submit(token, "ls\ntouch w && true")
        p.wait_batch(warm["id"], token)
        time.sleep(0.5)
        baseline = cgroup_tasks(prefix)
        peak = [baseline]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak[0] = max(peak[0], cgroup_tasks(prefix))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _bomb_run(p, token, "27.1828", figures, "fork_bomb_local")
        sampling.set()
        sampler.join(5)
        # the job's limit (256) plus the sentinel's and the server's own few
        assert peak[0] <= baseline + 256 + 32, (peak[0], baseline)
        t0 = time.monotonic()
        while cgroup_tasks(prefix) > baseline + 5 and time.monotonic() - t0 < 10:
            time.sleep(0.1)  # killed processes leave the group as they are reaped
        settled = time.monotonic() - t0
        assert cgroup_tasks(prefix) <= baseline + 5, cgroup_tasks(prefix)
        figures["fork_bomb_local"]["job_pids_limit"] = 256
        figures["fork_bomb_local"]["peak_tasks_over_baseline"] = peak[0] - baseline
        figures["fork_bomb_local"]["tasks_reaped_within_s"] = round(settled, 1)


# attack: a command that eats all memory, in a container
@pytest.mark.docker
def test_memory_bomb_in_a_container_is_oom_killed(
    docker_portal: HPortal, figures: dict[str, Any]
) -> None:
    """A memory bomb in a container ends `oom_killed`; the server's own RSS grows < 20 MB."""
    p = docker_portal
    token = p.token("hog", "operator")
    p.submit(token, "touch warm && true")  # the server's own warm-up allocations
    time.sleep(1.0)
    before = p.rss()
    batch = p.submit(token, "rm -rf nothing && head -c 1500m /dev/zero | tail", timeout_s=60)
    done = p.wait_batch(batch["id"], token, timeout=60)
    grew = p.rss() - before
    cmd = done["commands"][0]
    assert cmd["executor"] == "docker" and cmd["status"] == "oom_killed", cmd
    assert "memory limit" in (cmd["reason"] or ""), cmd
    assert grew < 20 << 20, grew
    figures["memory_bomb_container"] = {
        "status": cmd["status"],
        "reason": cmd["reason"],
        "server_rss_growth_mb": round(grew / (1 << 20), 1),
    }


# attack: a command that eats all memory, in the local pool
def test_memory_bomb_in_the_local_pool_is_stopped_by_its_limit(
    local_portal: HPortal, figures: dict[str, Any]
) -> None:
    """A memory bomb in the local pool is stopped by its address-space limit (2 GiB): it
    fails, it does not take the host's memory; the server's RSS grows < 20 MB."""
    p = local_portal
    token = p.token("hog", "operator")
    p.submit(token, "touch warm")
    time.sleep(1.0)
    before = p.rss()
    t0 = time.monotonic()
    batch = p.submit(
        token, "touch m && python3 -c 'x = bytearray(6 << 30); print(len(x))'", timeout_s=60
    )
    done = p.wait_batch(batch["id"], token, timeout=60)
    elapsed = time.monotonic() - t0
    grew = p.rss() - before
    cmd = done["commands"][0]
    assert cmd["executor"] == "local" and cmd["status"] == "failed", cmd
    out = p.output(batch["id"], cmd["id"], token)
    assert "MemoryError" in out["stderr"], out
    assert elapsed < 20
    assert grew < 20 << 20, grew
    figures["memory_bomb_local"] = {
        "status": cmd["status"],
        "reason": cmd["reason"],
        "stopped_by": "RLIMIT_AS 2 GiB (MemoryError)",
        "server_rss_growth_mb": round(grew / (1 << 20), 1),
    }


# attack: a command that fills the disk (/, /tmp, one file, many files)
@pytest.mark.docker
def test_disk_fillers_in_a_container_stop_at_the_caps(
    docker_portal: HPortal, figures: dict[str, Any]
) -> None:
    """Writing 2 GB from a container: `/` is read-only (nothing written), `/tmp` stops at
    its tmpfs size (64 MiB for dangerous commands), one workspace file stops at the per-file
    cap (RLIMIT_FSIZE, 1 GiB), and many files stop at the disk cap (1.5 GiB for this server:
    the command is stopped once the filesystem has lost that much since it started)."""
    p = docker_portal
    token = p.token("filler", "operator")
    dd = "dd if=/dev/zero bs=1M count=2048 status=none"
    script = "\n".join(
        [
            f"rm -rf x1 && {dd} of=/big.bin",
            f"rm -rf x2 && {{ {dd} of=/tmp/big.bin; df -B1 --output=size,used /tmp | tail -1; }}",
            f"rm -rf x3 && {{ {dd} of=big.bin; stat -c %s big.bin; }}",
        ]
    )
    batch = p.submit(token, script, timeout_s=60)
    done = p.wait_batch(batch["id"], token, timeout=120)
    outs = [p.output(batch["id"], c["id"], token) for c in done["commands"]]
    root, _tmp, ws = done["commands"]
    assert [c["executor"] for c in done["commands"]] == ["docker"] * 3
    assert root["status"] == "failed" and "Read-only file system" in outs[0]["stderr"], outs[0]
    assert "No space left on device" in outs[1]["stderr"], outs[1]
    size, used = (int(x) for x in outs[1]["stdout"].split())
    assert size == 64 << 20 and used <= size
    assert ws["status"] == "succeeded" and outs[2]["stdout"].strip() == str(1 << 30), outs[2]
    big = p.data / "workspaces" / "default" / "big.bin"
    written = big.stat().st_size
    big.unlink()
    assert written == 1 << 30  # RLIMIT_FSIZE: 1 GiB, not 2
    # many files, each under the per-file cap: 3 x 700 MiB asked for
    filler = "rm -rf x4 && for i in 1 2 3; do dd if=/dev/zero bs=1M count=700 of=part$i; done"
    many = p.wait_batch(p.submit(token, filler, timeout_s=60)["id"], token, timeout=120)
    many = many["commands"][0]
    assert many["executor"] == "docker" and many["status"] == "failed", many
    assert "more than 1536 MiB of the workspace's disk" in many["reason"], many
    parts = list((p.data / "workspaces" / "default").glob("part*"))
    total = sum(f.stat().st_size for f in parts)
    for f in parts:
        f.unlink()
    # the cap, plus what a fast writer adds between a check and the kill: checks every
    # 0.05 s, but the kill goes through the engine, and dd into the page cache writes
    # 1-2 GB/s (seen: 2.1 GB on a loaded machine); the guard is a guard, not a quota
    assert total < (1536 + 1024) << 20, (total, many["reason"])
    figures["disk_container"] = {
        "root": "read-only",
        "tmp_cap_bytes": size,
        "workspace_file_cap_bytes": written,
        "workspace_disk_cap_bytes": 1536 << 20,
        "workspace_many_files_written_bytes": total,
    }
