"""The Dockerfile and compose.yaml, built and run here with no registry.

Local base images replace the registry ones (scripts/compose_images.py, built once per
module): a Debian root filesystem with Python (the Dockerfile's BASE_IMAGE), one with
PostgreSQL (compose's db) and one with Redis (profile `cluster`). `docker-compose` (the
Debian package) brings the stacks up; the tests wait for /healthz, submit batches over the
API and read their results, then remove everything they made.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.portal import free_port

pytest_plugins = ("docker_fixtures",)

ROOT = Path(__file__).resolve().parent.parent
WORKER_UID = 10001  # the Dockerfile's bashfleet user


def _images_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "compose_images", ROOT / "scripts" / "compose_images.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def local_images(docker_client: Any) -> Iterator[dict[str, str]]:
    """compose's base images, built from Debian packages once (kept between runs by tag),
    and one portal image name for the module: the second stack's build hits the cache."""
    if shutil.which("docker-compose") is None:
        pytest.fail(
            "DOCKER-COMPOSE NOT INSTALLED: apt-get install -y docker-compose (CI installs it)",
            pytrace=False,
        )
    images = _images_module()
    portal = f"bftest{uuid.uuid4().hex[:8]}-portal:latest"
    yield {
        "BASHFLEET_BASE_IMAGE": images.python_base("bashfleet-python-base:test"),
        "BASHFLEET_POSTGRES_IMAGE": images.postgres(
            "bashfleet-postgres:test-ready", base="bashfleet-postgres:test"
        ),
        "BASHFLEET_REDIS_IMAGE": images.redis(
            "bashfleet-redis:test-ready", base="bashfleet-redis:test"
        ),
        "BASHFLEET_PORTAL_IMAGE": portal,
    }
    subprocess.run(["docker", "image", "rm", portal], capture_output=True, check=False)


class Stack:
    """One docker-compose project of this test run: its own name, port, images and env."""

    def __init__(self, images: dict[str, str], files: tuple[str, ...], **env: str) -> None:
        self.project = f"bftest{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.files = [a for f in files for a in ("-f", str(ROOT / f))]
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BASHFLEET_")},
            **images,
            "BASHFLEET_PORT": str(self.port),
            "BASHFLEET_ADMIN_PASSWORD": "compose-admin-pw",
            "POSTGRES_PASSWORD": "compose-db-pw",
            **env,
        }

    def __call__(self, *args: str, timeout: float = 600) -> str:
        done = self._run(*args, timeout=timeout)
        assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
        return done.stdout

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker-compose", *self.files, "-p", self.project, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def down(self) -> None:
        """Only this project's containers, networks and volumes (the module's fixture
        removes the portal image)."""
        self._run("down", "-v", "--remove-orphans", timeout=300)

    def wait_healthy(self, limit_s: float = 120) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            try:
                if call(self.url + "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(1)
        pytest.fail("the portal never answered /healthz:\n" + self("logs", "--tail", "80"))

    def token(self) -> str:
        out = self("exec", "-T", "portal", "bashfleet", "token", "create", "admin")
        return out.strip().splitlines()[-1]


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


def wait_for(what: str, probe: Callable[[], Any], limit_s: float, stack: Stack) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.5)
    pytest.fail(f"{what} within {limit_s} s:\n" + stack("logs", "--tail", "60"))


def finished(url: str, batch_id: str, token: str) -> Any:
    _status, got = call(url + f"/api/v1/batches/{batch_id}", token=token)
    return got if got["status"] not in ("pending", "queued", "running") else None


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_compose_stack_serves_a_batch(local_images: dict[str, str]) -> None:
    stack = Stack(local_images, ("compose.yaml",))
    compose, url = stack, stack.url
    try:
        compose("up", "-d", "--build", timeout=900)
        stack.wait_healthy()
        token = stack.token()
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
        got = wait_for("the batch ended", lambda: finished(url, batch["id"], token), 60, stack)
        secret = compose("exec", "-T", "portal", "cat", "/data/secret_key").strip()
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
        user = compose("exec", "-T", "portal", "id", "-u").strip()
        assert user != "0"  # the portal runs as a non-root user
    finally:
        stack.down()


def cluster_env(tmp: Path, **values: str) -> Path:
    """cluster.env.example as an operator fills it in (every value replaced)."""
    lines = []
    for line in (ROOT / "cluster.env.example").read_text().splitlines():
        name = line.split("=", 1)[0]
        if not line.startswith("#") and "=" in line and name != "COMPOSE_PROFILES":
            assert name in values, f"cluster.env.example sets {name}; the test must too"
            line = f"{name}={values[name]}"
        lines.append(line)
    path = tmp / "cluster.env"
    path.write_text("\n".join(lines) + "\n")
    return path


def nodes_folder() -> Path:
    """The nodes' data folders on the host (the engine mounts workspaces from there)."""
    top = Path(tempfile.mkdtemp(prefix="bashfleet-nodes-"))
    top.chmod(0o755)
    for name in ("n1", "n2"):
        (top / name).mkdir()
        if os.geteuid() == 0:
            os.chown(top / name, WORKER_UID, WORKER_UID)
        else:  # a temporary folder of this test only
            (top / name).chmod(0o777)
    return top


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_compose_cluster_runs_batches_on_two_nodes(
    local_images: dict[str, str], docker_client: Any, tmp_path: Path
) -> None:
    """Profile `cluster` (switched on by the env file): Redis with a password and AOF, the
    portal as control plane on PostgreSQL, two workers with the opt-in Docker socket."""
    redis_pw, key = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
    env_file = cluster_env(
        tmp_path,
        REDIS_PASSWORD=redis_pw,
        BASHFLEET_BROKER=f"redis://:{redis_pw}@redis:6379/0",
        BASHFLEET_CLUSTER_KEY=key,
        POSTGRES_PASSWORD="compose-db-pw",
    )
    nodes_dir = nodes_folder()
    stack = Stack(
        local_images,
        ("compose.yaml", "compose.docker-socket.yaml"),
        BASHFLEET_NODES_DIR=str(nodes_dir),
        DOCKER_GID=str(os.stat("/var/run/docker.sock").st_gid),
    )
    stack.files[:0] = ["--env-file", str(env_file)]
    stack.env.pop("POSTGRES_PASSWORD")  # from the env file, as an operator has it
    url, batch_ids = stack.url, []
    try:
        started = time.monotonic()
        stack("up", "-d", "--build", timeout=900)
        services = set(stack("ps", "--services").split())
        assert services == {"db", "portal", "redis", "worker1", "worker2"}, services
        stack.wait_healthy()
        token = stack.token()

        def live() -> list[str]:
            _s, body = call(url + "/api/v1/nodes", token=token)
            assert body["mode"] == "cluster", body
            return sorted(n["name"] for n in body["nodes"] if n["status"] == "live")

        wait_for("two live nodes", lambda: live() == ["n1", "n2"], 60, stack)
        up_s = time.monotonic() - started
        print(f"cluster up (build, start, two live nodes): {up_s:.1f} s")

        script = "echo {w}-$((6 * 7))\nprintf 'made on a node\\n' > made.txt\ncat made.txt\nenv\n"
        for w in ("wa", "wb"):
            status, batch = call(
                url + "/api/v1/batches",
                "POST",
                {"script": script.format(w=w), "workspace": w},
                token,
            )
            assert status == 201, batch
            batch_ids.append(batch["id"])
        homes = []
        for w, batch_id in zip(("wa", "wb"), batch_ids, strict=True):
            got = wait_for("the batch ended", lambda b=batch_id: finished(url, b, token), 90, stack)
            brief = [
                (c["command"], c["status"], c.get("reason"), c["node"]) for c in got["commands"]
            ]
            assert got["status"] == "succeeded", brief
            nodes = {c["node"] for c in got["commands"]}
            assert len(nodes) == 1 and nodes <= {"n1", "n2"}, got["commands"]
            homes.append(nodes.pop())
            outs = []
            for c in got["commands"]:
                _s, out = call(
                    url + f"/api/v1/batches/{batch_id}/commands/{c['id']}/output", token=token
                )
                outs.append(out["stdout"] + out["stderr"])
            assert outs[0] == f"{w}-42\n" and outs[2] == "made on a node\n", outs
            # the workers' broker password and cluster key never reach a command
            assert all(redis_pw not in o and key not in o for o in outs), outs
            # the files are in that node's own data folder on the host
            made = nodes_dir / homes[-1] / "workspaces" / w / "made.txt"
            assert made.read_text() == "made on a node\n"
        assert sorted(homes) == ["n1", "n2"], homes  # two workspaces, two nodes
        print(f"two batches done: {time.monotonic() - started:.1f} s")
        # the control plane executes nothing and holds no socket; the workers run as uid 10001
        assert stack("exec", "-T", "portal", "ls", "/var/run/").count("docker.sock") == 0
        assert stack("exec", "-T", "worker1", "id", "-u").strip() == str(WORKER_UID)
        # Redis keeps an append-only file in its volume
        assert "appendonlydir" in stack("exec", "-T", "redis", "ls", "/data")
        # Without the opt-in override a node has no engine: it refuses, never runs unsandboxed.
        override = stack.files.index(str(ROOT / "compose.docker-socket.yaml"))
        del stack.files[override - 1 : override + 1]
        stack("up", "-d", "--no-deps", "--no-build", "worker1", timeout=300)
        wait_for("node n1 back", lambda: "n1" in live(), 60, stack)
        print(f"n1 recreated without the socket: {time.monotonic() - started:.1f} s")
        workspace = ("wa", "wb")[homes.index("n1")]
        status, batch = call(
            url + "/api/v1/batches",
            "POST",
            {"script": "echo unsandboxed\nprintf x > f.txt\n", "workspace": workspace},
            token,
        )
        assert status == 201, batch
        batch_ids.append(batch["id"])
        got = wait_for("the batch ended", lambda: finished(url, batch["id"], token), 90, stack)
        for c in got["commands"]:
            assert c["node"] == "n1" and c["status"] == "refused", c
            assert "node n1" in c["reason"], c
            _s, out = call(
                url + f"/api/v1/batches/{batch['id']}/commands/{c['id']}/output", token=token
            )
            assert out["stdout"] == "", out
        # A node that stops removes every container it made (a node keeps a batch's
        # container until then: the end of a batch is not sent to the nodes).
        stack("stop", "-t", "30", "worker1", "worker2", timeout=120)
        for batch_id in batch_ids:
            left = docker_client.containers.list(
                ignore_removed=True, all=True, filters={"label": f"bashfleet.batch={batch_id}"}
            )
            assert not left, [(c.name, c.labels) for c in left]
    finally:
        stack.down()
        for batch_id in batch_ids:  # ours only: labelled with this test's batches
            for c in docker_client.containers.list(
                ignore_removed=True, all=True, filters={"label": f"bashfleet.batch={batch_id}"}
            ):
                c.remove(force=True)
        shutil.rmtree(nodes_dir, ignore_errors=True)
