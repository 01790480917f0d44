"""Secrets and paths: what a command can see and reach, and what the host never follows.

(tests/test_secrets.py checks the environment of the three executors once; this suite adds
the database URL, tokens, the data folder, capabilities, the portal's port, `--isolation
local`, and symlinks planted by commands.)
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.hardening.conftest import HPortal, containers_of, hportal

SECRET = "hardening-secret-key-must-not-leak"
PASSWORD = "hardening-admin-password-must-not-leak"


def probe(data: Path) -> str:
    """What a curious command prints: its environment, every readable environ, its
    capabilities, the Docker socket, the data folder and the database."""
    return (
        "{ env; cat /proc/[0-9]*/environ | tr '\\0' '\\n'; grep CapEff /proc/self/status; "
        "ls -la /var/run/docker.sock /run/docker.sock; "
        f"ls -la {data}; head -c 64 {data}/bashfleet.db | wc -c; "
        f"cat {data}/secret_key; true; }} 2>&1"
    )


def _secret_settings(data: Path) -> dict[str, str]:
    """Settings no command may ever see: the secret key, a password, the database URL."""
    return {
        "BASHFLEET_SECRET_KEY": SECRET,
        "BASHFLEET_ADMIN_PASSWORD": PASSWORD,
        "BASHFLEET_DATABASE_URL": f"sqlite:///{data}/bashfleet.db",
    }


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A data folder outside /tmp: every sandbox has a /tmp of its own, so a data folder
    under /tmp (pytest's tmp_path) would be out of sight even if hiding it failed."""
    base = Path(__file__).resolve().parents[2] / "artifacts"
    base.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="secrets-", dir=base))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def secret_portal(
    tmp_path: Path, outside_tmp: Path, docker_client: Any, sandbox_image: str
) -> Iterator[HPortal]:
    data = outside_tmp / "data"
    data.mkdir()
    env = _secret_settings(data)
    with hportal(tmp_path, isolation="auto", env=env, data=data) as p:
        instance = p.instance_id()
        yield p
        p.stop()
        assert containers_of(docker_client, instance) == []


def _seen(p: HPortal, batch: dict[str, Any], token: str) -> list[str]:
    return [p.output(batch["id"], c["id"], token)["stdout"] for c in batch["commands"]]


def _no_secrets(text: str, data: Path, tokens: list[str]) -> None:
    for secret in (SECRET, PASSWORD, f"sqlite:///{data}", "DATABASE_URL", *tokens):
        assert secret not in text, secret
    settings = set(re.findall(r"BASHFLEET_[A-Z_]+", text))
    assert settings <= {"BASHFLEET_JOB"}, settings  # the job's own marker, nothing else


# attack: a curious command looks for secrets, the Docker socket, the database and capabilities
@pytest.mark.docker
def test_commands_in_both_pools_see_no_secrets_socket_data_or_capabilities(
    secret_portal: HPortal, figures: dict[str, Any]
) -> None:
    """From the local pool (bubblewrap) and from containers (batch and dangerous): `env` and
    `/proc/*/environ` show none of bashfleet's settings, tokens or database URL; the Docker
    socket, the database file and the data folder are unreachable; CapEff is 0."""
    p = secret_portal
    token = p.token("curious", "operator")
    other = p.token("neighbour", "admin")
    script = "\n".join(
        [probe(p.data), f"touch x && {probe(p.data)}", f"rm -rf y && {probe(p.data)}"]
    )
    batch = p.submit(token, script, timeout_s=30)
    done = p.wait_batch(batch["id"], token, timeout=60)
    # reading /proc/*/environ is never judged safe: all three run in containers (the
    # local pool's sandbox gets the same probe in test_local_isolation_scrubs_the_environment)
    assert [c["executor"] for c in done["commands"]] == ["docker", "docker", "docker"]
    assert all(c["status"] == "succeeded" for c in done["commands"]), done["commands"]
    outputs = _seen(p, done, token)
    key_file = p.data / "secret_key"
    secret_key = key_file.read_text().strip() if key_file.exists() else SECRET
    for out in outputs:
        assert "PATH=" in out  # the probe really ran
        _no_secrets(out, p.data, [token, other, p.admin(), secret_key])
        assert "CapEff:\t0000000000000000" in out, out[-2000:]
        assert "srw" not in out  # no Docker socket
        assert not re.search(r" (bashfleet\.db|secret_key|serve\.log)$", out, re.M)  # no listing
        lines = out.splitlines()
        assert "0" in lines  # head -c 64 of the database read nothing
    figures["secrets"] = {
        "pools_probed": ["docker (conditional)", "docker batch", "docker dangerous"],
        "leaks": 0,
        "cap_eff": "0",
    }


# attack: a local-isolation command reads the server's environment for its secrets
def test_local_isolation_scrubs_the_environment(tmp_path: Path, outside_tmp: Path) -> None:
    """Attack: a command run with `--isolation local` (every command in the local pool's
    sandbox on the workspace image) reads the server's settings from its environment, from
    the server's /proc/PID/environ, the data folder, the database and the Docker socket:
    the server's processes do not even exist in there, and nothing else leaks."""
    data = outside_tmp / "data"
    data.mkdir()
    env = _secret_settings(data)
    with hportal(tmp_path, isolation="local", env=env, data=data) as p:
        token = p.token("curious", "operator")
        server = [p.proc.pid if p.proc else 0, p.worker().pid]
        environs = " ".join(f"/proc/{pid}/environ" for pid in server)
        batch = p.submit(
            token,
            f"touch x && env\ntouch y && {{ cat {environs} | tr '\\0' '\\n'; }} 2>&1 || true\n"
            f"touch z && {probe(p.data)}",
            timeout_s=30,
        )
        done = p.wait_batch(batch["id"], token)
        assert [c["executor"] for c in done["commands"]] == ["local"] * 3
        own, servers, probed = _seen(p, done, token)
        assert "PATH=" in own and "PATH=" in probed  # the probes ran
        assert servers.count("No such file or directory") == 2, servers  # no server in there
        for out in (own, servers, probed):
            _no_secrets(out, p.data, [token])
        assert "CapEff:\t0000000000000000" in probed and "srw" not in probed
        assert not re.search(r" (bashfleet\.db|secret_key|serve\.log)$", probed, re.M)


# attack: a container command calls the portal's API from inside
@pytest.mark.docker
def test_a_container_cannot_reach_the_portal(
    secret_portal: HPortal, figures: dict[str, Any]
) -> None:
    """No container reaches the portal's port: not without a network (the default), and not
    from a workspace that allows the network (the portal listens on 127.0.0.1)."""
    p = secret_portal
    token = p.token("reach", "operator")
    hosts = sorted(
        {
            a.address
            for addrs in psutil.net_if_addrs().values()
            for a in addrs
            if a.family.name == "AF_INET"
        }
        | {"127.0.0.1"}
    )
    knock = " ".join(
        f"(echo > /dev/tcp/{h}/{p.port}) 2>/dev/null && echo REACHED-{h} || echo refused-{h};"
        for h in hosts
    )
    p.submit(token, "ls", workspace="open")  # make the workspace, then let it use the network
    with sqlite3.connect(p.data / "bashfleet.db") as db:
        db.execute("update workspaces set network = 'egress' where name = 'open'")
    closed = p.submit(token, f"touch k && {{ {knock} }}", timeout_s=30)
    opened = p.submit(token, f"touch k && {{ {knock} }}", workspace="open", timeout_s=30)
    seen = ""
    for batch in (closed, opened):
        done = p.wait_batch(batch["id"], token, timeout=60)
        assert done["commands"][0]["executor"] == "docker"
        seen += _seen(p, done, token)[0]
    assert "REACHED" not in seen, seen
    assert seen.count("refused-") == 2 * len(hosts), seen
    figures["portal_port_from_containers"] = {"addresses_tried": len(hosts) * 2, "reached": 0}


# attack: path tricks in workspace names and ids (../, absolute, NUL, symlinks)
def test_workspace_names_and_output_paths_never_leave_their_folders(
    local_portal: HPortal, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """`../` and other tricks in workspace names are refused with 400 and create nothing; a
    workspace folder replaced by a symlink is refused; output downloads with `..` or
    encoded slashes in their ids never read outside the output folder."""
    p = local_portal
    token = p.token("paths", "operator")
    refused = 0
    for name in ("../escape", "a/../../b", "/etc", ".hidden", "x/y", "..", "-rf", "a\x00b"):
        status, body = p.request(
            "POST", "/api/v1/batches", {"script": "ls", "workspace": name}, token=token
        )
        assert status == 400 and body["error"] == "invalid_input", (name, body)
        refused += 1
    assert not (p.data / "escape").exists() and not (tmp_path / "escape").exists()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "loot").write_text("host file")
    (p.data / "workspaces").mkdir(exist_ok=True)
    (p.data / "workspaces" / "evil").symlink_to(outside)
    status, body = p.request(
        "POST", "/api/v1/batches", {"script": "ls", "workspace": "evil"}, token=token
    )
    assert status == 400 and "not a plain directory" in body["message"], body
    assert outside.stat().st_uid == os.geteuid()  # not handed over (chowned)
    batch = p.submit(token, "echo ok")
    p.wait_batch(batch["id"], token)
    cid = batch["commands"][0]["id"]
    for path in (
        "/api/v1/batches/..%2F..%2Fetc/commands/passwd/output",
        f"/api/v1/batches/{batch['id']}/commands/..%2F..%2Fsecret_key/output",
        f"/api/v1/batches/{batch['id']}/commands/{cid}%2F..%2F..%2Fbashfleet.db/output",
        f"/api/v1/batches/{batch['id']}/../../secret_key",
        f"/api/v1/batches/{batch['id']}/commands/{cid}/output?offset=-1",
    ):
        status, body = p.request("GET", path, token=token)
        assert 400 <= status < 500, (path, status, body)
        assert "root:" not in str(body) and "SQLite" not in str(body)
        refused += 1
    figures["path_tricks_refused"] = refused


# attack: a command plants symlinks for the server to follow (to /etc/passwd, the data folder)
@pytest.mark.docker
def test_the_host_never_follows_a_symlink_planted_by_a_command(
    docker_portal: HPortal, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """A command plants symlinks in its workspace (to /etc/passwd, the data folder, the
    secret key, a host file); the server's later handling (the workspace hand-over chown of
    a root-owned workspace, output files, the next batches, cleanup) follows none of them:
    owners, modes and contents of the targets are unchanged."""
    p = docker_portal
    token = p.token("planter", "operator")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("keep me")
    targets = [Path("/etc/passwd"), p.data, p.data / "bashfleet.db", victim, victim / "keep"]
    before = {t: (t.stat().st_uid, t.stat().st_gid, t.stat().st_mode) for t in targets}
    plant = (
        " && ".join(f"ln -s {t} link{i}" for i, t in enumerate(targets))
        + " && ln -s /etc/passwd output && ln -s . loop"
    )
    batch = p.submit(token, f"touch planted && {plant}", timeout_s=30)
    done = p.wait_batch(batch["id"], token, timeout=60)
    assert done["status"] == "succeeded", done["commands"]
    ws = p.data / "workspaces" / "default"
    assert (ws / "link0").is_symlink()
    os.chown(ws, 0, 0)  # root-owned again: the next submission hands it over (chown)
    again = p.submit(token, "touch again && ls -la . > listing.txt\nls link4\ncat link0")
    done = p.wait_batch(again["id"], token, timeout=60)
    assert ws.stat().st_uid != 0  # the hand-over happened
    after = {t: (t.stat().st_uid, t.stat().st_gid, t.stat().st_mode) for t in targets}
    assert after == before
    assert (victim / "keep").read_text() == "keep me"
    figures["planted_symlinks_followed"] = 0
