"""How an attempt's end moves a command on: an infrastructure error waits or fails, a failure
is retried, a misjudged safe command runs again as conditional. A mixin of ``Scheduler``."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from sandbox.batch_spec import NOT_IDEMPOTENT, RETRYABLE
from sandbox.errors import ExecutorError
from sandbox.events import CommandMisjudged, EventBus
from sandbox.executors.base import BatchAware, Executor
from sandbox.model import CommandClass, Outcome, Status
from sandbox.priority import DurationModel, score
from sandbox.scheduler_state import _Cmd, _scope, _where

if TYPE_CHECKING:
    from sandbox.scheduler import Router

log = logging.getLogger("sandbox.scheduler")  # the scheduler's log, as before the split


class OutcomesMixin:
    # set by Scheduler.__init__; the methods below are the Scheduler's own
    executors: dict[str, Executor]
    route: Router
    bus: EventBus
    durations: DurationModel
    infra_deadline_s: float
    clock: Callable[[], float]
    _closed: bool

    if TYPE_CHECKING:

        def _emit(self, cmd: _Cmd, status: Status, **fields: object) -> None: ...
        def _settle(self, cmd: _Cmd) -> None: ...
        def _delay(self, cmd: _Cmd, at: float) -> None: ...
        def _enqueue(self, cmd: _Cmd, *, aging: bool = True) -> None: ...

    def _infra_failure(self, cmd: _Cmd, error: ExecutorError) -> None:
        now = self.clock()
        if cmd.infra_since is None:
            cmd.infra_since = now
        if cmd.cancel_requested:
            self._emit(cmd, Status.CANCELLED, reason=cmd.reason or "cancelled")
            self._settle(cmd)
        elif error.started and cmd.spec.cls in NOT_IDEMPOTENT:
            # it may have done part of its work: running it again could do it twice
            why = (
                f"{error} while it ran; a {cmd.spec.cls.value} command is not run again "
                "(it may have done part of its work)"
            )
            cmd.outcome = Outcome(status=Status.INTERRUPTED, error=why)
            self._emit(cmd, Status.INTERRUPTED, reason=why)
            self._settle(cmd)
        elif error.retryable and now - cmd.infra_since < self.infra_deadline_s:
            name, _why = self.route(cmd.spec.cls)  # another pool may take it now
            if name is not None and name in self.executors:
                cmd.executor = name
            cmd.reason = f"waiting for {cmd.executor}: {error}"
            self._delay(cmd, now + min(5.0, 0.5 + (now - cmd.infra_since) / 4))
            self._emit(cmd, Status.QUEUED, reason=cmd.reason)
        else:
            waited = f" (gave up after {now - cmd.infra_since:.0f} s)" if error.retryable else ""
            cmd.outcome = Outcome(status=Status.FAILED, error=f"{error}{waited}")
            self._emit(cmd, Status.FAILED, reason=f"{error}{waited}")
            self._settle(cmd)

    def _finished(self, cmd: _Cmd, outcome: Outcome) -> None:
        cmd.infra_since = None
        status = outcome.status
        if cmd.cancel_requested and not status.ok:
            status = Status.INTERRUPTED if self._closed else Status.CANCELLED
            if cmd.batch.expired and not self._closed:
                status = Status.TIMED_OUT
                outcome = replace(outcome, error=f"stopped: {cmd.batch.expired}")
        if status is Status.SUCCEEDED:
            self.durations.observe(cmd.fingerprint, outcome.duration_s, _scope(cmd))
        if (
            outcome.wrote_read_only
            and cmd.spec.cls is CommandClass.SAFE
            and not (cmd.cancel_requested or cmd.batch.cancelled or self._closed)
        ):
            self._misjudged(cmd)
            return
        retries = 0 if cmd.spec.cls in NOT_IDEMPOTENT else cmd.batch.spec.retries
        if status in RETRYABLE and cmd.attempt <= retries and not cmd.batch.cancelled:
            delay = min(30.0, 0.5 * 2 ** (cmd.attempt - 1)) * random.uniform(0.5, 1.5)
            why = f"exit {outcome.exit_code}" if status is Status.FAILED else "timed out"
            self._emit_finished(cmd, replace(outcome, status=status))
            cmd.attempt += 1
            cmd.reason = f"retry {cmd.attempt - 1} of {retries} in {delay:.1f} s ({why})"
            self._delay(cmd, self.clock() + delay)
            self._emit(cmd, Status.QUEUED, reason=cmd.reason)
            return
        cmd.outcome = outcome if outcome.status is status else replace(outcome, status=status)
        self._emit_finished(cmd, cmd.outcome)
        self._settle(cmd)

    def _misjudged(self, cmd: _Cmd) -> None:
        """A command judged safe failed writing to its read-only sandbox: the judgement
        was wrong, not the command. Its output is discarded and it runs again as a
        conditional command (in a container, writable) holding a write lock on the whole
        workspace, before every later command of its batch that has not started yet."""
        name, why = self.route(CommandClass.CONDITIONAL)
        where = f"again in {name}" if name else "nowhere"
        reason = (
            "misjudged: judged safe, but it tried to write (read-only file system); "
            f"its output is discarded and it runs {where}, writable"
        )
        self.bus.publish(
            CommandMisjudged(
                batch_id=cmd.batch.id, command_id=cmd.id, index=cmd.spec.index, reason=reason
            )
        )
        cmd.offsets = {"stdout": 0, "stderr": 0}
        if name is None or name not in self.executors:
            cmd.outcome = Outcome(status=Status.REFUSED, error=f"{reason}: {why}")
            self._emit(cmd, Status.REFUSED, reason=f"{reason}: {why}")
            self._settle(cmd)
            return
        writes = tuple(sorted({*cmd.spec.writes, "."}))
        cmd.spec = replace(cmd.spec, cls=CommandClass.CONDITIONAL, writes=writes)
        cmd.misjudged = True
        cmd.executor = name
        if name not in cmd.batch.executors:
            cmd.batch.executors.add(name)
            ex = self.executors[name]
            if isinstance(ex, BatchAware):
                try:
                    ws = str(cmd.batch.spec.workspace)
                    conditional = {CommandClass.CONDITIONAL.value}
                    ex.open_batch(cmd.batch.id, ws, conditional, **_where(cmd.batch))
                except ExecutorError as e:
                    log.warning("could not prepare %s for batch %s: %s", name, cmd.batch.id, e)
        for later in cmd.batch.commands:
            if later.spec.index <= cmd.spec.index or later in cmd.dependents:
                continue
            if later.status in (Status.PENDING, Status.QUEUED, Status.AWAITING_APPROVAL):
                cmd.dependents.append(later)
                later.waiting_on += 1
                if later.status is Status.QUEUED:  # its heap entry goes stale
                    self._emit(later, Status.PENDING, reason=f"waits for #{cmd.spec.index + 1}")
        estimate = self.durations.estimate(cmd.fingerprint, cmd.spec.cls, _scope(cmd))
        cmd.base = score(cmd.spec.cls, estimate, cmd.batch.spec.priority)
        cmd.reason = reason
        self._enqueue(cmd)
        self._emit(cmd, Status.QUEUED, reason=reason)

    def _emit_finished(self, cmd: _Cmd, outcome: Outcome) -> None:
        reason = outcome.error or cmd.reason or ""
        self._emit(
            cmd,
            outcome.status,
            reason=reason,
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            duration_s=outcome.duration_s,
            truncated=outcome.truncated,
        )
