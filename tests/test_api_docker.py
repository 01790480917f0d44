"""The portal with the real Docker engine: container commands, and recovery after kill -9."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.portal import Portal, running_portal

pytest_plugins = ("docker_fixtures",)


@pytest.fixture
def docker_portal(tmp_path: Path, docker_client: Any, sandbox_image: str) -> Iterator[Portal]:
    with running_portal(tmp_path, env={}, extra=["--isolation", "auto"]) as p:
        yield p


def server_containers(client: Any) -> list[Any]:
    return [
        c
        for c in client.containers.list(
            ignore_removed=True, all=True, filters={"label": "bashfleet.instance"}
        )
        if c.labels.get("bashfleet.instance", "").startswith("server-")
    ]


@pytest.mark.docker
def test_container_commands_and_kill_9_recovery(docker_portal: Portal, docker_client: Any) -> None:
    p = docker_portal
    token = p.token("ops", "operator")
    status, batch = p.request(
        "POST", "/api/v1/batches", {"script": "touch made.txt\nls\nid -u\n"}, token=token
    )
    assert status == 201
    done = p.wait_batch(batch["id"], token)
    assert [c["executor"] for c in done["commands"]] == ["docker", "local", "local"]
    assert done["status"] == "succeeded", done
    assert (p.data / "workspaces" / "default" / "made.txt").stat().st_uid != 0

    status, batch = p.request(
        "POST",
        "/api/v1/batches",
        {"script": "touch a && sleep 120\nsleep 120.5\nrm -rf gone && sleep 120\n"},
        token=token,
    )
    assert status == 201
    p.wait_running(batch["id"], token, 2)
    dead = {c.labels["bashfleet.instance"] for c in server_containers(docker_client)}
    assert dead, "no container was started"
    p.crash()
    p.start()
    done = p.wait_batch(batch["id"], token, timeout=10)
    assert done["status"] == "interrupted"
    assert {c["status"] for c in done["commands"]} <= {"interrupted", "cancelled"}
    left = [
        c.labels for c in server_containers(docker_client) if c.labels["bashfleet.instance"] in dead
    ]
    assert left == []  # the dead server's containers are gone; the new server may have its own
    time.sleep(0.3)
    assert not [
        q.info["cmdline"]
        for q in psutil.process_iter(["cmdline"])
        if "120.5" in (q.info["cmdline"] or [])
    ]
