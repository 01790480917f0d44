"""A throwaway PostgreSQL server for tests, started from the local binaries.

Fixtures (import them into a test module, or list this module in ``pytest_plugins``):

    pg_server   session-scoped: one cluster in a temp dir (initdb; pg_ctl start on
                a unix socket in that dir and a free 127.0.0.1 port), stopped and
                removed at the end of the session
    pg_url      a fresh, empty database on that server for one test, dropped after:
                postgresql+psycopg://postgres@/NAME?host=/tmp/bfpg-xxx&port=NNNN

Needs the PostgreSQL server binaries (Debian: ``apt-get install -y postgresql``;
found on PATH, in /usr/lib/postgresql/*/bin, or in $BASHFLEET_PG_BINDIR). Without
them the tests fail with a clear message; scripts/test installs them. PostgreSQL
refuses to run as root, so as root the server runs as the ``postgres`` system user
(``runuser``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

DATABASE = "bashfleet"
_counter = itertools.count(1)


def _bindir() -> Path | None:
    """Where initdb, pg_ctl and postgres live. $BASHFLEET_PG_BINDIR, when set, is the
    only place looked at."""
    explicit = os.environ.get("BASHFLEET_PG_BINDIR")
    if explicit:
        candidates = [Path(explicit)]
    else:
        on_path = shutil.which("pg_ctl")
        candidates = [Path(on_path).resolve().parent] if on_path else []
        versions = Path("/usr/lib/postgresql").glob("*/bin")
        candidates += sorted(versions, key=lambda p: _version(p.parent.name), reverse=True)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _version(name: str) -> int:
    return int(name) if name.isdigit() else 0


def _missing(reason: str) -> NoReturn:
    # scripts/test installs PostgreSQL; a missing one is a failure, never a skip
    pytest.fail(
        f"PostgreSQL tests cannot run: {reason}. Install it: apt-get install -y postgresql "
        "(scripts/test does)",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PgServer:
    bindir: Path
    socket_dir: Path
    port: int
    user: str = "postgres"

    def url(self, database: str = DATABASE) -> str:
        return (
            f"postgresql+psycopg://{self.user}@/{database}?host={self.socket_dir}&port={self.port}"
        )

    def execute(self, sql: str) -> None:
        """Run one statement outside a transaction, on the maintenance database."""
        import psycopg

        with psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=self.user,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, name: str | None = None, template: str = "template0") -> str:
        name = name or f"test_{os.getpid()}_{next(_counter)}"
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(argv: list[str], *, as_postgres: bool) -> None:
    if as_postgres:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )


@contextlib.contextmanager
def running_server() -> Iterator[PgServer]:
    """Start a throwaway cluster; stop it and remove its files on exit."""
    bindir = _bindir()
    if bindir is None:
        _missing("no PostgreSQL server binaries (initdb, pg_ctl, postgres)")
    as_postgres = os.geteuid() == 0
    if as_postgres:
        if shutil.which("runuser") is None:
            _missing("running as root and `runuser` is missing")
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root and there is no `postgres` system user")
    # Short path under /tmp: a unix socket path must fit in 107 bytes.
    base = Path(tempfile.mkdtemp(prefix="bfpg-", dir="/tmp"))
    if as_postgres:
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data, log = base / "data", base / "server.log"
    port = _free_port()
    started = False
    try:
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            as_postgres=as_postgres,
        )
        options = (
            f"-k {base} -p {port} -h 127.0.0.1 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB"
        )
        _run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ],
            as_postgres=as_postgres,
        )
        started = True
        server = PgServer(bindir=bindir, socket_dir=base, port=port)
        server.create_database(DATABASE)
        yield server
    finally:
        if started:
            with contextlib.suppress(Exception):
                _run(
                    [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                    as_postgres=as_postgres,
                )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    name = pg_server.create_database()
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)
