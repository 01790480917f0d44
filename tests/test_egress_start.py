"""The egress network's rules are made when the portal starts with a ``network=egress``
workspace, and when a workspace is switched to egress, not on the first egress job."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.executors import egress
from tests.portal import running_portal

pytest_plugins = ("docker_fixtures",)


@pytest.fixture
def no_rules(docker_client: Any) -> Iterator[None]:
    """The rules absent to start with; put back as found."""
    had = egress.rules_present()
    egress.remove_rules()
    assert not egress.rules_present()
    yield
    if had:
        egress.ensure(docker_client)
    else:
        egress.remove(docker_client)


def _appear(timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if egress.rules_present():
            return True
        time.sleep(0.3)
    return False


@pytest.mark.docker
def test_rules_made_at_start_and_when_a_workspace_turns_to_egress(
    tmp_path: Path, no_rules: None
) -> None:
    from sandbox.accounts_cli import open_store

    data = tmp_path / "data"
    store = open_store(data)
    store.workspaces.get_or_create("web", allow_network=True)
    store.close()
    with running_portal(tmp_path, data=data) as p:
        assert _appear(), "no egress rules after the portal started"
        egress.remove_rules()
        admin = p.token("root", "admin")
        status, ws = p.request("PUT", "/api/v1/workspaces/other", {"network": "none"}, token=admin)
        assert status == 200, ws
        assert not _appear(1.5)  # a workspace without egress needs none
        status, ws = p.request(
            "PUT", "/api/v1/workspaces/other", {"network": "egress"}, token=admin
        )
        assert status == 200 and ws["network"] == "egress", ws
        assert _appear(), "no egress rules after a workspace was switched to egress"
