"""A real Redis (from Debian's redis-server) and real `bashfleet worker` processes for the
scale-out tests. Each Redis has a password: the broker URL proves authentication."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from sandbox.cluster.signing import node_key
from sandbox.executors.docker_profiles import LABEL_INSTANCE
from tests.portal import BASHFLEET, SHARED_ROOTFS, Portal, free_port, running_portal

CLUSTER_KEY = "k" * 8 + secrets.token_hex(24)  # one per test session: shared by all sides
TIMEOUT_S = 3.0  # BASHFLEET_NODE_TIMEOUT_S of the cluster tests


def wait_until(predicate: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll until ``predicate()`` is truthy (and return it), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def live_nodes(p: Portal, token: str) -> list[str]:
    _s, body = p.request("GET", "/api/v1/nodes", token=token)
    return [n["name"] for n in body["nodes"] if n["status"] == "live"]


@dataclass
class RedisServer:
    folder: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:  # a missing service fails the test, never skips it
            raise AssertionError("redis-server is missing: scripts/setup --dev installs it")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                exe,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--requirepass", self.password,
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.folder),
            ],
            stdout=open(self.folder / "redis.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class WorkerNode:
    name: str
    data: Path
    broker: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        env = dict(self.env)
        if env.get("BASHFLEET_CLUSTER_KEY") == CLUSTER_KEY and "BASHFLEET_NODE_KEY" not in env:
            # as deployed: the node holds its own key only, never the cluster's
            del env["BASHFLEET_CLUSTER_KEY"]
            env["BASHFLEET_NODE_KEY"] = node_key(CLUSTER_KEY.encode(), self.name).decode()
        self.proc = subprocess.Popen(
            [BASHFLEET, "worker", "--broker", self.broker, "--name", self.name,
             "--data", str(self.data)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.data / "worker.log", "ab"),  # noqa: SIM115
            start_new_session=True,
        )  # fmt: skip

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        path = self.data / "worker.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def cluster_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASHFLEET_")}
    env["BASHFLEET_CLUSTER_KEY"] = CLUSTER_KEY
    env["BASHFLEET_ROOTFS"] = str(SHARED_ROOTFS)
    env.update(extra)
    return env


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> Iterator[tuple[Portal, list[WorkerNode]]]:
    """A portal with `--broker` and two worker nodes n1, n2 (separate data folders).
    A test marked ``cluster_on_postgresql`` gets a control plane on PostgreSQL."""
    env = cluster_env(BASHFLEET_NODE_TIMEOUT_S=str(TIMEOUT_S), BASHFLEET_SUBMIT_RATE="1000")
    if request.node.get_closest_marker("cluster_on_postgresql"):
        env["BASHFLEET_DATABASE_URL"] = request.getfixturevalue("pg_url")
    nodes = [WorkerNode(n, tmp_path / n, redis_server.url, env) for n in ("n1", "n2")]
    for n in nodes:
        n.start()
    try:
        with running_portal(tmp_path, env=env, extra=["--broker", redis_server.url]) as p:
            yield p, nodes
    finally:
        for n in nodes:  # SIGTERM to all first: they stop side by side
            if n.proc and n.proc.poll() is None:
                n.proc.terminate()
        for n in nodes:
            n.stop()
        _remove_containers(nodes)


def _remove_containers(nodes: list[WorkerNode]) -> None:
    client = docker.from_env()
    for c in client.containers.list(
        ignore_removed=True, all=True, filters={"label": LABEL_INSTANCE}
    ):
        if any(c.labels[LABEL_INSTANCE].startswith(f"node.{n.name}.") for n in nodes):
            c.remove(force=True)


@contextlib.contextmanager
def running_cluster(
    folder: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[Portal, list[WorkerNode], RedisServer]]:
    """Redis, a portal with `--broker` and nodes n1, n2 under ``folder``, for a module
    that shares one cluster between its tests (the ``cluster`` fixture makes one per test)."""
    server = RedisServer(folder / "redis")
    server.start()
    env = env or cluster_env(BASHFLEET_NODE_TIMEOUT_S=str(TIMEOUT_S), BASHFLEET_SUBMIT_RATE="1000")
    nodes = [WorkerNode(n, folder / n, server.url, env) for n in ("n1", "n2")]
    try:
        for n in nodes:
            n.start()
        with running_portal(folder, env=env, extra=["--broker", server.url]) as p:
            yield p, nodes, server
    finally:
        for n in nodes:
            if n.proc and n.proc.poll() is None:
                n.proc.terminate()
        for n in nodes:
            n.stop()
        _remove_containers(nodes)
        server.stop()
