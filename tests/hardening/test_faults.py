"""Faults around commands: kill -9, SIGTERM, the Docker engine restarted or down, a full
data folder, schedules through restarts.

Each ends with correct statuses, no orphan process or container, an intact database
(`PRAGMA integrity_check`) and a server that works again once the fault is gone.

The engine tests never touch the shared dockerd: they start a private one (own socket,
data root, exec root and pidfile; no bridge, no iptables), load the sandbox image into it,
point the server under test at it with DOCKER_HOST, and restart or stop only that one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.hardening.conftest import (
    HPortal,
    containers_of,
    hportal,
    integrity,
    processes_with,
    server_containers,
    wait_gone,
)


def _healthy_again(p: HPortal, token: str, figures: dict[str, Any], key: str) -> None:
    """The server answers and runs a new batch (local and, if it has Docker, a container)."""
    assert p.request("GET", "/healthz")[0] == 200
    batch = p.submit(token, "echo back\ntouch back && echo container-back\n", timeout_s=30)
    done = p.wait_batch(batch["id"], token, timeout=60)
    assert done["status"] == "succeeded", done["commands"]
    assert integrity(p.data / "bashfleet.db") == "ok"
    figures.setdefault(key, {})["survived"] = True


# --- kill -9 and SIGTERM ---------------------------------------------------------------------


# attack: the server killed with SIGKILL (OOM killer, operator) mid-work
@pytest.mark.docker
@pytest.mark.slow
def test_kill_9_with_ten_commands_running_in_both_pools(
    docker_portal: HPortal, docker_client: Any, figures: dict[str, Any]
) -> None:
    """kill -9 of the server while 5 commands run in the local pool and 5 in containers:
    after a restart all are `interrupted`, no process or container of theirs is left, the
    database is intact and new work runs."""
    p = docker_portal
    token = p.token("crash", "operator")
    local = p.submit(token, "\n".join(f"sleep 300.{i}1" for i in range(5)))
    boxes = [p.submit(token, f"touch a && sleep 300.{i}2", workspace=f"w{i}") for i in range(5)]
    assert p.wait_running(local["id"], token, 5, timeout=30)
    for b in boxes:
        assert p.wait_running(b["id"], token, 1, timeout=60), p.batch(b["id"], token)
    dead = p.instance_id()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # "running" is reported as the container starts
        sleeps = [c for c in processes_with("300.") if c[0] == "sleep"]
        if len(sleeps) == 10 and len(containers_of(docker_client, dead)) == 5:
            break
        time.sleep(0.2)
    assert len(sleeps) == 10, sleeps
    assert len(containers_of(docker_client, dead)) == 5
    running = p.request("GET", "/api/v1/batches?status=running&limit=50", token=token)[1]
    assert running["total"] == 6, running
    t0 = time.monotonic()
    p.crash()
    p.start()
    for b in (local, *boxes):
        done = p.wait_batch(b["id"], token, timeout=10)
        assert done["status"] == "interrupted", done
        assert {c["status"] for c in done["commands"]} == {"interrupted"}
    assert wait_gone("300.", timeout=5) == []
    assert containers_of(docker_client, dead) == []
    recovered = time.monotonic() - t0
    assert integrity(p.data / "bashfleet.db") == "ok"
    _healthy_again(p, token, figures, "kill_9_both_pools")
    figures["kill_9_both_pools"].update(
        {"commands_running": 10, "interrupted": 10, "recovered_s": round(recovered, 1)}
    )


# attack: only gunicorn's main process is killed (SIGKILL), its worker orphaned
@pytest.mark.docker
@pytest.mark.slow
def test_kill_9_of_the_main_process_leaves_every_command_interrupted_once(
    docker_portal: HPortal, docker_client: Any, figures: dict[str, Any]
) -> None:
    """Attack: an OOM kill or an impatient operator kills gunicorn's main process only.
    The orphaned worker must not record its own killing of the commands as `failed`: it
    records nothing more and stops them; after a restart all are `interrupted`, once."""
    p = docker_portal
    token = p.token("orphan", "operator")
    local = p.submit(token, "\n".join(f"sleep 300.{i}3" for i in range(3)))
    boxes = [p.submit(token, f"touch a && sleep 300.{i}4", workspace=f"m{i}") for i in range(2)]
    assert p.wait_running(local["id"], token, 3, timeout=30)
    for b in boxes:
        assert p.wait_running(b["id"], token, 1, timeout=60), p.batch(b["id"], token)
    worker, dead = p.worker(), p.instance_id()
    assert p.proc is not None
    os.kill(p.proc.pid, signal.SIGKILL)
    p.proc.wait(10)
    worker.wait(30)  # the orphan notices within a second and goes
    db = p.data / "bashfleet.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        left = dict(
            conn.execute("select status, count(*) from commands group by status").fetchall()
        )
    assert left == {"running": 5}, left  # nothing recorded as failed or cancelled
    p.start()
    for b in (local, *boxes):
        done = p.wait_batch(b["id"], token, timeout=10)
        assert done["status"] == "interrupted", done
        assert {c["status"] for c in done["commands"]} == {"interrupted"}, done["commands"]
        assert all("server stopped" in c["reason"] for c in done["commands"])
    assert wait_gone("300.", timeout=5) == []
    assert containers_of(docker_client, dead) == []
    _healthy_again(p, token, figures, "kill_9_main_process")
    figures["kill_9_main_process"].update({"commands_running": 5, "interrupted": 5})


# attack: a restart (SIGTERM) in the middle of work
@pytest.mark.docker
@pytest.mark.slow
def test_sigterm_drains_with_a_grace_period(
    docker_portal: HPortal, docker_client: Any, figures: dict[str, Any]
) -> None:
    """SIGTERM: commands that end within the 10 s grace period finish (`succeeded`), in a
    container too; the rest are `interrupted`; the server is gone within 25 s, its
    containers and processes with it."""
    p = docker_portal
    token = p.token("term", "operator")
    short = p.submit(token, "touch s && sleep 2 && echo finished-in-grace", workspace="short")
    long = p.submit(token, "sleep 300.77\ntouch l && sleep 300.78\n", workspace="long")
    assert p.wait_running(short["id"], token, 1, timeout=60)
    assert p.wait_running(long["id"], token, 2, timeout=60)
    instance = p.instance_id()
    t0 = time.monotonic()
    p.stop(signal.SIGTERM)
    took = time.monotonic() - t0
    assert took < 25, took
    assert wait_gone("300.7", timeout=5) == []
    assert containers_of(docker_client, instance) == []
    assert integrity(p.data / "bashfleet.db") == "ok"
    p.start()
    s = p.wait_batch(short["id"], token, timeout=5)
    assert s["status"] == "succeeded", s
    out = p.output(short["id"], s["commands"][0]["id"], token)
    assert out["stdout"] == "finished-in-grace\n"
    long_done = p.wait_batch(long["id"], token, timeout=5)
    assert [c["status"] for c in long_done["commands"]] == ["interrupted", "interrupted"]
    _healthy_again(p, token, figures, "sigterm_grace")
    figures["sigterm_grace"].update({"stopped_after_s": round(took, 1), "grace_s": 10})


# --- a private Docker engine ---------------------------------------------------------------


class PrivateEngine:
    """A second dockerd that only the server under test uses."""

    def __init__(self, image: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bfd-", dir="/tmp"))  # short: socket path
        self.sock = self.dir / "d.sock"
        self.host = f"unix://{self.sock}"
        self.image = image
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # in its own network namespace: a second dockerd on the host's would delete `docker0`,
        # the main engine's bridge (it does with --bridge=none), breaking every later container
        self.proc = subprocess.Popen(
            [
                "unshare",
                "--net",
                "--fork",
                "--kill-child",
                "dockerd",
                "--host",
                self.host,
                "--data-root",
                str(self.dir / "root"),
                "--exec-root",
                str(self.dir / "exec"),
                "--pidfile",
                str(self.dir / "d.pid"),
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--ip6tables=false",
                "--log-level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "dockerd.log", "ab"),  # noqa: SIM115 (the child keeps it)
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                docker.DockerClient(base_url=self.host, timeout=5).ping()
                return
            assert self.proc.poll() is None, (self.dir / "dockerd.log").read_text()[-2000:]
            time.sleep(0.2)
        raise AssertionError("the private dockerd did not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            pidfile = self.dir / "d.pid"  # dockerd itself, under `unshare`: let it shut down
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
            if not pidfile.exists():
                self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self) -> Any:
        return docker.DockerClient(base_url=self.host, timeout=30)

    def load_image(self) -> None:
        save = subprocess.Popen(["docker", "save", self.image], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "load", "-q"],
            stdin=save.stdout,
            env={**os.environ, "DOCKER_HOST": self.host},
            check=True,
            capture_output=True,
        )
        assert save.wait() == 0

    def destroy(self) -> None:
        self.stop()
        for line in reversed(Path("/proc/mounts").read_text().splitlines()):
            mountpoint = line.split()[1]
            if mountpoint.startswith(str(self.dir)):
                subprocess.run(["umount", "-l", mountpoint], check=False)
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)


@pytest.fixture(scope="module")
def private_engine(sandbox_image: str) -> Iterator[PrivateEngine]:
    engine = PrivateEngine(sandbox_image)
    try:
        engine.start()
        engine.load_image()
        yield engine
    finally:
        engine.destroy()
    assert not engine.dir.exists()


# The engine's circuit breaker waits 15 s (the default) before it tries the engine again;
# these servers wait 2 s, so that recovering after a restart takes seconds, not 15.
BREAKER_COOLDOWN_S = "2"


@pytest.fixture
def engine_portal(tmp_path: Path, private_engine: PrivateEngine) -> Iterator[HPortal]:
    if private_engine.proc is None:
        private_engine.start()
    env = {"DOCKER_HOST": private_engine.host, "BASHFLEET_BREAKER_COOLDOWN_S": BREAKER_COOLDOWN_S}
    with hportal(tmp_path, isolation="auto", env=env) as p:
        yield p
        p.stop()
        if private_engine.proc is None:
            private_engine.start()
        left = server_containers(private_engine.client())
        for c in left:
            c.remove(force=True)
        assert not left, [c.name for c in left]


# attack: the Docker engine restarts under running commands
@pytest.mark.docker
@pytest.mark.slow
def test_engine_restarted_mid_batch(
    engine_portal: HPortal, private_engine: PrivateEngine, figures: dict[str, Any]
) -> None:
    """The (private) engine restarts while a container command runs: that command ends in
    a final status with a reason (never stuck `running`), independent local work succeeds,
    no process is left, and after the restart new container work runs again."""
    p = engine_portal
    token = p.token("engine", "operator")
    batch = p.submit(token, "echo ran >> runs && sleep 5.317\nsleep 1\n", timeout_s=60)
    assert p.wait_running(batch["id"], token, 1, timeout=60)
    assert p.wait_status(batch["id"], token, 0, {"running"})["status"] == "running"
    deadline = time.monotonic() + 30  # "running" is reported as the container starts
    while not processes_with("sleep 5.317") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with("sleep 5.317"), "the command never ran in its container"
    t0 = time.monotonic()
    private_engine.stop()
    private_engine.start()
    restarted = time.monotonic() - t0
    done = p.wait_batch(batch["id"], token, timeout=90)
    statuses = [c["status"] for c in done["commands"]]
    assert statuses[1] == "succeeded"
    # it was running when the engine went away: a sequential command is never run twice
    assert statuses[0] == "interrupted", done["commands"][0]
    assert "not run again" in done["commands"][0]["reason"], done["commands"][0]
    runs = p.data / "workspaces" / "default" / "runs"
    assert runs.read_text() == "ran\n"
    assert wait_gone("5.317", timeout=5) == []
    _healthy_again(p, token, figures, "engine_restart_mid_batch")
    figures["engine_restart_mid_batch"].update(
        {
            "engine_down_s": round(restarted, 1),
            "running_command_ended_as": statuses[0],
            "reason": done["commands"][0]["reason"],
        }
    )


# attack: work submitted while the Docker engine is down
@pytest.mark.docker
@pytest.mark.slow
def test_engine_down_at_submission(
    engine_portal: HPortal, private_engine: PrivateEngine, figures: dict[str, Any]
) -> None:
    """The engine is down when a batch is submitted: the submission is accepted (201), safe
    work runs, container work waits (`queued`, with the reason) and runs once the engine is
    back; nothing is lost or duplicated."""
    p = engine_portal
    token = p.token("engine", "operator")
    warm = p.submit(token, "touch w")
    assert p.wait_batch(warm["id"], token, timeout=60)["status"] == "succeeded"
    private_engine.stop()
    batch = p.submit(token, "echo local-still-runs\ntouch b && echo box-ran\n", timeout_s=60)
    waiting = p.wait_status(batch["id"], token, 1, {"queued", "failed", "refused"}, timeout=30)
    time.sleep(3)
    mid = p.batch(batch["id"], token)
    assert mid["commands"][0]["status"] == "succeeded"
    assert mid["commands"][1]["status"] in ("queued", "pending"), mid["commands"][1]
    assert "Docker" in (mid["commands"][1]["reason"] or ""), mid["commands"][1]
    t0 = time.monotonic()
    private_engine.start()
    done = p.wait_batch(batch["id"], token, timeout=60)
    back = time.monotonic() - t0
    assert done["status"] == "succeeded", done["commands"]
    out = p.output(batch["id"], done["commands"][1]["id"], token)
    assert out["stdout"] == "box-ran\n"  # ran once
    _healthy_again(p, token, figures, "engine_down_at_submission")
    figures["engine_down_at_submission"].update(
        {"waiting_reason": waiting["reason"], "ran_after_engine_back_s": round(back, 1)}
    )


# attack: the server starts before the Docker engine
@pytest.mark.docker
@pytest.mark.slow
def test_server_started_with_the_engine_down_recovers_when_it_comes_back(
    tmp_path: Path, private_engine: PrivateEngine
) -> None:
    """Engine down at the server's start: container work is refused with a clear reason;
    once the engine is up, new container work runs without restarting the server."""
    private_engine.stop()
    try:
        with hportal(tmp_path, isolation="auto", env={"DOCKER_HOST": private_engine.host}) as p:
            token = p.token("late", "operator")
            first = p.wait_batch(p.submit(token, "touch x")["id"], token, timeout=30)
            assert first["commands"][0]["status"] == "refused"
            assert "bashfleet doctor" in first["commands"][0]["reason"]
            private_engine.start()
            # the server looks for the engine again every 5 s; no restart needed
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                _s, m = p.request("GET", "/api/v1/metrics", token=token)
                if m["docker"]["docker_available"] == 1.0:
                    break
                time.sleep(0.5)
            assert m["docker"]["docker_available"] == 1.0, "the engine was not found again"
            later = p.wait_batch(p.submit(token, "touch y")["id"], token, timeout=60)
            assert later["status"] == "succeeded", later["commands"]
    finally:
        if private_engine.proc is None:
            private_engine.start()


# --- a full data folder --------------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(where: Path, size_mb: int = 20) -> Iterator[Path]:
    image = where / "fs.img"
    mount = where / "mnt"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        image.unlink(missing_ok=True)


def _fill_and_submit(
    p: HPortal, mount: Path, token: str
) -> tuple[list[tuple[int, Any]], list[str]]:
    """Fill the filesystem, then submit three batches; returns the answers and the ids."""
    filler = mount / "filler"
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "status=none"],
        check=False,
        capture_output=True,
    )
    assert os.statvfs(mount).f_bavail == 0
    answers: list[tuple[int, Any]] = []
    ids = []
    for script in ("seq 1 200000", "touch f && seq 1 100000 > big.txt", "echo small"):
        status, body = p.request("POST", "/api/v1/batches", {"script": script}, token=token)
        answers.append((status, body))
        if status == 201:
            ids.append(body["id"])
    time.sleep(2)  # they run (or fail) against the full disk
    answers.append(p.request("GET", "/api/v1/batches?limit=10", token=token))
    answers.append(p.request("GET", "/healthz"))
    for batch_id in ids:
        answers.append(p.request("GET", f"/api/v1/batches/{batch_id}", token=token))
    return answers, ids


# attack: a full disk under the data folder
def test_data_folder_on_a_full_filesystem(tmp_path: Path, figures: dict[str, Any]) -> None:
    """The data folder (database, output, workspaces) on a 20 MB ext4 that fills up: every
    answer is JSON without a traceback (a 5xx is allowed while the disk is full), no process
    is left, the database passes `integrity_check`, and once space is freed the server runs
    new work again without a restart."""
    with small_filesystem(tmp_path) as mount:
        data = mount / "data"
        with hportal(tmp_path, isolation="local", data=data) as p:
            token = p.token("full", "operator")
            before = p.submit(token, "echo before-full")
            p.wait_batch(before["id"], token)
            answers, ids = _fill_and_submit(p, mount, token)
            for status, body in answers:
                assert isinstance(body, dict), (status, body)
                assert "Traceback" not in str(body)
                assert status < 500 or body["error"] == "storage_unavailable", (status, body)
            assert wait_gone("200000", timeout=5) == []
            (mount / "filler").unlink()
            assert integrity(p.data / "bashfleet.db") == "ok"
            _healthy_again(p, token, figures, "full_data_folder")
            figures["full_data_folder"].update(
                {
                    "filesystem_mb": 20,
                    "answers_while_full": sorted({s for s, _ in answers}),
                    "accepted_while_full": len(ids),
                }
            )
        assert integrity(data / "bashfleet.db") == "ok"


# attack: a disk that fills while batches are accepted
def test_batches_accepted_on_a_full_disk_end_in_a_final_status(tmp_path: Path) -> None:
    """Batches accepted while the data folder is full end in a final status once space is
    freed (none stays `pending` or `running` in the store)."""
    with (
        small_filesystem(tmp_path) as mount,
        hportal(tmp_path, isolation="local", data=mount / "data") as p,
    ):
        token = p.token("full", "operator")
        _answers, ids = _fill_and_submit(p, mount, token)
        assert ids, "nothing was accepted while full"
        (mount / "filler").unlink()
        for batch_id in ids:
            done = p.wait_batch(batch_id, token, timeout=4)
            assert done["status"] not in ("pending", "queued", "running"), done


# --- schedules through restarts ------------------------------------------------------------


def _schedule_runs(p: HPortal) -> list[float]:
    with sqlite3.connect(p.data / "bashfleet.db") as db:
        rows = db.execute("select created_at from batches where source = 'schedule'").fetchall()
    return sorted(_epoch(r[0]) for r in rows)


def _epoch(value: str) -> float:
    """Stored times are naive UTC."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


# attack: restarts around schedule ticks (lost, doubled or stormed runs)
@pytest.mark.slow
def test_schedules_through_three_restarts(tmp_path: Path, figures: dict[str, Any]) -> None:
    """An interval schedule (2 s) through three restarts, each after ~4.5 s down (two
    missed ticks): each restart gives exactly one catch-up run (missed ticks coalesce), never
    two runs at once, one schedule afterwards and no pickled job anywhere."""
    env = {"BASHFLEET_SCHEDULE_MIN_INTERVAL_S": "1"}  # 60 s by default
    with hportal(tmp_path, isolation="local", env=env) as p:
        _three_restarts(p, figures)


def _three_restarts(p: HPortal, figures: dict[str, Any]) -> None:
    token = p.token("cron", "operator")
    status, s = p.request(
        "POST",
        "/api/v1/schedules",
        {"name": "tick", "script": "echo tick", "interval_s": 2},
        token=token,
    )
    assert status == 201, s
    first_tick = datetime.fromisoformat(s["next_run_at"]).timestamp()

    def tick_of(t: float) -> int | None:
        """The regular tick a run belongs to (it fires at first_tick + 2k), else None."""
        k = round((t - first_tick) / 2)
        return k if 0 <= t - (first_tick + 2 * k) < 0.4 else None

    deadline = time.monotonic() + 10
    while not _schedule_runs(p) and time.monotonic() < deadline:  # it fires before restarts
        time.sleep(0.1)
    assert _schedule_runs(p), "the schedule never fired"
    catch_ups: list[int] = []
    stops: list[float] = []
    for _ in range(3):
        t_stop = time.time()
        p.stop()
        down_at = time.time()
        stops.append(round(down_at - t_stop, 1))
        time.sleep(4.5)  # two ticks are missed
        p.start()
        ready = time.time()
        time.sleep(1.5)
        window = [t for t in _schedule_runs(p) if down_at < t < ready + 1.5]
        assert window and window[0] - ready < 1.0, (window, ready)  # caught up at once
        extra = [t for t in window if tick_of(t) is None]
        # one catch-up for all the missed ticks (it may coincide with a regular tick)
        assert len(extra) == 1 or (not extra and window[0] - ready < 0.5), (window, ready)
        catch_ups.append(max(1, len(extra)))
    runs = _schedule_runs(p)
    ticks = [k for k in map(tick_of, runs) if k is not None]
    assert len(ticks) == len(set(ticks)), ticks  # never two runs for one tick
    status, listed = p.request("GET", "/api/v1/schedules", token=token)
    assert len(listed["items"]) == 1
    with sqlite3.connect(p.data / "bashfleet.db") as db:
        tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
        jobs = db.execute("select id from schedules where next_run_at is not null").fetchall()
    assert "apscheduler_jobs" not in tables  # jobs are rebuilt from the schedules table
    assert jobs == [(s["id"],)], jobs
    assert integrity(p.data / "bashfleet.db") == "ok"
    assert processes_with("echo tick") == []
    figures["schedules_three_restarts"] = {
        "survived": True,
        "restarts": 3,
        "catch_up_runs_per_restart": catch_ups,
        "sigterm_stop_s": stops,
        "scheduler_jobs": len(jobs),
        "runs_total": len(runs),
    }
