"""The boundary, tried the way users start the portal: nothing of the host reaches a
command, in any class, whatever the data folder (outside /tmp here: hiding /tmp is not
what protects it).

Each documented way to start the portal (`bashfleet --data DIR serve`, the default data
path, `scripts/serve`; the compose stack is tests/test_deploy.py) gets one batch whose
commands, in every class, go for the secret key (by absolute path, by `../`, through a
symlink planted in the workspace), a host-only marker in /opt and /root, /etc/shadow,
/proc/1/environ and the Docker socket. None of it may appear in any output.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.portal import ADMIN_PASSWORD, BASHFLEET, Portal, running_portal

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.docker


@dataclass
class DefaultPathPortal(Portal):
    """`bashfleet serve` with no --data: the default data path under $HOME."""

    def command(self) -> list[str]:
        return [*self.prefix, self.env["BASHFLEET_BIN"], "serve", "--port", str(self.port)]


@dataclass
class ScriptPortal(Portal):
    """`scripts/serve` (data from BASHFLEET_DATA, as the script documents)."""

    start_timeout_s = 180.0  # the script runs scripts/setup (pip) first

    def command(self) -> list[str]:
        return [str(ROOT / "scripts" / "serve"), "--port", str(self.port)]


@pytest.fixture(params=["data-dir", "default-path", "scripts-serve"])
def started(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Portal]:
    base = Path("/var/lib") / f"bashfleet-boundary-{uuid.uuid4().hex[:8]}"
    base.mkdir(parents=True)
    try:
        env: dict[str, str] = {}
        if request.param == "default-path":
            env["HOME"] = str(base / "home")
            data = base / "home" / ".local" / "share" / "bashfleet"
            data.mkdir(parents=True)
            env["BASHFLEET_BIN"] = BASHFLEET
            kind: type[Portal] = DefaultPathPortal
        elif request.param == "scripts-serve":
            data = base / "data"
            env["BASHFLEET_DATA"] = str(data)
            kind = ScriptPortal
        else:
            data = base / "data"
            kind = Portal
        with running_portal(tmp_path, env=env, data=data, kind=kind) as p:
            yield p
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_no_command_in_any_class_reaches_the_host(started: Portal) -> None:
    portal = started
    secret = (portal.data / "secret_key").read_text().strip()
    assert len(secret) >= 32
    marker = f"HOST-ONLY-{uuid.uuid4().hex}"
    opt_marker = Path("/opt") / f"bashfleet-marker-{uuid.uuid4().hex[:8]}"
    root_marker = Path("/root") / f"bashfleet-marker-{uuid.uuid4().hex[:8]}"
    token = portal.token("mallory", "operator")
    # the workspace exists once a batch used it; plant a symlink to the data folder in it
    status, first = portal.request("POST", "/api/v1/batches", {"script": "true"}, token=token)
    assert status == 201, first
    portal.wait_batch(first["id"], token)
    workspace = portal.data / "workspaces" / "default"
    (workspace / "data-link").symlink_to(portal.data)
    key, data = portal.data / "secret_key", portal.data
    probes = {
        "safe": [
            f"cat {key}",
            "cat ../../secret_key",
            "cat data-link/secret_key",
            f"cat {opt_marker}",
            f"ls -la /root {data}",
            "ls -la /root",
            "cat /etc/shadow",
            "cat /proc/1/environ",
            "ls -la /var/run/docker.sock /run/docker.sock",
        ],
        "conditional": [f"python3 -c 'print(open(\"{key}\").read())'", "make -C data-link"],
        "sequential": [f"cp {key} stolen.txt && cat stolen.txt", f"cd {data} && cat secret_key"],
        "dangerous": [f"sudo cat {key}", f"rm -rf /nonexistent && cat {key} {root_marker}"],
    }
    opt_marker.write_text(marker + "\n")
    root_marker.write_text(marker + "\n")
    try:  # one batch per command: a failed read must not skip the rest
        batches = []
        for command in (c for commands in probes.values() for c in commands):
            status, batch = portal.request(
                "POST", "/api/v1/batches", {"script": command + "\n"}, token=token
            )
            assert status == 201, batch
            batches.append(batch["id"])
        finished = [portal.wait_batch(b, token, timeout=120) for b in batches]
    finally:
        opt_marker.unlink()
        root_marker.unlink()
    classes: set[str] = set()
    ran: set[str] = set()
    for done in finished:
        assert done["status"] not in ("pending", "queued", "running"), done
        (command,) = done["commands"]
        classes.add(command["class"])
        status, out = portal.request(
            "GET",
            f"/api/v1/batches/{done['id']}/commands/{command['id']}/output",
            token=token,
        )
        assert status == 200, out
        text = out["stdout"] + out["stderr"]
        for leaked in (secret, marker, ADMIN_PASSWORD):
            assert leaked not in text, (command["command"], text)
        # a listing of the host's /root would name the marker (commands never name it)
        assert root_marker.name not in out["stdout"], (command["command"], text)
        assert command["status"] in ("succeeded", "failed"), command
        ran.add(command["class"])
    assert classes == {"safe", "conditional", "sequential", "dangerous"}, classes
    assert ran == classes  # every class ran (and found nothing); none was refused
