"""Engines, sessions and migrations.

    make_engine(url)         SQLite (WAL, busy timeout, foreign keys) or PostgreSQL (psycopg 3)
    default_url(data_dir)    sqlite:///DATA/bashfleet.db
    migrate(engine)          Alembic upgrade to head, programmatically, with the
                             revisions shipped inside this package
    session_factory(engine)  sessionmaker(expire_on_commit=False)

SQLite and threads: every connection gets WAL, ``busy_timeout`` and
``foreign_keys`` from a connect listener, and pysqlite's own transaction handling
is switched off so that SQLAlchemy emits ``BEGIN`` itself. Transactions that
write begin with ``BEGIN IMMEDIATE`` (see ``WRITE``): a deferred transaction that
reads and then writes can fail at once with "database is locked" when another
writer got in between, because SQLite cannot wait for a snapshot to change.
Readers still run concurrently with the one writer.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000

_MIGRATING = threading.Lock()

# Execution option naming a transaction that will write (SQLite: BEGIN IMMEDIATE).
WRITE = "bashfleet_write"

# A pool for a threaded server: SQLite has one writer at a time anyway, but
# readers and the busy wait need their own connections.
_POOL = {"pool_size": 10, "max_overflow": 20, "pool_timeout": 30, "pool_recycle": 3600}


def default_url(data_dir: str | os.PathLike[str]) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / 'bashfleet.db'}"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; extra keyword arguments go to ``create_engine``."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, kwargs)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":  # plain postgresql:// means psycopg 3 here
            parsed = parsed.set(drivername="postgresql+psycopg")
        options = {"pool_pre_ping": True, **_POOL, **kwargs}
        return create_engine(parsed, **options)
    return create_engine(parsed, **kwargs)


def _sqlite_engine(url: str, kwargs: dict[str, Any]) -> Engine:
    parsed = make_url(url)
    in_memory = parsed.database in (None, "", ":memory:")
    if in_memory:  # one shared connection: for single-threaded tests only
        options: dict[str, Any] = {
            "poolclass": StaticPool,
            "connect_args": {"check_same_thread": False},
            **kwargs,
        }
    else:
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
        options = {"connect_args": {"check_same_thread": False}, **_POOL, **kwargs}
    engine = create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic config pointing at the packaged revisions (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option(
            "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
        )
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database to ``revision``. Safe to call from several processes at once."""
    cfg = alembic_config()
    # Alembic keeps the running migration in module globals: one at a time per process,
    # and the database lock below serializes processes.
    with _MIGRATING, engine.connect().execution_options(**{WRITE: True}) as conn:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # A batch ALTER of SQLite copies a table and drops the old one; with foreign
            # keys on, that DROP deletes every row referencing it (ON DELETE CASCADE).
            # The pragma is a no-op inside a transaction: set it on the raw connection first.
            _sqlite_pragma(conn, "PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    # Serialize concurrent migrators (several server processes starting at once).
                    conn.execute(text("SELECT pg_advisory_xact_lock(7262616, 1)"))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        finally:
            if sqlite:
                _sqlite_pragma(conn, "PRAGMA foreign_keys=ON")


def _sqlite_pragma(conn: Connection, statement: str) -> None:
    raw = conn.connection.driver_connection
    if raw is not None:
        raw.execute(statement)


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
