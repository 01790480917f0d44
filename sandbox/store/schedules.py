"""Schedules: a script that becomes a batch every ``interval_s`` or on a cron line."""

from __future__ import annotations

import builtins
import re
from datetime import datetime
from typing import Any, TypedDict, Unpack

from sqlalchemy import delete, select, update

from sandbox.errors import InputError
from sandbox.store.base import NotFound, Repository, aware, rowcount, to_record
from sandbox.store.models import Schedule
from sandbox.store.records import ScheduleRecord, utcnow

# Five fields of digits, names (mon, jan), *, /, ",", "-", "?" and "L" / "W" / "#" forms.
# The scheduler (APScheduler's CronTrigger) does the full validation; this refuses
# the obviously wrong early, with a clear message.
_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,?#-]+")


def check_trigger(cron: str | None, interval_s: int | None) -> tuple[str | None, int | None]:
    if (cron is None) == (interval_s is None):
        raise InputError("a schedule needs exactly one of cron or interval_s")
    if interval_s is not None and (not isinstance(interval_s, int) or interval_s <= 0):
        raise InputError("interval_s must be a positive number of seconds")
    if cron is not None:
        fields = cron.split()
        if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(f) for f in fields):
            raise InputError(f"invalid cron {cron!r}: five fields (minute hour day month weekday)")
        cron = " ".join(fields)
    return cron, interval_s


def check_schedule_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise InputError("a schedule needs a name of 1 to 100 characters")
    return name


class ScheduleChanges(TypedDict, total=False):
    """Fields ``update`` may set; a key left out is left alone."""

    name: str
    script: str
    template: str | None
    params: dict[str, Any] | None
    workspace_id: int
    cron: str | None
    interval_s: int | None
    priority: int
    timeout_s: float | None
    retries: int
    paused: bool
    next_run_at: datetime | None


class ScheduleRepository(Repository):
    def create(
        self,
        *,
        name: str,
        user_id: int,
        workspace_id: int,
        script: str,
        template: str | None = None,
        params: dict[str, Any] | None = None,
        cron: str | None = None,
        interval_s: int | None = None,
        priority: int = 0,
        timeout_s: float | None = None,
        retries: int = 0,
        paused: bool = False,
        next_run_at: datetime | None = None,
    ) -> ScheduleRecord:
        """Names are unique per user (Conflict otherwise)."""
        cron, interval_s = check_trigger(cron, interval_s)
        now = utcnow()
        with self._write() as s:
            row = Schedule(
                name=check_schedule_name(name),
                user_id=user_id,
                workspace_id=workspace_id,
                script=script,
                template=template,
                params=params,
                cron=cron,
                interval_s=interval_s,
                priority=priority,
                timeout_s=timeout_s,
                retries=retries,
                paused=paused,
                created_at=now,
                updated_at=now,
                next_run_at=aware(next_run_at, "next_run_at"),
            )
            s.add(row)
            s.flush()
            return _record(row)

    def get(self, schedule_id: int) -> ScheduleRecord:
        with self._read() as s:
            row = s.get(Schedule, schedule_id)
            if row is None:
                raise NotFound(f"no schedule {schedule_id}")
            return _record(row)

    def find(self, user_id: int, name: str) -> ScheduleRecord | None:
        with self._read() as s:
            row = s.scalar(
                select(Schedule).where(Schedule.user_id == user_id, Schedule.name == name)
            )
            return _record(row) if row else None

    def list(
        self, *, user_id: int | None = None, workspace_id: int | None = None
    ) -> builtins.list[ScheduleRecord]:
        query = select(Schedule).order_by(Schedule.id)
        if user_id is not None:
            query = query.where(Schedule.user_id == user_id)
        if workspace_id is not None:
            query = query.where(Schedule.workspace_id == workspace_id)
        with self._read() as s:
            return [_record(r) for r in s.scalars(query)]

    def update(self, schedule_id: int, **changes: Unpack[ScheduleChanges]) -> ScheduleRecord:
        """Setting ``cron`` clears ``interval_s`` and the other way round."""
        values: dict[str, Any] = dict(changes)
        if "name" in values:
            check_schedule_name(values["name"])
        if values.get("cron") is not None and "interval_s" not in values:
            values["interval_s"] = None
        if values.get("interval_s") is not None and "cron" not in values:
            values["cron"] = None
        with self._write() as s:
            row = s.get(Schedule, schedule_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no schedule {schedule_id}")
            cron, interval_s = check_trigger(
                values.get("cron", row.cron), values.get("interval_s", row.interval_s)
            )
            values.update(cron=cron, interval_s=interval_s, updated_at=utcnow())
            for key, value in values.items():
                setattr(row, key, value)
            s.flush()
            return _record(row)

    def delete(self, schedule_id: int) -> bool:
        """Batches it made stay, with ``schedule_id`` set to NULL."""
        with self._write() as s:
            return rowcount(s.execute(delete(Schedule).where(Schedule.id == schedule_id))) > 0

    def due(self, now: datetime | None = None) -> builtins.list[ScheduleRecord]:
        """Unpaused schedules whose ``next_run_at`` has come, oldest first."""
        now = aware(now, "now") or utcnow()
        with self._read() as s:
            rows = s.scalars(
                select(Schedule)
                .where(Schedule.paused.is_(False), Schedule.next_run_at <= now)
                .order_by(Schedule.next_run_at, Schedule.id)
            )
            return [_record(r) for r in rows]

    def mark_run(
        self,
        schedule_id: int,
        *,
        ran_at: datetime,
        next_run_at: datetime | None,
        expected_next_run_at: datetime | None = None,
        due_by: datetime | None = None,
    ) -> bool:
        """Note a run and the next one. With ``expected_next_run_at`` it is a claim: it
        succeeds only if nobody else moved ``next_run_at`` first (several processes).
        With ``due_by`` too, the claimed tick must have come by then: a run that read the
        already moved-on ``next_run_at`` (the next, future tick) cannot claim it."""
        stmt = update(Schedule).where(Schedule.id == schedule_id)
        if expected_next_run_at is not None:
            stmt = stmt.where(Schedule.next_run_at == expected_next_run_at)
            if due_by is not None and expected_next_run_at > due_by:
                return False  # that tick has not come: somebody ran the one before it
        stmt = stmt.values(last_run_at=aware(ran_at, "ran_at"), next_run_at=next_run_at)
        with self._write() as s:
            return rowcount(s.execute(stmt)) > 0


def _record(r: Schedule) -> ScheduleRecord:
    return to_record(ScheduleRecord, r)
