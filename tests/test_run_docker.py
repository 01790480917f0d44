"""`bashfleet run` with the real Docker engine: routing, ownership, crash recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ("docker_fixtures",)

BASHFLEET = str(Path(sys.executable).parent / "bashfleet")
OWNER = 1234  # a non-root workspace owner


def labelled(client: Any, instance_prefix: str = "cli-") -> list[Any]:
    return [
        c
        for c in client.containers.list(
            ignore_removed=True, all=True, filters={"label": "bashfleet.instance"}
        )
        if c.labels.get("bashfleet.instance", "").startswith(instance_prefix)
    ]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    os.chown(ws, OWNER, OWNER)
    return ws


@pytest.mark.docker
def test_auto_isolation_routes_non_safe_commands_to_docker(
    workspace: Path, docker_client: Any, sandbox_image: str
) -> None:
    before = {c.id for c in labelled(docker_client)}
    script = workspace.parent / "batch.sh"
    script.write_text("touch made.txt\nls\nrm -rf sub\nid -u\n")
    done = subprocess.run(
        [BASHFLEET, "run", str(script), "--workspace", str(workspace), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    rows = [(c["class"], c["executor"], c["status"]) for c in summary["commands"]]
    assert rows == [
        ("sequential", "docker", "succeeded"),
        ("safe", "local", "succeeded"),
        ("dangerous", "docker", "succeeded"),
        ("safe", "local", "succeeded"),
    ], done.stderr
    assert summary["commands"][1]["stdout"] == "made.txt\n"
    assert (workspace / "made.txt").stat().st_uid == OWNER
    assert {c.id for c in labelled(docker_client)} <= before  # nothing of this run is left


@pytest.mark.docker
def test_kill_9_mid_batch_then_a_new_run_leaves_no_container(
    workspace: Path, docker_client: Any, sandbox_image: str
) -> None:
    script = workspace.parent / "slow.sh"
    script.write_text("touch a && sleep 60\nrm -rf x && sleep 60\n")
    proc = subprocess.Popen(
        [BASHFLEET, "run", str(script), "--workspace", str(workspace)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prefix = f"cli-{proc.pid}-"
    deadline = time.monotonic() + 60
    while not labelled(docker_client, prefix) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert labelled(docker_client, prefix), "the run never started a container"
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert labelled(docker_client, prefix)  # left behind by the dead process
    again = workspace.parent / "again.sh"
    again.write_text("touch b\n")
    done = subprocess.run(
        [BASHFLEET, "run", str(again), "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert labelled(docker_client, prefix) == []
