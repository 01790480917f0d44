"""`bashfleet doctor`: each check, and the exact fix when something is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ("docker_fixtures",)

BASHFLEET = str(Path(sys.executable).parent / "bashfleet")


def doctor(data: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASHFLEET, "--data", str(data), "doctor"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )


@pytest.mark.docker
def test_all_good_with_the_engine_image_and_bubblewrap(
    tmp_path: Path, docker_client: Any, sandbox_image: str
) -> None:
    done = doctor(tmp_path)
    assert done.returncode == 0, done.stdout
    for name in ("docker engine", "sandbox image", "bubblewrap", "database"):
        assert f"ok       {name}:" in done.stdout
    assert done.stdout.strip().endswith("all good")


def test_missing_engine_names_the_fix(tmp_path: Path) -> None:
    done = doctor(tmp_path, DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert done.returncode == 1
    assert "MISSING  docker engine" in done.stdout
    assert "fix: sudo scripts/docker-up" in done.stdout
    assert "fix: bashfleet image build --tag bashfleet-sandbox:latest" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_unwritable_data_folder_names_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = doctor(blocker / "data", DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert done.returncode == 1
    assert "MISSING  database" in done.stdout and "fix: mkdir -p" in done.stdout


def test_the_process_limit_is_reported(tmp_path: Path) -> None:
    """CI runs as root: the local pool's pids cgroups must be there (never a skip)."""
    done = doctor(tmp_path, DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert "ok       process limit: pids cgroups" in done.stdout, done.stdout + done.stderr


def test_no_process_limit_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox import doctor as doctor_module
    from sandbox.executors import cgroups

    monkeypatch.setattr(cgroups, "probe", lambda: "cannot create a pids cgroup: read-only")
    check = doctor_module.check_process_limit()
    assert not check.ok and "fork bomb" in check.detail and "TasksMax=" in check.fix


def _egress_workspace(data: Path, name: str) -> None:
    from sandbox.accounts_cli import open_store

    store = open_store(data)
    store.workspaces.get_or_create(name, allow_network=True)
    store.close()


def test_egress_not_needed_without_egress_workspaces(tmp_path: Path) -> None:
    done = doctor(tmp_path, DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert "ok       egress network: not needed" in done.stdout, done.stdout


def test_egress_rules_missing_names_the_workspace_and_the_fix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _egress_workspace(data, "web")
    bare = tmp_path / "bin"  # no iptables on this PATH: the rules cannot be there
    bare.mkdir()
    done = doctor(data, DOCKER_HOST="unix:///nonexistent/docker.sock", PATH=str(bare))
    assert "MISSING  egress network: rules missing, needed by web" in done.stdout, done.stdout
    assert "sandbox.executors.egress ensure" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.docker
def test_egress_rules_present_are_reported(tmp_path: Path, docker_client: Any) -> None:
    from sandbox.executors import egress

    data = tmp_path / "data"
    _egress_workspace(data, "web")
    had = egress.rules_present()
    egress.ensure(docker_client)
    try:
        done = doctor(data)
        assert "ok       egress network: rules present (for web)" in done.stdout, done.stdout
    finally:
        if not had:
            egress.remove(docker_client)
