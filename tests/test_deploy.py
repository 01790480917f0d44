"""The Dockerfile and compose.yaml, built and run here with no registry.

Local base images replace the registry ones: a Debian root filesystem with Python
(for the Dockerfile's BASE_IMAGE) and one with PostgreSQL (for compose's db service).
`docker-compose` (the Debian package) brings the stack up; the test waits for
/healthz, submits a batch over the API and reads its result, then removes everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from sandbox.image import build_debian_image
from tests.portal import free_port

pytest_plugins = ("docker_fixtures",)

ROOT = Path(__file__).resolve().parent.parent
PYTHON_BASE = "bashfleet-python-base:test"
POSTGRES = "bashfleet-postgres:test"

PG_ENTRYPOINT = r"""#!/bin/sh
# A minimal stand-in for the official image's entrypoint (POSTGRES_USER/PASSWORD/DB).
set -e
PGDATA=/var/lib/postgresql/data
BIN=$(ls -d /usr/lib/postgresql/*/bin | head -n 1)
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  runuser -u postgres -- "$BIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
  runuser -u postgres -- psql -q -c "CREATE USER \"$POSTGRES_USER\" PASSWORD '$POSTGRES_PASSWORD'"
  runuser -u postgres -- psql -q -c "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\""
  runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -w stop >/dev/null
fi
exec runuser -u postgres -- "$BIN/postgres" -D "$PGDATA"
"""


def compose(project: str, env: dict[str, str], *args: str, timeout: float = 600) -> str:
    done = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "compose.yaml"), "-p", project, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout


def call(url: str, method: str = "GET", body: Any = None, token: str = "") -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode() if body is not None else None, method=method
    )
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.docker
@pytest.mark.slow
def test_compose_stack_serves_a_batch(docker_client: Any) -> None:
    # The host's certificate store goes into the base image, so that pip inside the build
    # trusts whatever the host trusts (here: a TLS-inspecting proxy's CA).
    bundle = Path("/etc/ssl/certs/ca-certificates.crt").read_text()
    build_debian_image(
        PYTHON_BASE,
        ("python3", "python3-venv", "ca-certificates"),
        {"/etc/ssl/certs/ca-certificates.crt": (bundle, 0o644)},
    )
    build_debian_image(
        POSTGRES,
        ("postgresql", "ca-certificates"),
        {"/usr/local/bin/docker-entrypoint": (PG_ENTRYPOINT, 0o755)},
    )
    # pg_isready must be on PATH for compose's health check, and the entrypoint the command.
    ready = f"{POSTGRES}-ready"
    if subprocess.run(["docker", "image", "inspect", ready], capture_output=True).returncode:
        dockerfile = "\n".join(
            [
                f"FROM {POSTGRES}",
                "RUN ln -sf $(ls -d /usr/lib/postgresql/*/bin | head -n 1)/pg_isready"
                " /usr/local/bin/pg_isready",
                'CMD ["/usr/local/bin/docker-entrypoint"]',
            ]
        )
        subprocess.run(
            ["docker", "build", "-q", "-t", ready, "-"],
            input=dockerfile.encode(),
            check=True,
            capture_output=True,
            timeout=300,
        )
    project = f"bftest{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BASHFLEET_")},
        "BASHFLEET_BASE_IMAGE": PYTHON_BASE,
        "BASHFLEET_POSTGRES_IMAGE": f"{POSTGRES}-ready",
        "BASHFLEET_PORTAL_IMAGE": f"{project}-portal:latest",
        "BASHFLEET_PORT": str(port),
        "BASHFLEET_ADMIN_PASSWORD": "compose-admin-pw",
        "POSTGRES_PASSWORD": "compose-db-pw",
    }
    try:
        compose(project, env, "up", "-d", "--build", timeout=900)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if call(url + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            pytest.fail("the portal never answered /healthz:\n" + compose(project, env, "logs"))
        token = (
            compose(project, env, "exec", "-T", "portal", "bashfleet", "token", "create", "admin")
            .strip()
            .splitlines()[-1]
        )
        # An operator's commands, in every class, go for the portal's secrets. This stack
        # has no Docker socket (and Docker gives it no user namespaces): there is no
        # sandbox to run them in, so they are refused with the reason; nothing may leak.
        probes = [
            "echo from compose",
            "cat /data/secret_key",
            "cat ../../secret_key",
            "cat /proc/1/environ",
            "ls -la /var/run/docker.sock",
            "env",
            "cp /data/secret_key leak.txt",
            "rm -rf /data",
        ]
        status, batch = call(
            url + "/api/v1/batches", "POST", {"script": "\n".join(probes) + "\n"}, token
        )
        assert status == 201, batch
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, got = call(url + f"/api/v1/batches/{batch['id']}", token=token)
            if got["status"] not in ("pending", "queued", "running"):
                break
            time.sleep(0.5)
        secret = compose(project, env, "exec", "-T", "portal", "cat", "/data/secret_key").strip()
        assert len(secret) > 20
        for command in got["commands"]:
            assert command["status"] in ("refused", "skipped", "succeeded", "failed"), command
            if command["status"] == "refused":
                assert "sandbox" in (command["reason"] or ""), command
            status, out = call(
                url + f"/api/v1/batches/{batch['id']}/commands/{command['id']}/output",
                token=token,
            )
            text = out["stdout"] + out["stderr"]
            assert secret not in text and "compose-db-pw" not in text, command
        first = got["commands"][0]
        assert first["status"] in ("refused", "succeeded")
        user = compose(project, env, "exec", "-T", "portal", "id", "-u").strip()
        assert user != "0"  # the portal runs as a non-root user
    finally:
        subprocess.run(
            [
                "docker-compose",
                "-f",
                str(ROOT / "compose.yaml"),
                "-p",
                project,
                "down",
                "-v",
                "--rmi",
                "local",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )
