"""`bashfleet doctor`: what is missing, and the exact command that fixes it."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sandbox.errors import BashfleetError


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def check_docker() -> Check:
    if shutil.which("docker") is None and shutil.which("dockerd") is None:
        return Check(
            "docker engine",
            False,
            "Docker is not installed; non-safe commands cannot be isolated",
            "sudo apt-get install -y docker.io && sudo scripts/docker-up",
        )
    try:
        from sandbox.executors.docker import DockerExecutor

        ex = DockerExecutor(instance_id="doctor")
        version = ex.ping()
        ex.close()
    except Exception as e:  # any failure here is the answer, not a crash
        return Check(
            "docker engine",
            False,
            f"no engine answers ({e})",
            "sudo scripts/docker-up   (or: sudo dockerd &)",
        )
    return Check("docker engine", True, f"answers (engine {version})")


def check_image() -> Check:
    from sandbox.image import default_image, image_present

    tag = default_image()
    if image_present(tag):
        return Check("sandbox image", True, tag)
    return Check(
        "sandbox image",
        False,
        f"{tag} is not in the engine (or the engine is down)",
        f"bashfleet image build --tag {tag}",
    )


def check_bubblewrap(data: Path) -> Check:
    """The local pool's sandbox, as the portal makes it: bubblewrap on the image's tree."""
    from sandbox.executors.local import LocalExecutor
    from sandbox.executors.rootfs import ImageTrees, trees_dir
    from sandbox.image import SANDBOX_UID, default_image

    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Check(
            "bubblewrap",
            False,
            "missing: the portal runs safe commands in containers instead (slower), and "
            "refuses them with no Docker engine either",
            "sudo apt-get install -y bubblewrap",
        )
    image = default_image()
    local = LocalExecutor(
        trees=ImageTrees(trees_dir(data)), image=image, fallback_uid=SANDBOX_UID, warm=False
    )
    try:
        problem = local.prepare()
    finally:
        local.close()
    if problem is not None:
        fix = "bashfleet image build (with the Docker engine up: scripts/docker-up)"
        if "no image tree" not in problem:
            fix = "run bashfleet as root, or where bubblewrap may create namespaces"
        return Check("bubblewrap", False, f"the local sandbox cannot run: {problem[:300]}", fix)
    return Check(
        "bubblewrap",
        True,
        f"{bwrap}: safe commands run on {image}'s own files (unpacked in {trees_dir(data)}), "
        "workspace read-only, no host path",
    )


def check_process_limit() -> Check:
    from sandbox.executors import cgroups

    problem = cgroups.probe()
    if problem is not None:
        return Check(
            "process limit",
            False,
            f"{problem}: a fork bomb in the local pool can use up the host's pids",
            "run bashfleet as root with /sys/fs/cgroup writable (a cgroup v1 pids hierarchy, or "
            "v2 with the pids controller), or under systemd with TasksMax=",
        )
    shared = cgroups.shared()
    memory = (
        f"; no memory cgroups ({shared.memory_problem}): rlimits only"
        if shared.memory_problem
        else f"; memory cgroups: a job's memory limit, {cgroups.SANDBOX_MEMORY_SHARE:.0%} of RAM "
        f"per warm sandbox, {cgroups.INSTANCE_MEMORY_SHARE:.0%} for all local jobs"
    )
    return Check(
        "process limit",
        True,
        f"pids cgroups (v{shared.version}): {cgroups.SANDBOX_PIDS_MAX} tasks per warm "
        f"sandbox, a job's own pids limit outside one{memory}",
    )


def check_database(data: Path) -> Check:
    url = os.environ.get("BASHFLEET_DATABASE_URL", "")
    if url and not url.startswith("sqlite"):
        try:
            from sqlalchemy import create_engine, text

            with create_engine(url).connect() as conn:
                conn.execute(text("select 1"))
        except Exception as e:
            return Check("database", False, f"{_redact(url)}: {e}", "check BASHFLEET_DATABASE_URL")
        return Check("database", True, _redact(url))
    try:
        data.mkdir(parents=True, exist_ok=True)
        path = data / "bashfleet.db"
        with sqlite3.connect(path) as conn:
            conn.execute("pragma quick_check").fetchone()
    except (OSError, sqlite3.Error) as e:
        return Check(
            "database",
            False,
            f"{data}: {e}",
            f"mkdir -p {data} && chmod u+rwx {data}   (or pass --data DIR)",
        )
    return Check("database", True, f"SQLite at {path}")


def egress_workspaces(data: Path) -> list[str]:
    """The workspaces with ``network=egress`` (none when there is no database yet)."""
    from sqlalchemy import create_engine, text

    url = os.environ.get("BASHFLEET_DATABASE_URL", "")
    if not url or url.startswith("sqlite"):
        path = data / "bashfleet.db"
        if not path.is_file():
            return []
        url = url or f"sqlite:///{path.resolve()}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("select name from workspaces where network = 'egress' order by name")
            )
            return [str(r[0]) for r in rows]
    finally:
        engine.dispose()


def check_egress(data: Path) -> Check:
    """The egress network's iptables rules, when a workspace has ``network=egress``."""
    from sandbox.executors import egress

    try:
        names = egress_workspaces(data)
    except Exception as e:  # no workspaces table yet, or no database: the database check says
        return Check("egress network", True, f"not needed (no workspaces read: {str(e)[:120]})")
    if not names:
        return Check("egress network", True, "not needed (no workspace has network=egress)")
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    if egress.rules_present():
        return Check("egress network", True, f"rules present (for {shown})")
    return Check(
        "egress network",
        False,
        f"rules missing, needed by {shown}: their jobs are refused until the rules are in",
        "restart the portal as root in the host's network namespace (it installs them at "
        "start), or: sudo python -m sandbox.executors.egress ensure",
    )


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def check_broker() -> Check:
    """Scale-out (BASHFLEET_BROKER set): the broker answers, the key is there, nodes live."""
    from sandbox.cluster import wire
    from sandbox.cluster.signing import load_key

    url = os.environ.get("BASHFLEET_BROKER", "")
    try:
        key = load_key()
    except BashfleetError as e:
        return Check(
            "broker", False, str(e), "export BASHFLEET_CLUSTER_KEY=$(openssl rand -hex 32)"
        )
    try:
        client = wire.redis_client(url, timeout_s=2.0)
        client.ping()
        nodes = wire.live_nodes(client, key)
    except Exception as e:
        return Check("broker", False, f"{_redact(url)}: {e}", "start Redis, check BASHFLEET_BROKER")
    if not nodes:
        return Check(
            "broker",
            False,
            f"{_redact(url)} answers, but no worker node is live",
            "bashfleet worker --broker $BASHFLEET_BROKER --name NAME",
        )
    load = ", ".join(f"{n} ({b.get('running', 0)}/{b.get('slots', 0)})" for n, b in nodes.items())
    return Check("broker", True, f"{_redact(url)}; live nodes: {load}")


def run_doctor(data: Path, out: IO[str]) -> int:
    checks: list[Callable[[], Check]] = [
        check_docker,
        check_image,
        lambda: check_bubblewrap(data),
        check_process_limit,
        lambda: check_database(data),
        lambda: check_egress(data),
    ]
    if os.environ.get("BASHFLEET_BROKER"):  # scale-out
        checks.append(check_broker)
    failed = 0
    for fn in checks:
        c = fn()
        out.write(f"{'ok' if c.ok else 'MISSING':<8} {c.name}: {c.detail}\n")
        if not c.ok:
            failed += 1
            out.write(f"{'':8} fix: {c.fix}\n")
    out.write("all good\n" if not failed else f"{failed} problem(s); fixes above\n")
    return 0 if not failed else 1
