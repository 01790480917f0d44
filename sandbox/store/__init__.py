"""Persistence: the database (SQLAlchemy 2.0, SQLite or PostgreSQL) and output files.

    db.py          make_engine, default_url, migrate (Alembic), session_factory
    models.py      the tables
    records.py     frozen values the repositories return
    repository.py  BatchRepository, AccountRepository, WorkspaceRepository,
                   ScheduleRepository, AuditLog
    teams.py       TeamRepository (teams, members, quotas), ImageRepository (allowed)
    output.py      OutputStore: DATA/output/<batch>/<command>.<stream>

Nothing here opens a connection at import time. Typical wiring::

    engine = make_engine(url or default_url(data_dir))
    migrate(engine)
    store = Store.open(engine, data_dir)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from sandbox.store.artifacts import ArtifactRepository
from sandbox.store.db import default_url, make_engine, migrate, session_factory
from sandbox.store.durations import DurationRepository
from sandbox.store.notify import NotifyRepository
from sandbox.store.output import OutputStore
from sandbox.store.records import (
    AllowedImageRecord,
    ArtifactRecord,
    AttemptRecord,
    AuditEvent,
    BatchRecord,
    CommandRecord,
    ExecutorKind,
    InterruptedCommand,
    NewCommand,
    NewToken,
    Page,
    Role,
    ScheduleRecord,
    Source,
    TeamRecord,
    TokenRecord,
    UserRecord,
    WorkspaceRecord,
)
from sandbox.store.repository import (
    AccountRepository,
    AuditLog,
    BatchRepository,
    Conflict,
    NotFound,
    ScheduleRepository,
    StoreError,
    WorkspaceRepository,
)
from sandbox.store.teams import ImageRepository, TeamRepository
from sandbox.store.templates import TemplateRepository
from sandbox.store.webhooks import WebhookRepository


@dataclass(frozen=True, slots=True)
class Store:
    """Every repository over one engine, plus the output files of one data folder."""

    engine: Engine
    batches: BatchRepository
    accounts: AccountRepository
    workspaces: WorkspaceRepository
    schedules: ScheduleRepository
    audit: AuditLog
    output: OutputStore
    durations: DurationRepository
    teams: TeamRepository
    images: ImageRepository
    artifacts: ArtifactRepository
    webhooks: WebhookRepository
    templates: TemplateRepository
    notify: NotifyRepository

    @classmethod
    def open(cls, engine: Engine, data_dir: str | os.PathLike[str]) -> Store:
        sessions = session_factory(engine)
        return cls(
            engine=engine,
            batches=BatchRepository(sessions),
            accounts=AccountRepository(sessions),
            workspaces=WorkspaceRepository(sessions, data_dir),
            schedules=ScheduleRepository(sessions),
            audit=AuditLog(sessions),
            output=OutputStore(Path(data_dir)),
            durations=DurationRepository(sessions),
            teams=TeamRepository(sessions),
            images=ImageRepository(sessions),
            artifacts=ArtifactRepository(sessions),
            webhooks=WebhookRepository(sessions),
            templates=TemplateRepository(sessions),
            notify=NotifyRepository(sessions),
        )

    def close(self) -> None:
        self.output.close()
        self.engine.dispose()


__all__ = [
    "AccountRepository",
    "AllowedImageRecord",
    "ArtifactRecord",
    "ArtifactRepository",
    "AttemptRecord",
    "AuditEvent",
    "AuditLog",
    "BatchRecord",
    "BatchRepository",
    "CommandRecord",
    "Conflict",
    "DurationRepository",
    "ExecutorKind",
    "ImageRepository",
    "InterruptedCommand",
    "NewCommand",
    "NewToken",
    "NotFound",
    "OutputStore",
    "Page",
    "Role",
    "ScheduleRecord",
    "ScheduleRepository",
    "Source",
    "Store",
    "StoreError",
    "TeamRecord",
    "TeamRepository",
    "TokenRecord",
    "UserRecord",
    "WorkspaceRecord",
    "WorkspaceRepository",
    "default_url",
    "make_engine",
    "migrate",
    "session_factory",
]
