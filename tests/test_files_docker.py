"""Files in and artifacts out with container commands (the real Docker engine): what an
upload writes belongs to the workspace's owner (uid 1000), so a container, which never
runs as root, can change it; what a container writes is kept as an artifact."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.portal import Portal, running_portal
from tests.test_files_api import http

pytest_plugins = ("docker_fixtures",)


@pytest.fixture
def docker_portal(tmp_path: Path, docker_client: Any, sandbox_image: str) -> Iterator[Portal]:
    with running_portal(tmp_path, env={}, extra=["--isolation", "auto"]) as p:
        yield p


@pytest.mark.docker
def test_uploaded_files_are_usable_by_containers_and_artifacts_come_out(
    docker_portal: Portal,
) -> None:
    p = docker_portal
    op = p.token("dora", "operator")
    status, first = p.request(
        "POST", "/api/v1/batches", {"script": "ls", "workspace": "dock"}, token=op
    )
    assert status == 201 and p.wait_batch(first["id"], op)["status"] == "succeeded"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in {"src/in.txt": b"uploaded\n", "src/sub/keep": b""}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    status, _h, body = http(p, "PUT", "/api/v1/workspaces/dock/files", op, buf.getvalue())
    assert status == 201, body
    ws = p.data / "workspaces" / "dock"
    if os.geteuid() == 0:
        assert {(ws / n).stat().st_uid for n in ("src", "src/sub", "src/in.txt")} == {1000}
    status, batch = p.request(
        "POST",
        "/api/v1/batches",
        {
            "script": "echo made > src/sub/out.txt && cp src/in.txt dist.txt\nid -u",
            "workspace": "dock",
            "artifacts": ["src/sub/*.txt", "dist.txt"],
        },
        token=op,
    )
    assert status == 201
    done = p.wait_batch(batch["id"], op, timeout=120)
    assert done["status"] == "succeeded", done
    assert done["commands"][0]["executor"] == "docker"
    _s, listing = p.request("GET", f"/api/v1/batches/{batch['id']}/artifacts", token=op)
    assert {a["path"] for a in listing["items"]} == {"src/sub/out.txt", "dist.txt"}
    base = f"/api/v1/batches/{batch['id']}/artifacts"
    assert http(p, "GET", f"{base}/src/sub/out.txt", op)[2] == b"made\n"
    assert http(p, "GET", f"{base}/dist.txt", op)[2] == b"uploaded\n"
