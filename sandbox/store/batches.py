"""Batches, their commands and the commands' attempts."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypedDict, Unpack

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from sandbox.errors import InputError
from sandbox.model import CommandClass, FailurePolicy, Status
from sandbox.store.base import (
    NotFound,
    Repository,
    aware,
    clamp_limit,
    rowcount,
    to_record,
)
from sandbox.store.ids import check_id, new_id
from sandbox.store.models import TAIL_CHARS, Attempt, Batch, Command, User, Workspace
from sandbox.store.records import (
    AttemptRecord,
    BatchRecord,
    CommandRecord,
    ExecutorKind,
    InterruptedCommand,
    NewCommand,
    Page,
    Source,
    utcnow,
)

UNFINISHED = (Status.PENDING, Status.QUEUED, Status.RUNNING)


class CommandChanges(TypedDict, total=False):
    """Fields ``update_command`` may set; a key left out is left alone."""

    status: Status
    executor: ExecutorKind
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
    host_pid: int | None
    pid_start_time: float | None
    container_id: str | None
    approval: str | None
    approval_by: str | None
    approval_at: datetime | None


class BatchRepository(Repository):
    def create(
        self,
        *,
        script: str,
        commands: Sequence[NewCommand],
        workspace_id: int,
        user_id: int | None = None,
        source: Source = Source.API,
        schedule_id: int | None = None,
        priority: int = 0,
        timeout_s: float | None = None,
        retries: int = 0,
        status: Status = Status.PENDING,
        batch_id: str | None = None,
        on_failure: FailurePolicy = FailurePolicy.SKIP_DEPENDENTS,
        deadline_s: float | None = None,
        rerun_of: str | None = None,
        artifact_patterns: Sequence[str] = (),
        params: dict[str, str] | None = None,
    ) -> BatchRecord:
        """Store a batch and all its commands in one transaction: all or nothing."""
        batch_id = check_id(batch_id, "batch id") if batch_id else new_id()
        rows = _command_rows(batch_id, commands)
        now = utcnow()
        with self._write() as s:
            s.execute(
                insert(Batch).values(
                    id=batch_id,
                    status=Status(status),
                    source=Source(source),
                    schedule_id=schedule_id,
                    user_id=user_id,
                    workspace_id=workspace_id,
                    priority=priority,
                    timeout_s=timeout_s,
                    retries=retries,
                    script=script,
                    command_count=len(rows),
                    on_failure=FailurePolicy(on_failure),
                    deadline_s=deadline_s,
                    rerun_of=rerun_of,
                    artifact_patterns=list(artifact_patterns) or None,
                    params=params,
                    created_at=now,
                )
            )
            if rows:
                s.execute(insert(Command), rows)
        return self.get(batch_id)

    def get(self, batch_id: str) -> BatchRecord:
        with self._read() as s:
            row = s.execute(_BATCH_QUERY.where(Batch.id == batch_id)).one_or_none()
            if row is None:
                raise NotFound(f"no batch {batch_id!r}")
            commands = s.scalars(
                select(Command).where(Command.batch_id == batch_id).order_by(Command.index)
            ).all()
            records = tuple(_command_record(c) for c in commands)
        counts: dict[str, int] = {}
        for c in records:
            counts[c.status.value] = counts.get(c.status.value, 0) + 1
        return _batch_record(row, counts, records)

    def get_command(self, command_id: str) -> CommandRecord:
        with self._read() as s:
            command = s.get(Command, command_id)
            if command is None:
                raise NotFound(f"no command {command_id!r}")
            return _command_record(command)

    def count_unfinished(self, workspace_ids: Iterable[int]) -> int:
        """Commands not yet final (waiting, queued or running) in these workspaces."""
        waiting = [s for s in Status if not s.final]
        with self._read() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(Command)
                    .join(Batch, Batch.id == Command.batch_id)
                    .where(
                        Batch.workspace_id.in_(builtins.list(workspace_ids)),
                        Command.status.in_(waiting),
                    )
                )
                or 0
            )

    def list(
        self,
        *,
        status: Status | Iterable[Status] | None = None,
        source: Source | None = None,
        user_id: int | None = None,
        workspace_id: int | None = None,
        workspace_ids: Iterable[int] | None = None,
        schedule_id: int | None = None,
        text: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
        cursor: str | None = None,
    ) -> Page[BatchRecord]:
        """Newest first. Page with ``offset`` or with ``cursor`` (the previous ``next_cursor``)."""
        query = _BATCH_QUERY
        if status is not None:
            wanted = [status] if isinstance(status, Status) else builtins.list(status)
            query = query.where(Batch.status.in_([Status(s) for s in wanted]))
        if source is not None:
            query = query.where(Batch.source == Source(source))
        if user_id is not None:
            query = query.where(Batch.user_id == user_id)
        if workspace_id is not None:
            query = query.where(Batch.workspace_id == workspace_id)
        if workspace_ids is not None:  # only these (those a user may see)
            query = query.where(Batch.workspace_id.in_(builtins.list(workspace_ids)))
        if schedule_id is not None:
            query = query.where(Batch.schedule_id == schedule_id)
        if text:
            query = query.where(Batch.script.icontains(text, autoescape=True))
        if aware(created_after, "created_after") is not None:
            query = query.where(Batch.created_at >= created_after)
        if aware(created_before, "created_before") is not None:
            query = query.where(Batch.created_at < created_before)
        limit = clamp_limit(limit)
        with self._read() as s:
            total = s.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
            page = query.order_by(Batch.id.desc()).limit(limit + 1)
            if cursor:
                page = page.where(Batch.id < check_id(cursor, "cursor"))
            else:
                page = page.offset(max(0, offset))
            rows = s.execute(page).all()
            more, rows = len(rows) > limit, rows[:limit]
            counts = _counts(s, [r[0].id for r in rows])
        items = tuple(_batch_record(r, counts.get(r[0].id, {}), ()) for r in rows)
        return Page(items, int(total or 0), items[-1].id if more and items else None)

    def update_command(
        self,
        command_id: str,
        *,
        only_from: Iterable[Status] | None = None,
        **changes: Unpack[CommandChanges],
    ) -> bool:
        """One UPDATE by primary key; False when no row matched (or its status was not in
        ``only_from``, which lets a caller never overwrite a final status)."""
        values: dict[str, Any] = dict(changes)
        if "status" in values:
            values["status"] = Status(values["status"])
        for stream in ("stdout_tail", "stderr_tail"):
            if stream in values:
                values[stream] = values[stream][-TAIL_CHARS:]
        if not values:
            return False
        stmt = update(Command).where(Command.id == command_id).values(**values)
        if only_from is not None:
            stmt = stmt.where(Command.status.in_([Status(s) for s in only_from]))
        with self._write() as s:
            return rowcount(s.execute(stmt.execution_options(synchronize_session=False))) > 0

    def update_batch(
        self,
        batch_id: str,
        *,
        status: Status | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        only_from: Iterable[Status] | None = None,
    ) -> bool:
        """Set the given fields (None leaves a field alone); False when nothing matched."""
        values: dict[str, Any] = {}
        if status is not None:
            values["status"] = Status(status)
        if started_at is not None:
            values["started_at"] = started_at
        if finished_at is not None:
            values["finished_at"] = finished_at
        if not values:
            return False
        stmt = update(Batch).where(Batch.id == batch_id).values(**values)
        if only_from is not None:
            stmt = stmt.where(Batch.status.in_([Status(s) for s in only_from]))
        with self._write() as s:
            return rowcount(s.execute(stmt.execution_options(synchronize_session=False))) > 0

    def set_commands_status(
        self,
        batch_id: str,
        *,
        only_from: Iterable[Status],
        status: Status,
        finished_at: datetime | None = None,
    ) -> builtins.list[str]:
        """Move every command of the batch whose status is in ``only_from`` to ``status``
        (cancel the waiting ones, skip the rest...). Returns the ids that changed."""
        wanted = [Status(s) for s in only_from]
        where = (Command.batch_id == batch_id, Command.status.in_(wanted))
        values: dict[str, Any] = {"status": Status(status)}
        if finished_at is not None:
            values["finished_at"] = finished_at
        with self._write() as s:
            ids = builtins.list(s.scalars(select(Command.id).where(*where).with_for_update()).all())
            if ids:
                s.execute(
                    update(Command)
                    .where(Command.id.in_(ids))
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
        return ids

    def held(self) -> builtins.list[str]:
        """Unfinished batches with a command that awaits approval, oldest first: a restart
        resumes them (``interrupt_unfinished`` leaves their waiting commands alone)."""
        with self._read() as s:
            return builtins.list(
                s.scalars(
                    select(Batch.id)
                    .where(Batch.status.in_(UNFINISHED), Batch.id.in_(_HELD))
                    .order_by(Batch.id)
                ).all()
            )

    def awaiting_approval(
        self, limit: int = 200
    ) -> builtins.list[tuple[CommandRecord, BatchRecord]]:
        """Commands that await approval, oldest first, each with its batch (no commands)."""
        with self._read() as s:
            commands = s.scalars(
                select(Command)
                .where(Command.status == Status.AWAITING_APPROVAL)
                .order_by(Command.batch_id, Command.index)
                .limit(clamp_limit(limit))
            ).all()
            records = [_command_record(c) for c in commands]
            ids = sorted({c.batch_id for c in records})
            rows = s.execute(_BATCH_QUERY.where(Batch.id.in_(ids))).all() if ids else []
            batches = {r[0].id: _batch_record(r, {}, ()) for r in rows}
        return [(c, batches[c.batch_id]) for c in records if c.batch_id in batches]

    def interrupt_unfinished(
        self, now: datetime | None = None
    ) -> builtins.list[InterruptedCommand]:
        """After a crash or restart: every pending/queued/running command of an unfinished
        batch becomes ``interrupted``, and so does its batch. Returns those commands with
        what recovery needs to find leftover processes and containers.

        A batch with a command that awaits approval is held instead: only its running
        commands become interrupted (they may have done part of their work); what never
        started keeps its status and the batch is resumed (``held``)."""
        now = now or utcnow()
        unfinished_batches = select(Batch.id).where(Batch.status.in_(UNFINISHED))
        free = (Command.batch_id.in_(unfinished_batches), Command.batch_id.not_in(_HELD))
        where = (
            (*free, Command.status.in_(UNFINISHED)),
            (*free[:1], Command.batch_id.in_(_HELD), Command.status == Status.RUNNING),
        )
        with self._write() as s:
            found = []
            for w in where:
                commands = s.scalars(
                    select(Command).where(*w).order_by(Command.id).with_for_update()
                ).all()
                found += [_interrupted(c) for c in commands]
            for w in where:
                s.execute(
                    update(Command)
                    .where(*w)
                    .values(
                        status=Status.INTERRUPTED,
                        finished_at=now,
                        error="the server stopped (crashed or was killed) before this ended; "
                        "found at the next start",
                    )
                    .execution_options(synchronize_session=False)
                )
            s.execute(
                update(Batch)
                .where(Batch.status.in_(UNFINISHED), Batch.id.not_in(_HELD))
                .values(status=Status.INTERRUPTED, finished_at=now)
                .execution_options(synchronize_session=False)
            )
        return found

    def add_attempt(
        self,
        command_id: str,
        *,
        number: int,
        status: Status,
        exit_code: int | None = None,
        signal: int | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        error: str | None = None,
    ) -> AttemptRecord:
        """Record one try of a command (retries); the command's ``attempts`` follows."""
        with self._write() as s:
            attempt = Attempt(
                command_id=command_id,
                number=number,
                status=Status(status),
                exit_code=exit_code,
                signal=signal,
                started_at=started_at,
                finished_at=finished_at,
                error=error,
            )
            s.add(attempt)
            s.flush()
            s.execute(
                update(Command)
                .where(Command.id == command_id, Command.attempts < number)
                .values(attempts=number)
                .execution_options(synchronize_session=False)
            )
            return _attempt_record(attempt)

    def attempts(self, command_id: str) -> builtins.list[AttemptRecord]:
        with self._read() as s:
            rows = s.scalars(
                select(Attempt).where(Attempt.command_id == command_id).order_by(Attempt.number)
            ).all()
            return [_attempt_record(a) for a in rows]

    def delete(self, batch_id: str) -> bool:
        """Remove a batch with its commands and attempts (retention). Output files are
        the OutputStore's to remove."""
        with self._write() as s:
            return rowcount(s.execute(delete(Batch).where(Batch.id == batch_id))) > 0


_HELD = select(Command.batch_id).where(Command.status == Status.AWAITING_APPROVAL)


def _command_rows(batch_id: str, commands: Sequence[NewCommand]) -> list[dict[str, Any]]:
    indices = {c.index for c in commands}
    if len(indices) != len(commands):
        raise InputError("two commands share an index")
    rows = []
    for c in commands:
        bad = [n for n in c.needs if n not in indices or n == c.index]
        if bad:
            raise InputError(f"command {c.index} needs unknown or itself: {bad}")
        rows.append(
            {
                "id": check_id(c.id, "command id") if c.id else new_id(),
                "batch_id": batch_id,
                "index": c.index,
                "command": c.command,
                "cls": CommandClass(c.cls),
                "reasons": list(c.reasons),
                "executor": ExecutorKind(c.executor),
                "needs": sorted(set(c.needs)),
                "reads": list(c.reads),
                "writes": list(c.writes),
                "status": Status(c.status),
                "stdout_tail": "",
                "stderr_tail": "",
                "stdout_bytes": 0,
                "stderr_bytes": 0,
                "truncated": False,
                "attempts": 0,
                "approval": c.approval,
            }
        )
    return rows


_BATCH_QUERY = (
    select(Batch, Workspace.name, User.name)
    .join(Workspace, Batch.workspace_id == Workspace.id)
    .outerjoin(User, Batch.user_id == User.id)
)


def _counts(s: Session, batch_ids: list[str]) -> dict[str, dict[str, int]]:
    if not batch_ids:
        return {}
    rows = s.execute(
        select(Command.batch_id, Command.status, func.count())
        .where(Command.batch_id.in_(batch_ids))
        .group_by(Command.batch_id, Command.status)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for batch_id, status, n in rows:
        counts.setdefault(batch_id, {})[Status(status).value] = int(n)
    return counts


def _batch_record(
    row: Any, counts: dict[str, int], commands: tuple[CommandRecord, ...]
) -> BatchRecord:
    batch, workspace_name, user_name = row
    return to_record(
        BatchRecord,
        batch,
        workspace_name=workspace_name,
        user_name=user_name,
        counts=counts,
        commands=commands,
        artifact_patterns=tuple(batch.artifact_patterns or ()),
    )


def _command_record(c: Command) -> CommandRecord:
    return to_record(CommandRecord, c)


def _interrupted(c: Command) -> InterruptedCommand:
    return to_record(InterruptedCommand, c, previous_status=c.status)


def _attempt_record(a: Attempt) -> AttemptRecord:
    return to_record(AttemptRecord, a)
