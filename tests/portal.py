"""A real `bashfleet serve` process for end-to-end tests, with users and tokens."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import psutil
import pytest

from sandbox.cli import data_dir
from sandbox.executors.rootfs import trees_dir

BASHFLEET = str(Path(sys.executable).parent / "bashfleet")
ADMIN_PASSWORD = "first-run-password"  # the first-run `admin` of every test portal
SHARED_ROOTFS = trees_dir(data_dir(None))  # where `bashfleet run` keeps its trees


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Portal:
    data: Path
    port: int
    env: dict[str, str]
    extra: list[str] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list)  # e.g. a command that enters a cgroup
    proc: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    # how long start() waits for /healthz: a loaded 2-core machine takes seconds
    start_timeout_s: ClassVar[float] = 30.0
    log_name: ClassVar[str] = "serve.log"  # in the data folder

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BASHFLEET, "--data", str(self.data), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )

    def command(self) -> list[str]:
        """How this portal is started (the documented ways differ)."""
        serve = [BASHFLEET, "--data", str(self.data), "serve", "--port", str(self.port)]
        return [*self.prefix, *serve, *self.extra]

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command(),
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.data / self.log_name, "ab"),  # noqa: SIM115 (the child keeps it)
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"{self.log_name}: no answer on /healthz: " + self.log())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def crash(self) -> None:
        """kill -9 the gunicorn worker (where the scheduler runs), then the master."""
        assert self.proc is not None
        workers = psutil.Process(self.proc.pid).children()
        assert workers, "no gunicorn worker found"
        for worker in workers:
            os.kill(worker.pid, signal.SIGKILL)
        self.stop(signal.SIGKILL)

    def wait_running(self, batch_id: str, token: str, count: int, timeout: float = 60) -> bool:
        """Wait until at least ``count`` commands of the batch are running (or time is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _s, b = self.request("GET", f"/api/v1/batches/{batch_id}", token=token)
            if sum(c["status"] == "running" for c in b["commands"]) >= count:
                return True
            time.sleep(0.1)
        return False

    def log(self) -> str:
        path = self.data / self.log_name
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def token(self, user: str, role: str) -> str:
        """A new user with ``role`` and an API token of theirs (cached per user name).

        While the portal runs (its database migrated), this does in the test process what
        `bashfleet user add` and `bashfleet token create` do, with the same audit rows: two
        Python start-ups a user cost seconds on a loaded machine. Before a start it uses
        the CLI itself (which migrates)."""
        if user not in self.tokens:
            if self.proc is None or self.proc.poll() is not None:
                added = self.cli("user", "add", user, "--role", role)
                assert added.returncode == 0, added.stderr
                made = self.cli("token", "create", user)
                assert made.returncode == 0, made.stderr
                self.tokens[user] = made.stdout.strip().splitlines()[-1]
            else:
                self.tokens[user] = user_token(self, user, role)
        return self.tokens[user]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, text.decode(errors="replace")

    def wait_batch(self, batch_id: str, token: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, batch = self.request("GET", f"/api/v1/batches/{batch_id}", token=token)
            assert status == 200, batch
            if (
                batch["status"] not in ("pending", "queued", "running")
                or time.monotonic() > deadline
            ):
                return batch
            time.sleep(0.1)


def user_token(portal: Portal, user: str, role: str, *, password: str | None = None) -> str:
    """`bashfleet user add USER --role ROLE [--password-stdin]` then `bashfleet token create
    USER`, done in the test process against a running portal's database (same rows, same
    audit); returns the token. Without ``password`` one is generated (and not shown)."""
    from sandbox.store import Role, Store, default_url, make_engine

    url = portal.env.get("BASHFLEET_DATABASE_URL") or default_url(portal.data)
    store = Store.open(make_engine(url), portal.data)
    try:
        assert store.accounts.find_user(user) is None, f"user {user!r} exists already"
        made = store.accounts.create_user(user, password or secrets.token_urlsafe(15), Role(role))
        store.audit.append(
            "user_created", actor="cli", target=made.name, detail={"role": made.role.value}
        )
        new = store.accounts.create_token(made.id, "cli")
        store.audit.append("token_created", actor="cli", user_id=made.id, target=new.token.prefix)
        return new.secret
    finally:
        store.close()


P = TypeVar("P", bound=Portal)


@contextlib.contextmanager
def running_portal(
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    extra: list[str] | None = None,
    prefix: list[str] | None = None,
    data: Path | None = None,
    kind: type[P] = Portal,  # type: ignore[assignment]
) -> Iterator[P]:
    """A started portal (of class ``kind``) on a data folder (fresh unless ``data``, which
    may exist); stopped (SIGTERM) afterwards. The first-run admin's password is
    ADMIN_PASSWORD."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BASHFLEET_")}
    base["BASHFLEET_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    # one image tree for every test portal (unpacked once per session by conftest), not
    # 150 MB and seconds per portal
    base["BASHFLEET_ROOTFS"] = str(SHARED_ROOTFS)
    base.update(env or {})
    folder = data or tmp_path / "data"
    folder.mkdir(exist_ok=True)
    p = kind(data=folder, port=free_port(), env=base, extra=extra or [], prefix=prefix or [])
    p.start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    with running_portal(tmp_path, extra=["--isolation", "local"]) as p:
        yield p


@pytest.fixture
def fresh_portal(tmp_path: Path) -> Iterator[Portal]:
    """`portal` under a second name, for a test of a module that shares one portal
    (``module_portal``) but needs a portal of its own (it kills, stops or floods it)."""
    with running_portal(tmp_path, extra=["--isolation", "local"]) as p:
        yield p


@pytest.fixture(params=["sqlite", "postgresql"])
def any_portal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Portal]:
    env = {"BASHFLEET_SUBMIT_RATE": "1000"}
    if request.param == "postgresql":
        env["BASHFLEET_DATABASE_URL"] = request.getfixturevalue("pg_url")
    with running_portal(tmp_path, env=env, extra=["--isolation", "local"]) as p:
        yield p


@pytest.fixture(scope="module")
def module_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """One `--isolation local` portal (SQLite) for a whole test module, for modules whose
    tests each use users (and workspaces) of their own, so that none sees another's
    changes: starting a portal costs seconds. A module opts in by overriding ``portal``
    with a fixture that returns ``alive(module_portal)``; its tests that need a portal of
    their own take ``fresh_portal``."""
    with running_portal(tmp_path_factory.mktemp("portal"), extra=["--isolation", "local"]) as p:
        yield p


def alive(p: Portal) -> Portal:
    """``p``, after checking that it still runs (a test that broke a shared portal shows
    up here, by name, not as odd failures of the tests after it)."""
    assert p.proc is not None and p.proc.poll() is None, "the shared portal died: " + p.log()
    return p
