"""The hardening suite's shared pieces: portals on the real engine, probes, and figures.

Every test here attacks a real `bashfleet serve` process (tests/portal.py) with the real
Docker engine and real processes. Measurements (limits hit, latencies held, fault cases
survived) go into one JSON file at the end of the session: ``$BASHFLEET_HARDENING_REPORT``
or ``artifacts/hardening.json``.

Knobs (environment):
- ``BASHFLEET_HARDENING_FLOOD_S``: how long the output flood runs (default 6 s: each
  flood reaches the 10 MiB cap in well under a second, and the test asserts that it did).
- ``BASHFLEET_HARDENING_REPORT``: where the JSON summary goes.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import itertools
import json
import os
import signal
import sqlite3
import statistics
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.docker_fixtures import docker_client, sandbox_image
from tests.portal import ADMIN_PASSWORD, Portal, running_portal

__all__ = ["docker_client", "sandbox_image"]

ROOT = Path(__file__).resolve().parents[2]
REPORT = Path(os.environ.get("BASHFLEET_HARDENING_REPORT", ROOT / "artifacts" / "hardening.json"))
FLOOD_S = float(os.environ.get("BASHFLEET_HARDENING_FLOOD_S", "6"))

HEALTHZ_P99_MS = 500.0  # the contract's numbers, not tighter: 2 cores shared with other work
SENTINEL_GAP_MS = 500.0

# --- figures --------------------------------------------------------------------------------

_FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="session")
def figures() -> Iterator[dict[str, Any]]:
    """Tests put what they measured here; written as JSON when the session ends."""
    yield _FIGURES


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _FIGURES:
        return
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    survived = [k for k, v in _FIGURES.items() if isinstance(v, dict) and v.get("survived")]
    summary = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "memory_gib": psutil.virtual_memory().total >> 30},
        "fault_cases_survived": len(survived),
        "results": dict(sorted(_FIGURES.items())),
    }
    REPORT.write_text(json.dumps(summary, indent=2, default=str) + "\n")


# --- portals --------------------------------------------------------------------------------


@dataclass
class HPortal(Portal):
    """A Portal with an admin token made over the API (fast) and hardening helpers."""

    admin_token: str | None = None  # the first-run `admin`'s, made at the first token()

    # -- helpers -------------------------------------------------------------------------

    def token(self, user: str, role: str) -> str:
        """A new user with ``role`` and an API token of theirs, made over the API by the
        first-run admin (the CLI that Portal.token uses costs two Python start-ups a user)."""
        if user not in self.tokens:
            made = self.add_user(user, role)
            status, tok = self.request(
                "POST",
                "/api/v1/tokens",
                {"name": "test", "user_id": made["id"]},
                token=self.admin(),
            )
            assert status == 201, tok
            self.tokens[user] = str(tok["token"])
        return self.tokens[user]

    def add_user(self, name: str, role: str, password: str | None = None) -> dict[str, Any]:
        body = {"name": name, "role": role} | ({"password": password} if password else {})
        status, made = self.request("POST", "/api/v1/users", body, token=self.admin())
        assert status == 201, made
        return dict(made)

    def admin(self) -> str:
        """An API token of the first-run `admin` (a login session makes it, once)."""
        if self.admin_token is None:
            jar = urllib.request.build_opener(
                urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
            )

            def call(path: str, body: dict[str, Any], csrf: str | None = None) -> Any:
                req = urllib.request.Request(
                    self.url + path, data=json.dumps(body).encode(), method="POST"
                )
                req.add_header("Content-Type", "application/json")
                if csrf:
                    req.add_header("X-CSRF-Token", csrf)
                with jar.open(req, timeout=30) as r:
                    return json.loads(r.read())

            password = self.env.get("BASHFLEET_ADMIN_PASSWORD", ADMIN_PASSWORD)
            me = call("/api/v1/session", {"name": "admin", "password": password})
            made = call("/api/v1/tokens", {"name": "hardening"}, csrf=me["csrf_token"])
            self.admin_token = str(made["token"])
        return self.admin_token

    def submit(self, token: str, script: str, **extra: Any) -> dict[str, Any]:
        status, batch = self.request(
            "POST", "/api/v1/batches", {"script": script, **extra}, token=token
        )
        assert status == 201, batch
        return dict(batch)

    def batch(self, batch_id: str, token: str) -> dict[str, Any]:
        status, batch = self.request("GET", f"/api/v1/batches/{batch_id}", token=token)
        assert status == 200, batch
        return dict(batch)

    def output(
        self, batch_id: str, command_id: str, token: str, offset: int = 0, limit: int = 1 << 20
    ) -> dict[str, Any]:
        status, out = self.request(
            "GET",
            f"/api/v1/batches/{batch_id}/commands/{command_id}/output"
            f"?offset={offset}&limit={limit}",
            token=token,
        )
        assert status == 200, out
        return dict(out)

    def output_file(self, batch_id: str, command_id: str, stream: str) -> Path:
        return self.data / "output" / batch_id / f"{command_id}.{stream}"

    def wait_status(
        self, batch_id: str, token: str, index: int, wanted: set[str], timeout: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            b = self.batch(batch_id, token)
            c = b["commands"][index]
            if c["status"] in wanted or time.monotonic() > deadline:
                return dict(c)
            time.sleep(0.1)

    def worker(self) -> psutil.Process:
        """The gunicorn worker: the process with the scheduler and the executors."""
        assert self.proc is not None
        workers = psutil.Process(self.proc.pid).children()
        assert workers, "no gunicorn worker"
        return workers[0]

    def rss(self) -> int:
        return int(self.worker().memory_info().rss)

    def instance_id(self) -> str:
        w = self.worker()
        return f"server-{w.pid}-{int(w.create_time())}"


def hportal(
    tmp_path: Path,
    *,
    isolation: str = "auto",
    env: dict[str, str] | None = None,
    prefix: list[str] | None = None,
    data: Path | None = None,
) -> contextlib.AbstractContextManager[HPortal]:
    return running_portal(
        tmp_path,
        env=env,
        extra=["--isolation", isolation],
        prefix=prefix,
        data=data,
        kind=HPortal,
    )


@pytest.fixture
def docker_portal(tmp_path: Path, docker_client: Any, sandbox_image: str) -> Iterator[HPortal]:
    """Safe commands in the local pool (bubblewrap), the rest in Docker (the main engine);
    one container command may take at most 1.5 GiB of the disk (the default is 10 GiB)."""
    with hportal(tmp_path, isolation="auto", env={"BASHFLEET_DISK_CAP_MB": "1536"}) as p:
        instance = p.instance_id()
        yield p
        p.stop()
        left = containers_of(docker_client, instance)
        for c in left:
            c.remove(force=True)
        assert not left, f"containers left behind by {instance}: {[c.name for c in left]}"


@pytest.fixture
def local_portal(tmp_path: Path) -> Iterator[HPortal]:
    """Every class in the local pool (`--isolation local`)."""
    with hportal(tmp_path, isolation="local") as p:
        yield p


def containers_of(client: Any, instance_id: str) -> list[Any]:
    return list(
        client.containers.list(
            ignore_removed=True, all=True, filters={"label": f"bashfleet.instance={instance_id}"}
        )
    )


# --- pids cgroup ----------------------------------------------------------------------------

PIDS_ROOT = Path("/sys/fs/cgroup/pids")


@contextlib.contextmanager
def pids_cgroup(limit: int) -> Iterator[list[str]]:
    """A cgroup (v1 pids controller) capping a server and all it starts at ``limit`` tasks,
    as `TasksMax=` does for a systemd unit. Yields the argv prefix that starts a process in
    it. Everything left in it is killed and the group removed afterwards."""
    group = PIDS_ROOT / f"bashfleet-hardening-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    (group / "pids.max").write_text(str(limit))
    try:
        yield ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "cgroup-enter"]
    finally:
        for _ in range(50):
            pids = [int(x) for x in (group / "cgroup.procs").read_text().split()]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            group.rmdir()


def cgroup_tasks(prefix: list[str]) -> int:
    group = Path(prefix[2].split(" > ")[1].split("/cgroup.procs")[0])
    return int((group / "pids.current").read_text())


# --- probes ---------------------------------------------------------------------------------


class HealthProbe:
    """GETs /healthz back to back in a thread and keeps every latency (ms)."""

    def __init__(self, url: str, every_s: float = 0.05) -> None:
        self.url = url + "/healthz"
        self.every_s = every_s
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    r.read()
                    ok = r.status == 200
            except OSError:
                ok = False
            elapsed = (time.perf_counter() - t0) * 1000
            self.latencies.append(elapsed if ok else 5000.0)
            self.failures += 0 if ok else 1
            self._stop.wait(self.every_s)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)

    def summary(self) -> dict[str, float]:
        return {
            "healthz_samples": len(self.latencies),
            "healthz_p50_ms": round(percentile(self.latencies, 50), 1),
            "healthz_p99_ms": round(self.p99, 1),
            "healthz_max_ms": round(max(self.latencies, default=0.0), 1),
            "healthz_failures": self.failures,
        }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])


def sentinel(ticks: int) -> str:
    """A command printing a clock (seconds of uptime, 10 ms steps) every 100 ms without
    forking once it runs (a fork bomb in the same pool must not be able to stall it by
    holding every pid). Perl, not a bash loop: the loop's `read` and counter change shell
    session state, which the scheduler locks across batches (see the report), so a bash
    sentinel would make the bomb wait for it instead of running beside it. The image's
    perl has no Time::HiRes; /proc/uptime needs no module."""
    loop = (
        f"$| = 1; for (1 .. {ticks}) {{ open(my $u, q(<), q(/proc/uptime)) or die; "
        "print((split q( ), <$u>)[0], qq(\\n)); close $u; select(undef, undef, undef, 0.1) }"
    )
    return f"perl -e '{loop}'"


def sentinel_gaps_ms(text: str) -> list[float]:
    stamps = [float(x) for x in text.split() if x.replace(".", "", 1).isdigit()]
    return [(b - a) * 1000 for a, b in itertools.pairwise(stamps)]


def processes_with(tag: str) -> list[list[str]]:
    """Command lines on this host (containers included: same kernel) containing ``tag``."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if p.info["status"] != psutil.STATUS_ZOMBIE and any(tag in a for a in cmd):
            found.append(cmd)
    return found


def wait_gone(tag: str, timeout: float = 5.0) -> list[list[str]]:
    deadline = time.monotonic() + timeout
    while True:
        left = processes_with(tag)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def server_containers(client: Any) -> list[Any]:
    return [
        c
        for c in client.containers.list(
            ignore_removed=True, all=True, filters={"label": "bashfleet.instance"}
        )
        if c.labels.get("bashfleet.instance", "").startswith("server-")
    ]
