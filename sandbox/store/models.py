"""The tables, as SQLAlchemy 2.0 declarative classes.

The Alembic revisions under ``migrations/versions`` create exactly these; a test
compares the migrated schema with this metadata on every backend.

Times are timezone-aware UTC (``UTCDateTime``); ids of batches and commands are
sortable strings (see ``ids.py``); everything else has integer ids. Status-like
columns are VARCHAR + CHECK rather than native enums, so SQLite and PostgreSQL
hold the same schema and a new value is a one-line migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum as PyEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sandbox.approvals import ApprovalPolicy
from sandbox.model import CommandClass, FailurePolicy, Status
from sandbox.store.records import ExecutorKind, Role, Source, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 32  # room for a 26-character ULID and then some
FINGERPRINT_CHARS = 255
TAIL_CHARS = 4096
STATUS_CHARS = 24  # "awaiting_approval"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: bashfleet stores aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


def _enum(cls: type[PyEnum], name: str, length: int = 16) -> Enum:
    """A VARCHAR + CHECK column holding the enum's *values* ("succeeded", not "SUCCEEDED")."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        validate_strings=True,
        values_callable=lambda e: [m.value for m in e],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    email: Mapped[str | None] = mapped_column(String(254))  # for notifications (0009)
    email_events: Mapped[list[str] | None] = mapped_column(JSONType)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class EndedSession(Base):
    """Browser sessions ended by logout. The cookie is signed, not stored, so a copy of it
    would stay valid until it expires; this list refuses it (and its sockets) at once."""

    __tablename__ = "ended_sessions"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Team(Base):
    """A group of users that can own workspaces; its quotas bound what its workspaces use."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    max_commands: Mapped[int | None] = mapped_column(Integer)  # unfinished commands at once
    max_bytes: Mapped[int | None] = mapped_column(BigInteger)  # stored bytes (ws-files measures)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TeamMember(Base):
    __tablename__ = "team_members"

    team_id: Mapped[int] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Workspace(Base):
    __tablename__ = "workspaces"
    __table_args__ = (
        CheckConstraint("network IN ('none', 'egress')", name="network"),
        CheckConstraint("owner_user_id IS NULL OR owner_team_id IS NULL", name="one_owner"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(String(255))  # relative to the data folder
    image: Mapped[str | None] = mapped_column(String(255))  # None: the default image
    network: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    env: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # plain variables
    # class value -> {"cpus", "memory_bytes", "pids", "disk_bytes", "timeout_s"}
    limits: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # no owner at all: shared by everyone (what every workspace was before owners existed)
    owner_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    owner_team_id: Mapped[int | None] = mapped_column(
        ForeignKey("teams.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # which classes wait for a person's approval (sandbox/approvals.py)
    approve: Mapped[ApprovalPolicy] = mapped_column(
        _enum(ApprovalPolicy, "approve", 24),
        default=ApprovalPolicy.NONE,
        server_default=ApprovalPolicy.NONE.value,
    )
    two_person: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    node: Mapped[str | None] = mapped_column(String(64))  # scale-out: the node its files are on


class WorkspaceSecret(Base):
    """A secret variable of a workspace; ``value`` is a Fernet token (DATA/secret.key)."""

    __tablename__ = "workspace_secrets"

    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AllowedImage(Base):
    """Images an admin allowed for workspaces (besides the default and built ones)."""

    __tablename__ = "allowed_images"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    added_by: Mapped[str] = mapped_column(String(100))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class Duration(Base):
    """A learned run time: the moving average for one command fingerprint in one workspace."""

    __tablename__ = "durations"

    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    fingerprint: Mapped[str] = mapped_column(String(FINGERPRINT_CHARS), primary_key=True)
    estimate_s: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (
        UniqueConstraint("user_id", "name", name="uq_schedules_user_id_name"),
        CheckConstraint("(cron IS NULL) <> (interval_s IS NULL)", name="one_trigger"),
        CheckConstraint("interval_s IS NULL OR interval_s > 0", name="interval_positive"),
        Index("ix_schedules_due", "paused", "next_run_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    script: Mapped[str] = mapped_column(Text)  # "" when it runs a template
    template: Mapped[str | None] = mapped_column(String(100))  # a template's name (0009)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # the template's values
    cron: Mapped[str | None] = mapped_column(String(120))
    interval_s: Mapped[int | None] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    timeout_s: Mapped[float | None] = mapped_column(Double)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_run_at: Mapped[datetime | None]
    next_run_at: Mapped[datetime | None]


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (
        Index("ix_batches_status_created_at", "status", "created_at"),
        Index("ix_batches_user_id_created_at", "user_id", "created_at"),
        Index("ix_batches_workspace_id_created_at", "workspace_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    status: Mapped[Status] = mapped_column(_enum(Status, "status", STATUS_CHARS))
    source: Mapped[Source] = mapped_column(_enum(Source, "source"))
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedules.id", ondelete="SET NULL"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    timeout_s: Mapped[float | None] = mapped_column(Double)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    script: Mapped[str] = mapped_column(Text)
    command_count: Mapped[int] = mapped_column(Integer, default=0)
    on_failure: Mapped[FailurePolicy] = mapped_column(
        _enum(FailurePolicy, "on_failure"),
        default=FailurePolicy.SKIP_DEPENDENTS,
        server_default=FailurePolicy.SKIP_DEPENDENTS.value,
    )
    deadline_s: Mapped[float | None] = mapped_column(Double)
    rerun_of: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"))
    # globs of files copied out of the workspace when the batch ends (see Artifact)
    artifact_patterns: Mapped[list[str] | None] = mapped_column(JSONType)
    # a template's batch: the environment its parameters became (BF_PARAM_x -> value)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Command(Base):
    __tablename__ = "commands"
    __table_args__ = (UniqueConstraint("batch_id", "index", name="uq_commands_batch_id_index"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    command: Mapped[str] = mapped_column(Text)
    cls: Mapped[CommandClass] = mapped_column(_enum(CommandClass, "cls"))
    reasons: Mapped[list[str]] = mapped_column(JSONType, default=list)
    executor: Mapped[ExecutorKind] = mapped_column(_enum(ExecutorKind, "executor"))
    needs: Mapped[list[int]] = mapped_column(JSONType, default=list)
    reads: Mapped[list[str]] = mapped_column(JSONType, default=list)
    writes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    status: Mapped[Status] = mapped_column(_enum(Status, "status", STATUS_CHARS))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    signal: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column(Double)
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    stdout_tail: Mapped[str] = mapped_column(Text, default="")
    stderr_tail: Mapped[str] = mapped_column(Text, default="")
    stdout_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    stderr_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    host_pid: Mapped[int | None] = mapped_column(Integer)
    pid_start_time: Mapped[float | None] = mapped_column(Double)
    container_id: Mapped[str | None] = mapped_column(String(80))
    # required | approved | rejected | expired (None: it never needed an approval)
    approval: Mapped[str | None] = mapped_column(String(16))
    approval_by: Mapped[str | None] = mapped_column(String(64))
    approval_at: Mapped[datetime | None]
    node: Mapped[str | None] = mapped_column(String(64))  # scale-out: the node it was sent to


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("command_id", "number", name="uq_attempts_command_id_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    command_id: Mapped[str] = mapped_column(ForeignKey("commands.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[Status] = mapped_column(_enum(Status, "status", STATUS_CHARS))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    signal: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class AuditRow(Base):
    """Append-only: the repository never updates or deletes, and triggers refuse it."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_action_at", "action", "at"),
        Index("ix_audit_events_user_id_at", "user_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # No foreign key: the event outlives its user; ``actor`` keeps the name.
    user_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class Artifact(Base):
    """A file a batch named (``artifact_patterns``), copied to DATA/artifacts/<batch>/ when
    it ended; kept however the workspace changes later, deleted with the batch."""

    __tablename__ = "artifacts"

    batch_id: Mapped[str] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditPrune(Base):
    """Each pruning of the audit log: rows older than the newest ``before`` may be
    deleted (the database's trigger checks it); nothing else may ever be."""

    __tablename__ = "audit_prunes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    before: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100))


class Template(Base):
    """A script with ``{{name}}`` placeholders and typed parameters (sandbox/templates.py)."""

    __tablename__ = "templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    script: Mapped[str] = mapped_column(Text)
    params: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Webhook(Base):
    """A URL told about events (webhooks.py) of its user's batches, or of a workspace's."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # None: the user's own batches in every workspace; else every batch of that workspace
    workspace_id: Mapped[int | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    secret: Mapped[str] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One attempt to deliver one event to one webhook."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_webhook_id_at", "webhook_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    delivery: Mapped[str] = mapped_column(String(32))  # one id for every attempt of it
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class NodeRow(Base):
    """A worker node of a scale-out cluster (sandbox/cluster/), as last heard of."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # live | lost
    instance: Mapped[str | None] = mapped_column(String(100))
    slots: Mapped[int] = mapped_column(Integer, default=0)
    running: Mapped[int] = mapped_column(Integer, default=0)
    free_memory: Mapped[int] = mapped_column(BigInteger, default=0)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)


class EmailDelivery(Base):
    """One attempt to mail one event to one user (sandbox/notify_email.py)."""

    __tablename__ = "email_deliveries"
    __table_args__ = (Index("ix_email_deliveries_user_id_at", "user_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    delivery: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
