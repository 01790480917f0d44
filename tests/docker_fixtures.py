"""Fixtures for tests against the real Docker engine (import them into a test module).

Without an engine these tests fail with a clear message (scripts/test starts one with
scripts/docker-up); they never skip.
Every test's executor gets its own instance id, and teardown asserts that no container
labelled with it remains.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.executors.docker import DockerExecutor
from sandbox.image import default_image

TEST_UID = 1234  # a non-root workspace owner that does not exist on the host or in the image


def _engine_client() -> Any:
    import docker  # tests may import docker; sandbox/ keeps it to executors/docker.py

    try:
        client = docker.from_env(timeout=10)
        client.ping()
        return client
    except Exception as e:
        # scripts/test starts the engine; a missing one is a failure, never a skip
        pytest.fail(
            f"DOCKER ENGINE NOT AVAILABLE ({e}): start it with scripts/docker-up "
            "(scripts/test does). Docker isolation tests cannot run without it.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def docker_client() -> Any:
    return _engine_client()


@pytest.fixture(scope="session")
def sandbox_image(docker_client: Any) -> str:
    from sandbox.image import build_image

    return build_image(default_image())


@pytest.fixture
def docker_instance_id() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def _containers_of(client: Any, instance_id: str) -> list[Any]:
    return list(
        client.containers.list(
            ignore_removed=True, all=True, filters={"label": f"bashfleet.instance={instance_id}"}
        )
    )


@pytest.fixture
def docker_executor(
    docker_client: Any, sandbox_image: str, docker_instance_id: str
) -> Iterator[DockerExecutor]:
    ex = DockerExecutor(image=sandbox_image, instance_id=docker_instance_id, client=docker_client)
    yield ex
    ex.shutdown()
    left = _containers_of(docker_client, docker_instance_id)
    for c in left:
        c.remove(force=True)
    if left:
        pytest.fail(f"containers left behind: {[c.name for c in left]}")


@pytest.fixture
def docker_workspace(tmp_path: Path) -> Path:
    """A workspace owned by a non-root user, as bashfleet's workspaces should be."""
    ws = tmp_path / "ws"
    ws.mkdir()
    if os.geteuid() == 0:
        os.chown(ws, TEST_UID, TEST_UID)
    return ws
