"""Plain values the store hands out: enums of its own, frozen records, pages.

Repositories return these, never ORM objects, so a record can cross threads and
outlive its session. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, TypeVar

from sandbox.model import CommandClass, FailurePolicy, Status

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Role(StrEnum):
    """What a user may do, in increasing order of power."""

    VIEWER = "viewer"  # read batches and output
    OPERATOR = "operator"  # also submit and cancel batches, manage own schedules
    ADMIN = "admin"  # also manage users, tokens and workspaces

    def allows(self, needed: Role) -> bool:
        order = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
        return order.index(self) >= order.index(needed)


class Source(StrEnum):
    """Where a batch came from."""

    WEB = "web"
    API = "api"
    SCHEDULE = "schedule"
    CLI = "cli"


class ExecutorKind(StrEnum):
    """Which executor runs (or ran) a command; NONE when it never ran (refused, skipped)."""

    LOCAL = "local"
    DOCKER = "docker"
    NONE = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class NewCommand:
    """One command of a batch being submitted."""

    index: int
    command: str
    cls: CommandClass
    reasons: tuple[str, ...] = ()
    executor: ExecutorKind = ExecutorKind.LOCAL
    needs: tuple[int, ...] = ()
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    status: Status = Status.PENDING
    id: str | None = None  # generated when None


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRecord:
    id: str
    batch_id: str
    index: int
    command: str
    cls: CommandClass
    reasons: tuple[str, ...]
    executor: ExecutorKind
    needs: tuple[int, ...]
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    status: Status
    exit_code: int | None
    signal: int | None
    error: str | None
    duration_s: float | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    stdout_tail: str
    stderr_tail: str
    stdout_bytes: int
    stderr_bytes: int
    truncated: bool
    attempts: int
    host_pid: int | None
    pid_start_time: float | None
    container_id: str | None
    node: str | None = None  # scale-out: the worker node it was sent to


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRecord:
    id: str
    status: Status
    source: Source
    schedule_id: int | None
    user_id: int | None
    user_name: str | None
    workspace_id: int
    workspace_name: str
    priority: int
    timeout_s: float | None
    retries: int
    script: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    command_count: int
    counts: Mapping[str, int]  # status value -> number of commands, computed on read
    commands: tuple[CommandRecord, ...] = ()  # filled by get(), empty in lists
    on_failure: FailurePolicy = FailurePolicy.SKIP_DEPENDENTS
    deadline_s: float | None = None
    rerun_of: str | None = None  # the batch this one re-runs


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    id: int
    command_id: str
    number: int
    status: Status
    exit_code: int | None
    signal: int | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class InterruptedCommand:
    """A command that was unfinished when the server stopped; what recovery needs."""

    id: str
    batch_id: str
    index: int
    previous_status: Status
    executor: ExecutorKind
    host_pid: int | None
    pid_start_time: float | None  # psutil create_time(): a pid alone may have been reused
    container_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRecord:
    id: int
    name: str
    role: Role
    created_at: datetime
    disabled: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRecord:
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewToken:
    """A token just created: ``secret`` is the only time the plaintext exists."""

    token: TokenRecord
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkspaceRecord:
    id: int
    name: str
    path: Path  # absolute, under DATA/workspaces
    allow_network: bool
    image: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleRecord:
    id: int
    name: str
    user_id: int
    workspace_id: int
    script: str
    cron: str | None
    interval_s: int | None
    priority: int
    timeout_s: float | None
    retries: int
    paused: bool
    created_at: datetime
    updated_at: datetime
    last_run_at: datetime | None
    next_run_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    id: int
    at: datetime
    user_id: int | None
    actor: str
    address: str | None
    action: str
    target: str | None
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list: ``total`` counts every match of the filters (ignoring the cursor)."""

    items: tuple[T, ...]
    total: int
    next_cursor: str | None = None  # pass back as ``cursor`` for the next page
