"""No command, in either pool, can see bashfleet's settings, secrets or database URL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.portal import Portal, running_portal

pytest_plugins = ("docker_fixtures",)

SECRET = "s3cr3t-key-that-must-not-leak"
DB_PASSWORD = "db-password-that-must-not-leak"
PROBE = (
    "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; "
    "ls -la /var/run/docker.sock /run/docker.sock 2>&1; true"
)


@pytest.fixture
def secret_portal(tmp_path: Path, docker_client: Any, sandbox_image: str) -> Iterator[Portal]:
    with running_portal(
        tmp_path,
        env={"BASHFLEET_SECRET_KEY": SECRET, "BASHFLEET_ADMIN_PASSWORD": DB_PASSWORD},
        extra=["--isolation", "auto"],
    ) as p:
        yield p


@pytest.mark.docker
def test_commands_see_no_secrets_and_no_docker_socket(secret_portal: Portal) -> None:
    p = secret_portal
    token = p.token("probe", "operator")
    script = "\n".join(
        [
            f"{{ {PROBE}; }}",  # reads every environ: never judged safe, a container
            f"touch x && {{ {PROBE}; }}",  # sequential: the batch's container
            f"rm -rf y && {{ {PROBE}; }}",  # dangerous: a fresh container
            "cat " + str(p.data / "bashfleet.db") + " | head -c 100 | wc -c",
        ]
    )
    status, batch = p.request("POST", "/api/v1/batches", {"script": script}, token=token)
    assert status == 201, batch
    assert [c["executor"] for c in batch["commands"]] == ["docker", "docker", "docker", "local"]
    done = p.wait_batch(batch["id"], token, timeout=90)
    time.sleep(0.3)
    seen = ""
    for c in done["commands"]:
        _s, out = p.request(
            "GET", f"/api/v1/batches/{batch['id']}/commands/{c['id']}/output", token=token
        )
        seen += out["stdout"] + out["stderr"]
    assert seen.count("PATH=") >= 3  # every probe ran and printed its environment
    assert SECRET not in seen and DB_PASSWORD not in seen
    assert "BASHFLEET_SECRET" not in seen and "BASHFLEET_ADMIN" not in seen
    assert "srw" not in seen  # no command saw the Docker socket
    # the database file does not exist in the local pool's sandbox: nothing was read
    last = done["commands"][3]
    _s, out = p.request(
        "GET", f"/api/v1/batches/{batch['id']}/commands/{last['id']}/output", token=token
    )
    assert out["stdout"].strip() == "0", out
