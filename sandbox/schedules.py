"""Recurring batches with APScheduler 3, rebuilt from bashfleet's own schedules table.

Each schedule is one APScheduler job whose id is ``schedule-<id>`` and whose
function is the module-level ``fire(schedule_id)``. The jobs live in memory
only: APScheduler's SQLAlchemy job store pickles each job, and unpickling what a
database holds is code execution for whoever can write that table. Everything a
job needs is in the schedules table (the trigger is its ``cron`` or
``interval_s``, the next run its ``next_run_at``), so at start every job is made
again from there, due at the schedule's stored ``next_run_at``: a restart neither
loses nor duplicates a schedule, and a tick missed while the server was down is
due at once. Jobs coalesce and have a misfire grace time, so that is one
catch-up, not a storm. (The ``apscheduler_jobs`` table of older versions is left
unused.)

A run claims its tick in the schedules table first: ``schedules.next_run_at``
is the tick that is due, and ``mark_run(expected_next_run_at=..., due_by=now)``
moves it on only if it is still that tick and has come. So one tick never runs
twice, even with two servers on one database, and a run whose tick somebody
else already moved on is skipped. Nothing else may move ``next_run_at`` while
a run can fire: ``start`` copies the job store's next run times into the table
with the scheduler paused and only then lets it process jobs (a copy made while
the catch-up already ran would move the tick under its claim and skip it).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from sandbox.errors import InputError
from sandbox.owners import may_run
from sandbox.store import NotFound, ScheduleRecord, Source

if TYPE_CHECKING:
    from sandbox.service import Service

log = logging.getLogger(__name__)

MISFIRE_GRACE_S = 3600  # a run missed by less than this still happens once on restart
MIN_INTERVAL_S = 60  # the default; BASHFLEET_SCHEDULE_MIN_INTERVAL_S changes it


def min_interval_s() -> int:
    """The shortest time between two runs of a schedule (the environment's, or 60 s)."""
    raw = os.environ.get("BASHFLEET_SCHEDULE_MIN_INTERVAL_S", "")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) <= 86400 else 60


_service: Service | None = None  # the running service; fire() looks it up here


def trigger_for(cron: str | None, interval_s: int | None, *, new: bool = True) -> BaseTrigger:
    """A trigger from five cron fields or a fixed interval; InputError says what is wrong.
    The minimum interval binds ``new`` triggers only: a stored schedule made under a smaller
    minimum keeps running (its runs still count against its owner's submission rate)."""
    if (cron is None) == (interval_s is None):
        raise InputError("give exactly one of `cron` (five fields) or `interval_s`")
    if cron is not None:
        if not isinstance(cron, str) or len(cron.split()) != 5:
            raise InputError("`cron` takes five fields: minute hour day-of-month month weekday")
        try:
            trigger = CronTrigger.from_crontab(cron, timezone=UTC)
        except ValueError as e:
            raise InputError(f"`cron` {cron!r} is not valid: {e}") from None
        if new:
            _often_enough(trigger, cron)
        return trigger
    least = min_interval_s() if new else 1
    if isinstance(interval_s, bool) or not isinstance(interval_s, int):
        raise InputError("`interval_s` is a whole number of seconds")
    if interval_s < least or interval_s > 366 * 86400:
        raise InputError(f"`interval_s` must be from {least} to {366 * 86400} seconds")
    return IntervalTrigger(seconds=interval_s, timezone=UTC)


def _often_enough(trigger: CronTrigger, cron: str) -> None:
    """A cron line fires at most once a minute; refuse one that fires more often than the
    minimum interval (checked over its next few runs)."""
    least = min_interval_s()
    if least <= 60:
        return
    at = datetime.now(UTC)
    times: list[datetime] = []
    for _ in range(12):
        upcoming: datetime | None = trigger.get_next_fire_time(None, at)
        if upcoming is None:
            break
        times.append(upcoming)
        at = upcoming + timedelta(seconds=1)
    for a, b in itertools.pairwise(times):
        if (b - a).total_seconds() < least:
            raise InputError(f"`cron` {cron!r} runs more often than every {least} s")


def next_fire(cron: str | None, interval_s: int | None, after: datetime) -> datetime | None:
    trigger = trigger_for(cron, interval_s)
    fire: datetime | None = trigger.get_next_fire_time(None, after)
    return fire


def job_id(schedule_id: int) -> str:
    return f"schedule-{schedule_id}"


def fire(schedule_id: int) -> None:
    """The job function: submit the schedule's batch as its owner (ids only in the store)."""
    service = _service
    runner = service.schedules if service is not None else None
    if runner is None:
        log.warning("schedule %s fired with no service running", schedule_id)
        return
    runner.run(schedule_id)


class ScheduleRunner:
    """Owns the APScheduler instance for one service."""

    def __init__(self, service: Service) -> None:
        global _service
        self.service = service
        self.store = service.store
        self.scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": MISFIRE_GRACE_S,
            },
            timezone=UTC,
        )
        _service = service
        # may this user submit now? (the portal's submission rate limit; schedules count)
        self.admit: Callable[[int], bool] | None = None
        # note what happened to a run that did not submit (the portal writes an audit row)
        self.note: Callable[[ScheduleRecord, str, str], None] | None = None

    def start(self) -> None:
        # Paused: no job fires until every schedule's next_run_at matches its job. A due
        # (missed) tick is kept as it is, in the past, and the catch-up claims it.
        self.scheduler.start(paused=True)
        for schedule in self.store.schedules.list():
            self._add(schedule, due=schedule.next_run_at)
            self._sync_next_run(schedule.id)
        self.scheduler.resume()

    def stop(self) -> None:
        global _service
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if _service is self.service:
            _service = None

    def _add(self, s: ScheduleRecord, due: datetime | None = None) -> None:
        """(Re)make the schedule's job; ``due``: its next run, if known (else the trigger's)."""
        when: dict[str, Any] = {"next_run_time": due} if due is not None and not s.paused else {}
        self.scheduler.add_job(
            fire,
            trigger=trigger_for(s.cron, s.interval_s, new=False),
            args=[s.id],
            id=job_id(s.id),
            name=s.name,
            replace_existing=True,
            **when,
        )
        if s.paused:
            self.scheduler.pause_job(job_id(s.id))

    def _sync_next_run(self, schedule_id: int) -> datetime | None:
        job = self.scheduler.get_job(job_id(schedule_id))
        next_run = job.next_run_time if job is not None else None
        self.store.schedules.update(schedule_id, next_run_at=next_run)
        return next_run

    # --- called by the service ------------------------------------------------------------

    def added(self, s: ScheduleRecord) -> ScheduleRecord:
        self._add(s)
        self._sync_next_run(s.id)
        return self.store.schedules.get(s.id)

    def changed(self, s: ScheduleRecord, trigger_changed: bool) -> ScheduleRecord:
        if trigger_changed or self.scheduler.get_job(job_id(s.id)) is None:
            self._add(s)
        elif s.paused:
            self.scheduler.pause_job(job_id(s.id))
        else:
            self.scheduler.resume_job(job_id(s.id))
        self._sync_next_run(s.id)
        return self.store.schedules.get(s.id)

    def removed(self, schedule_id: int) -> None:
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(job_id(schedule_id))

    def run(self, schedule_id: int) -> str | None:
        """Claim this tick and submit the batch; returns the batch id, or None if skipped."""
        try:
            s = self.store.schedules.get(schedule_id)
        except NotFound:
            self.removed(schedule_id)
            return None
        if s.paused:
            return None
        now = datetime.now(UTC)
        job = self.scheduler.get_job(job_id(schedule_id))
        upcoming = job.next_run_time if job is not None else None
        if not self.store.schedules.mark_run(
            schedule_id,
            ran_at=now,
            next_run_at=upcoming,
            expected_next_run_at=s.next_run_at,
            due_by=now,
        ):
            log.info("schedule %s: this tick was already run", schedule_id)
            return None
        try:
            owner = self.store.accounts.get_user(s.user_id)
            if owner.disabled:
                self._pause(s, f"its owner {owner.name} is disabled")
                return None
            if self.admit is not None and not self.admit(owner.id):
                self._noted(s, "schedule_rate_limited", "over its owner's submission rate")
                return None
            workspace = self.store.workspaces.get(s.workspace_id)
            if not may_run(self.store, owner, workspace):
                self._pause(s, f"its owner {owner.name} may no longer run in {workspace.name}")
                return None
            try:
                script, params = self.service.schedule_script(s)
            except InputError as e:  # its template is gone or no longer takes its values
                self._pause(s, f"its template {s.template}: {e}")
                return None
            batch = self.service.submit(
                owner,
                script=script,
                params=params,
                workspace=workspace.name,
                priority=max(1, min(10, s.priority or 5)),
                timeout_s=s.timeout_s,
                retries=s.retries,
                source=Source.SCHEDULE,
                schedule_id=s.id,
            )
        except Exception as e:  # a bad run must not stop the schedule
            log.error("schedule %s (%s) could not submit: %s", s.id, s.name, e)
            return None
        return batch.id

    def _pause(self, s: ScheduleRecord, why: str) -> None:
        self.store.schedules.update(s.id, paused=True, next_run_at=None)
        with contextlib.suppress(JobLookupError):
            self.scheduler.pause_job(job_id(s.id))
        self._noted(s, "schedule_paused", why)

    def _noted(self, s: ScheduleRecord, action: str, why: str) -> None:
        log.warning("schedule %s (%s): %s: %s", s.id, s.name, action, why)
        if self.note is not None:
            try:
                self.note(s, action, why)
            except Exception:
                log.exception("cannot note %s", action)


def describe(s: ScheduleRecord) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "user_id": s.user_id,
        "workspace_id": s.workspace_id,
        "script": s.script,
        "template": s.template,
        "params": dict(s.params or {}) if s.template is not None else None,
        "cron": s.cron,
        "interval_s": s.interval_s,
        "priority": s.priority,
        "timeout_s": s.timeout_s,
        "retries": s.retries,
        "paused": s.paused,
        "created_at": s.created_at.isoformat(),
        "updated_at": s.updated_at.isoformat(),
        "last_run_at": s.last_run_at.isoformat() if s.last_run_at else None,
        "next_run_at": s.next_run_at.isoformat() if s.next_run_at else None,
    }
