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

from sandbox.approvals import ApprovalPolicy
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
    approval: str | None = None  # "required": it waits for a person's approval


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
    approval: str | None = None  # required | approved | rejected | expired
    approval_by: str | None = None
    approval_at: datetime | None = None
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
    artifact_patterns: tuple[str, ...] = ()  # globs of files kept when it ends
    params: Mapping[str, str] | None = None  # a template's batch: its BF_PARAM_* environment


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
    image: str | None  # None: the default image
    network: str  # "none" | "egress"
    env: Mapping[str, str]
    limits: Mapping[str, Mapping[str, float]]  # class value -> limit name -> value
    owner_user_id: int | None
    owner_team_id: int | None  # neither: shared by every user
    created_at: datetime
    approve: ApprovalPolicy = ApprovalPolicy.NONE  # which classes wait for an approval
    two_person: bool = False  # the submitter may not approve their own command

    @property
    def allow_network(self) -> bool:
        return self.network == "egress"

    @property
    def owned(self) -> bool:
        return self.owner_user_id is not None or self.owner_team_id is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamRecord:
    id: int
    name: str
    max_commands: int | None
    max_bytes: int | None
    members: tuple[str, ...]  # user names
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AllowedImageRecord:
    name: str
    added_by: str
    added_at: datetime


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
    template: str | None = None  # runs this template (by name) instead of ``script``
    params: dict[str, Any] | None = None  # the template's parameter values


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


@dataclass(frozen=True, slots=True, kw_only=True)
class ArtifactRecord:
    batch_id: str
    path: str  # relative to the workspace (and to DATA/artifacts/<batch_id>/)
    size: int
    sha256: str
    created_at: datetime
