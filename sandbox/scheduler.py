"""The one place that decides when a command runs.

Ready commands (all ``needs`` ended, see below) wait in a per-class priority heap; a
command starts when its class has a free slot, the total is under the job
limit, and it can take all of its path/resource locks at once. Everything
the scheduler does is published as an event on the bus.

When a command fails, the batch's ``FailurePolicy`` decides (``_settle``): under
``skip_dependents`` a dependent that uses its result (a RAW edge, or ``needs``) is
skipped, transitively, and one that only had to wait (WAR, WAW) is released;
``continue`` releases every dependent; ``halt`` skips everything later in script
order that has not started (``_halt``).

Threads: ``submit``/``cancel`` come from callers; a job whose executor can
``start`` it (``Startable``: the local pool's warm sandboxes) occupies no thread,
and its end comes back on the executor's watch thread; any other job occupies a
worker thread that blocks in ``executor.run``; one timer thread wakes the
scheduler for retry back-offs, aging and batch deadlines. All state is guarded by ``self._lock``;
executors are never called while it is held: commands picked under the lock are
launched by whichever thread picked them, right after it lets go of the lock.

What a batch is: batch_spec.py; the records kept per command and batch: scheduler_state.py;
methods in mixins: scheduler_jobs.py (a Job, its output), scheduler_outcomes.py (an end).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from sandbox.approvals import APPROVAL_EXPIRED
from sandbox.batch_spec import (
    MAX_LIMITS,
    NETWORKED,
    NOT_IDEMPOTENT,
    RETRYABLE,
    BatchSpec,
    CommandSpec,
    _links,
    _validate,
    default_limits,
)
from sandbox.errors import ExecutorError, InputError
from sandbox.events import (
    BatchFinished,
    BatchSubmitted,
    CommandStatusChanged,
    EventBus,
    PoolResized,
)
from sandbox.executors.base import BatchAware, Executor, Startable, close_batch_quietly
from sandbox.failure import FAILURES, halt_reason, skip_reason
from sandbox.locks import READ, WRITE, LockRequest, LockTable
from sandbox.model import CommandClass, EdgeKind, FailurePolicy, Job, Outcome, Status
from sandbox.priority import AGING_PER_S, DurationModel, fingerprint, score
from sandbox.redact import Redactor
from sandbox.scheduler_jobs import JobsMixin
from sandbox.scheduler_outcomes import OutcomesMixin
from sandbox.scheduler_state import (
    _approval_reason,
    _Batch,
    _Cmd,
    _held,
    _internal_error,
    _scope,
    _where,
)

__all__ = [
    "AGING_STEP_S",
    "EXCLUSIVE",
    "MAX_LIMITS",
    "NETWORKED",
    "NOT_IDEMPOTENT",
    "RETRYABLE",
    "SEQUENTIAL_TOKEN",
    "SEQUENTIAL_WORKSPACES",
    "BatchSpec",
    "CommandSpec",
    "Router",
    "Scheduler",
    "default_limits",
]

log = logging.getLogger(__name__)

EXCLUSIVE = "\x00exclusive"
SEQUENTIAL_TOKEN = "\x00sequential"
SEQUENTIAL_WORKSPACES = 8
AGING_STEP_S = 5.0  # sequential commands of different workspaces may overlap

# route(cls) -> (executor name, None) or (None, why it is refused)
Router = Callable[[CommandClass], tuple[str | None, str | None]]


class Scheduler(JobsMixin, OutcomesMixin):
    def __init__(
        self,
        executors: Mapping[str, Executor],
        route: Router,
        *,
        bus: EventBus | None = None,
        limits: Mapping[CommandClass, int] | None = None,
        max_running: int | None = None,
        durations: DurationModel | None = None,
        infra_deadline_s: float = 60.0,
        retain_finished: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.executors = dict(executors)
        self._startable = {n: ex for n, ex in self.executors.items() if isinstance(ex, Startable)}
        self.route = route
        self.bus = bus or EventBus()
        self.limits = dict(limits or default_limits())
        self.max_running = max_running or sum(self.limits.values())
        self.durations = durations or DurationModel()
        self.infra_deadline_s = infra_deadline_s
        # A long-running server keeps only the newest finished batches in memory
        # (the store has them all); None keeps everything (one `bashfleet run`).
        self.retain_finished = retain_finished
        self._retained: deque[str] = deque()
        self.clock = clock
        self._lock = threading.RLock()
        self._locks = LockTable()
        self._heaps: dict[CommandClass, list[tuple[float, float, int, _Cmd]]] = {
            c: [] for c in CommandClass
        }
        self._seq = itertools.count()
        self._running: dict[CommandClass, int] = dict.fromkeys(CommandClass, 0)
        self._running_total = 0
        self._batches: dict[str, _Batch] = {}
        self._by_id: dict[str, _Cmd] = {}
        self._delayed: list[tuple[float, int, _Cmd]] = []
        self._aging: list[tuple[float, int, _Cmd]] = []  # (next promotion, heap_seq, cmd)
        self._deadlines: list[tuple[float, int, str]] = []  # (when, seq, batch id)
        self._approvals: list[tuple[float, int, _Cmd]] = []  # (approval expires, seq, command)
        self._released: deque[_Cmd] = deque()  # dependents let go by _settle, made ready in order
        self._releasing = False
        self._draining: set[str] = set()  # workspaces where a dangerous command waits
        self._held: dict[str, str] = {}  # workspace -> why nothing new starts there (a move)
        self._launches: list[tuple[_Cmd, Job]] = []  # started under the lock, launched after it
        self._closed = False
        self._pool = ThreadPoolExecutor(
            max_workers=max(4, self.max_running + 2), thread_name_prefix="bashfleet-job"
        )
        self._wake = threading.Condition(self._lock)
        self._timer = threading.Thread(target=self._timer_loop, name="bashfleet-timer", daemon=True)
        self._timer.start()

    # --- public API -------------------------------------------------------------------

    def submit(self, spec: BatchSpec, ended: Mapping[int, Status] | None = None) -> str:
        """Plan and start a batch. ``ended`` (resuming a batch after a restart): the
        commands, by index, that already ended, with their final status; they count as
        settled (their dependents are released or skipped as the policy says)."""
        _validate(spec)
        ended = dict(ended or {})
        batch = _Batch(spec=spec, id=spec.id or uuid.uuid4().hex)
        if spec.environment is not None and spec.environment.secrets:
            redactor = Redactor(spec.environment.secrets.values())
            batch.redactor = redactor if redactor else None
        with self._lock:
            if self._closed:
                raise InputError("the scheduler is shutting down; no new work is accepted")
            if batch.id in self._batches:
                raise InputError(f"batch {batch.id} was already submitted")
            self._batches[batch.id] = batch
            for cs in spec.commands:
                cmd = _Cmd(spec=cs, batch=batch, id=cs.id or f"{batch.id}-{cs.index}")
                cmd.fingerprint = fingerprint(cs.command)
                if cs.index in ended:
                    cmd.status = Status(ended[cs.index])
                elif cs.approval:
                    cmd.gated = True
                    cmd.waiting_on += 1
                batch.commands.append(cmd)
                self._by_id[cmd.id] = cmd
            batch.remaining = len(batch.commands)
            by_index = {c.spec.index: c for c in batch.commands}
            for cmd in batch.commands:
                cmd.links = _links(cmd.spec)
                for n in cmd.links:
                    by_index[n].dependents.append(cmd)
                    cmd.waiting_on += 1
            if spec.deadline_s is not None:
                at = self.clock() + spec.deadline_s
                heapq.heappush(self._deadlines, (at, next(self._seq), batch.id))
                self._wake.notify_all()
            if spec.approval_ttl_s is not None:
                at = self.clock() + spec.approval_ttl_s
                for cmd in batch.commands:
                    if cmd.gated:
                        heapq.heappush(self._approvals, (at, next(self._seq), cmd))
                self._wake.notify_all()
            # Ties in priority go to the command with the longest chain behind it,
            # which keeps the critical path moving (list scheduling by rank).
            for cmd in reversed(batch.commands):
                own = self.durations.estimate(cmd.fingerprint, cmd.spec.cls, str(spec.workspace))
                cmd.rank = own + max((d.rank for d in cmd.dependents), default=0.0)
        self.bus.publish(
            BatchSubmitted(
                batch_id=batch.id, commands=len(batch.commands), workspace=str(spec.workspace)
            )
        )
        self._open_batch(batch)
        with self._lock:
            for cmd in batch.commands:
                if cmd.gated:
                    self._emit(cmd, Status.AWAITING_APPROVAL, reason=_approval_reason(cmd))
                elif cmd.waiting_on and not cmd.status.final:
                    self._emit(cmd, Status.PENDING, reason=self._pending_reason(cmd))
            for cmd in batch.commands:
                if cmd.spec.index in ended:
                    self._settle(cmd)  # resumed: it ended before the restart
            for cmd in batch.commands:
                if not cmd.waiting_on and cmd.status is Status.PENDING:
                    self._make_ready(cmd)
            if not batch.commands or (batch.remaining <= 0 and not batch.done.is_set()):
                self._finish_batch(batch)
            self._pump()
        self._launch()
        return batch.id

    def wait(self, batch_id: str, timeout: float | None = None) -> bool:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise KeyError(batch_id)
        return batch.done.wait(timeout)

    def cancel_batch(self, batch_id: str) -> None:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                raise KeyError(batch_id)
            batch.cancelled = True
            for cmd in batch.commands:
                self._cancel(cmd)
            self._pump()
        self._launch()

    def cancel_command(self, command_id: str) -> None:
        with self._lock:
            cmd = self._by_id.get(command_id)
            if cmd is None:
                raise KeyError(command_id)
            self._cancel(cmd)
            self._pump()
        self._launch()

    def approve(self, command_id: str, by: str) -> None:
        """A person approved a command that awaits approval: it runs once its needs are met.
        KeyError: not in this scheduler; InputError: it does not await approval."""
        with self._lock:
            cmd = self._gated(command_id)
            cmd.gated = False
            cmd.waiting_on -= 1
            cmd.reason = f"approved by {by}"
            if cmd.waiting_on:
                self._emit(
                    cmd, Status.PENDING, reason=f"approved by {by}; " + (self._pending_reason(cmd))
                )
            else:
                self._make_ready(cmd)
            self._pump()
        self._launch()

    def reject(self, command_id: str, reason: str) -> None:
        """A command that awaits approval will not run (``rejected``, with ``reason``); its
        dependents are settled as after a failure (the batch's ``on_failure``)."""
        with self._lock:
            self._end_gate(self._gated(command_id), reason)
            self._pump()
        self._launch()

    def _gated(self, command_id: str) -> _Cmd:
        cmd = self._by_id[command_id]
        if not cmd.gated or cmd.status is not Status.AWAITING_APPROVAL:
            raise InputError(
                f"command #{cmd.spec.index + 1} is {cmd.status.value}, not awaiting approval"
            )
        return cmd

    def _end_gate(self, cmd: _Cmd, reason: str) -> None:
        cmd.gated = False
        cmd.outcome = Outcome(status=Status.REJECTED, error=reason)
        self._emit(cmd, Status.REJECTED, reason=reason)
        self._settle(cmd)

    def hold(self, workspace: str, reason: str) -> None:
        """Start nothing new in ``workspace`` (its path) until ``unhold``: its ready commands
        stay queued with ``reason`` (a workspace being moved between nodes)."""
        with self._lock:
            self._held[workspace] = reason
            for cmd in list(self._by_id.values()):
                if cmd.status is Status.QUEUED and str(cmd.batch.spec.workspace) == workspace:
                    self._emit(cmd, Status.QUEUED, reason=reason)

    def unhold(self, workspace: str) -> None:
        with self._lock:
            if self._held.pop(workspace, None) is not None:
                self._pump()
        self._launch()

    def running_in(self, workspace: str) -> int:
        """Commands of ``workspace`` (its path) that run now."""
        with self._lock:
            return sum(
                1
                for c in self._by_id.values()
                if c.status is Status.RUNNING and str(c.batch.spec.workspace) == workspace
            )

    def set_limit(self, cls: CommandClass, limit: int, reason: str) -> None:
        with self._lock:
            before = self.limits[cls]
            after = max(1, min(MAX_LIMITS[cls], limit))
            if after == before:
                return
            self.limits[cls] = after
            self._pump()
        self._launch()
        self.bus.publish(PoolResized(pool=cls.value, before=before, after=after, reason=reason))

    def add_executor(self, name: str, executor: Executor) -> None:
        """Make an executor available later (a Docker engine that came up after the start)."""
        with self._lock:
            self.executors = {**self.executors, name: executor}
            if isinstance(executor, Startable):
                self._startable = {**self._startable, name: executor}

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Per pool: limit, running and queued counts (for dashboards and autoscaling)."""
        with self._lock:
            return {
                c.value: {
                    "limit": self.limits[c],
                    "running": self._running[c],
                    "queued": sum(
                        1
                        for _k, _r, seq, cmd in self._heaps[c]
                        if cmd.heap_seq == seq and cmd.status is Status.QUEUED
                    ),
                }
                for c in CommandClass
            }

    def status_of(self, command_id: str) -> Status:
        with self._lock:
            return self._by_id[command_id].status

    def shutdown(self, grace_s: float = 0.0) -> None:
        """Stop dispatching; give running commands ``grace_s``; the rest end ``interrupted``."""
        with self._lock:
            self._closed = True
            for heap in self._heaps.values():
                for *_key, cmd in heap:
                    if not cmd.status.final and not _held(cmd.batch):
                        self._emit(
                            cmd, Status.INTERRUPTED, reason="the server shut down before it ran"
                        )
                        self._settle(cmd)
                heap.clear()
            for batch in self._batches.values():
                if _held(batch):
                    continue  # the store keeps it waiting; the next start resumes it
                for cmd in batch.commands:
                    if cmd.status is Status.PENDING:
                        self._emit(
                            cmd, Status.INTERRUPTED, reason="the server shut down before it ran"
                        )
                        self._settle(cmd)
            deadline = self.clock() + grace_s
            while self._running_total and self.clock() < deadline:
                self._wake.wait(min(0.1, max(0.0, deadline - self.clock())))
            for batch in self._batches.values():
                for cmd in batch.commands:
                    if cmd.status is Status.RUNNING:
                        cmd.cancel_requested = True
                        cmd.reason = "interrupted: the server shut down"
                        self._pool.submit(self._cancel_running, cmd)
            while self._running_total and self.clock() < deadline + 10:
                self._wake.wait(0.1)
            self._wake.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- internals (all called with self._lock held unless noted) --------------------

    def _open_batch(self, batch: _Batch) -> None:
        classes = {c.spec.cls.value for c in batch.commands}
        names: set[str] = set()
        for cls in {c.spec.cls for c in batch.commands}:
            name, _why = self.route(cls)
            if name:
                names.add(name)
        batch.executors = names
        for name in names:
            ex = self.executors.get(name)
            if isinstance(ex, BatchAware):
                try:
                    ex.open_batch(batch.id, str(batch.spec.workspace), classes, **_where(batch))
                except ExecutorError as e:
                    log.warning("could not prepare %s for batch %s: %s", name, batch.id, e)

    def _pending_reason(self, cmd: _Cmd) -> str:
        parts = []
        for i, n in enumerate(cmd.spec.needs):
            why = cmd.spec.needs_reasons[i] if i < len(cmd.spec.needs_reasons) else ""
            parts.append(f"#{n + 1}" + (f" ({why})" if why else ""))
        return "waits for " + ", ".join(parts[:5]) + (" ..." if len(parts) > 5 else "")

    def _make_ready(self, cmd: _Cmd) -> None:
        spec = cmd.spec
        name, why = self.route(spec.cls)
        if name is None or name not in self.executors:
            self._emit(cmd, Status.REFUSED, reason=why or f"no executor for {spec.cls.value}")
            self._settle(cmd)
            return
        cmd.executor = name
        estimate = self.durations.estimate(cmd.fingerprint, spec.cls, _scope(cmd))
        cmd.base = score(spec.cls, estimate, cmd.batch.spec.priority)
        self._enqueue(cmd)
        held = self._held.get(str(cmd.batch.spec.workspace))
        self._emit(cmd, Status.QUEUED, reason=held or cmd.reason)

    def _enqueue(self, cmd: _Cmd, *, aging: bool = True) -> None:
        # Aging counts whole steps of the command's own wait (see _promote), so between
        # commands of equal score the critical path (rank) decides, never arrival order or
        # where a clock tick happens to fall.
        key = round(-(cmd.base + AGING_PER_S * AGING_STEP_S * cmd.aged), 6)
        cmd.heap_seq = next(self._seq)
        heapq.heappush(self._heaps[cmd.spec.cls], (key, -cmd.rank, cmd.heap_seq, cmd))
        if aging:
            due = self.clock() + AGING_STEP_S
            heapq.heappush(self._aging, (due, cmd.heap_seq, cmd))

    def _promote(self, now: float) -> bool:
        """Raise the priority of every command that has waited one more step."""
        promoted = False
        while self._aging and self._aging[0][0] <= now:
            due, seq, cmd = heapq.heappop(self._aging)
            if cmd.status is not Status.QUEUED or cmd.heap_seq != seq:
                continue  # started, cancelled, or re-queued since (with its own entry)
            cmd.aged += 1
            self._enqueue(cmd, aging=False)
            heapq.heappush(self._aging, (due + AGING_STEP_S, cmd.heap_seq, cmd))
            promoted = True
        return promoted

    def _pump(self) -> None:
        """Start every ready command that can start now."""
        if self._closed:
            return
        self._draining = {
            str(c.batch.spec.workspace)
            for *_key, c in self._heaps[CommandClass.DANGEROUS]
            if c.blocked and c.status is Status.QUEUED
        }
        # Lighter classes first; a dangerous command that cannot take its exclusive lock
        # marks its workspace as draining, so nothing new starts there until it has run.
        for cls in (
            CommandClass.SAFE,
            CommandClass.CONDITIONAL,
            CommandClass.SEQUENTIAL,
            CommandClass.DANGEROUS,
        ):
            heap = self._heaps[cls]
            skipped: list[tuple[float, float, int, _Cmd]] = []
            scanned = 0
            while heap and self._running[cls] < self._limit(cls) and scanned < 256:
                if self._running_total >= self.max_running:
                    break
                item = heapq.heappop(heap)
                cmd = item[3]
                scanned += 1
                if cmd.status is not Status.QUEUED or item[2] != cmd.heap_seq:
                    continue  # gone, or a stale entry of a promoted command
                ws = str(cmd.batch.spec.workspace)
                if ws in self._held:
                    skipped.append(item)
                    continue
                if ws in self._draining and cls is not CommandClass.DANGEROUS:
                    skipped.append(item)
                    continue
                if not self._locks.try_acquire(cmd.id, self._lock_requests(cmd)):
                    skipped.append(item)
                    if cls is CommandClass.DANGEROUS:
                        cmd.blocked = True
                        self._draining.add(ws)
                    continue
                if cls is CommandClass.DANGEROUS:
                    self._draining.discard(ws)
                self._start(cmd)
            for item in skipped:
                heapq.heappush(heap, item)

    def _limit(self, cls: CommandClass) -> int:
        if cls is CommandClass.SEQUENTIAL:
            # one per workspace, enforced by the workspace's sequential lock token
            return SEQUENTIAL_WORKSPACES
        return self.limits[cls]

    def _lock_requests(self, cmd: _Cmd) -> list[LockRequest]:
        ws = str(cmd.batch.spec.workspace)
        spec = cmd.spec
        reqs = [LockRequest(ws, p, READ) for p in spec.reads if p not in spec.writes]
        reqs += [LockRequest(ws, p, WRITE) for p in spec.writes]
        reqs += [LockRequest("resource", r, WRITE) for r in spec.resources]
        if spec.cls is CommandClass.DANGEROUS:
            reqs.append(LockRequest(ws, EXCLUSIVE, WRITE))
        else:
            reqs.append(LockRequest(ws, EXCLUSIVE, READ))
        if spec.cls is CommandClass.SEQUENTIAL:
            reqs.append(LockRequest(ws, SEQUENTIAL_TOKEN, WRITE))
        return reqs

    def _start(self, cmd: _Cmd) -> None:
        cls = cmd.spec.cls
        self._running[cls] += 1
        self._running_total += 1
        job = self._job(cmd)
        self._emit(cmd, Status.RUNNING, reason="")  # "waits for #3" is history now
        self._launches.append((cmd, job))

    def _launch(self) -> None:
        """Hand the commands ``_start`` picked to their executors. Not under the lock."""
        while True:
            with self._lock:
                if not self._launches:
                    return
                todo, self._launches = self._launches, []
            for cmd, job in todo:
                startable = self._startable.get(cmd.executor or "")
                if startable is not None:
                    try:
                        if startable.start(
                            job, self._sink(cmd), partial(self._done, cmd, launch=True)
                        ):
                            continue
                    except Exception as e:  # an executor bug must not wedge the batch
                        log.exception("executor %s could not start %s", cmd.executor, cmd.id)
                        self._done(cmd, _internal_error(cmd, e), launch=False)
                        continue
                try:
                    self._pool.submit(self._run, cmd, job)
                except RuntimeError:  # shut down in the meantime
                    self._done(cmd, ExecutorError("the server shut down"), launch=False)

    def _run(self, cmd: _Cmd, job: Job) -> None:
        """Worker thread: run one attempt, then hand the result back."""
        executor = self.executors[cmd.executor or ""]
        result: Outcome | ExecutorError
        try:
            result = executor.run(job, self._sink(cmd))
        except ExecutorError as e:
            result = e
        except Exception as e:  # an executor bug must not wedge the batch
            log.exception("executor %s crashed on %s", cmd.executor, cmd.id)
            result = _internal_error(cmd, e)
        self._done(cmd, result, launch=True)

    def _done(self, cmd: _Cmd, result: Outcome | ExecutorError, *, launch: bool) -> None:
        """One attempt ended (on a worker thread or an executor's own): settle it, start more."""
        if cmd.redactors:  # (no output comes after the end: an executor's contract)
            self._flush_output(cmd)
        with self._lock:
            self._running[cmd.spec.cls] -= 1
            self._running_total -= 1
            self._locks.release(cmd.id)
            if isinstance(result, ExecutorError):
                self._infra_failure(cmd, result)
            else:
                self._finished(cmd, result)
            self._pump()
            if self._closed:  # shutdown() waits for the running ones (the timer need not wake)
                self._wake.notify_all()
        if launch:  # (not when called from within _launch: its loop takes them)
            self._launch()

    def _delay(self, cmd: _Cmd, at: float) -> None:
        cmd.status = Status.QUEUED
        heapq.heappush(self._delayed, (at, next(self._seq), cmd))
        self._wake.notify_all()

    def _timer_loop(self) -> None:
        while True:
            with self._lock:
                if self._closed and not self._delayed:
                    return
                now = self.clock()
                released = False
                while self._delayed and self._delayed[0][0] <= now:
                    _at, _s, cmd = heapq.heappop(self._delayed)
                    if cmd.status is Status.QUEUED and not cmd.cancel_requested:
                        self._enqueue(cmd)
                        released = True
                released = self._promote(now) or released
                while self._approvals and self._approvals[0][0] <= now:
                    _at, _s, cmd = heapq.heappop(self._approvals)
                    if cmd.gated and cmd.status is Status.AWAITING_APPROVAL:
                        self._end_gate(cmd, APPROVAL_EXPIRED)
                        released = True
                while self._deadlines and self._deadlines[0][0] <= now:
                    _at, _s, batch_id = heapq.heappop(self._deadlines)
                    batch = self._batches.get(batch_id)  # (gone: finished and forgotten)
                    if batch is not None:
                        self._expire(batch)
                if released:
                    self._pump()
                if not self._launches:
                    heaps = (self._delayed, self._aging, self._deadlines, self._approvals)
                    due = [h[0][0] for h in heaps if h]
                    timeout = min(due) - now if due else 1.0
                    self._wake.wait(max(0.01, min(timeout, 1.0)))
                    if self._closed and not self._running_total:
                        return
            self._launch()

    def _expire(self, batch: _Batch) -> None:
        """The batch's deadline passed: stop what runs (timed out), cancel the rest."""
        if batch.done.is_set() or batch.cancelled:
            return
        batch.expired = f"the batch's deadline ({batch.spec.deadline_s:g} s) passed"
        batch.cancelled = True
        for cmd in batch.commands:
            if cmd.status.final:
                continue
            cmd.cancel_requested = True
            cmd.reason = batch.expired
            if cmd.status is Status.RUNNING:
                self._pool.submit(self._cancel_running, cmd)
            else:
                self._emit(cmd, Status.CANCELLED, reason=batch.expired)
                self._settle(cmd)

    def _cancel(self, cmd: _Cmd) -> None:
        if cmd.status.final:
            return
        cmd.cancel_requested = True
        cmd.reason = "cancelled"
        if cmd.status is Status.RUNNING:
            self._pool.submit(self._cancel_running, cmd)
        else:
            self._emit(cmd, Status.CANCELLED, reason="cancelled before it started")
            self._settle(cmd)

    def _cancel_running(self, cmd: _Cmd) -> None:
        """Not under the lock: executors are never called while it is held."""
        ex = self.executors.get(cmd.executor or "")
        if ex is not None:
            try:
                ex.cancel(cmd.id)
            except ExecutorError as e:
                log.warning("cancel of %s failed: %s", cmd.id, e)

    def _settle(self, cmd: _Cmd) -> None:
        """A command reached a final status: release its dependents, or skip them as the
        batch's ``on_failure`` says. Nothing moves on in a cancelled batch (its commands
        are being cancelled) or in a scheduler that shuts down."""
        batch = cmd.batch
        batch.remaining -= 1
        if not (batch.cancelled or self._closed):
            policy = batch.spec.on_failure
            if policy is FailurePolicy.HALT and cmd.status in FAILURES:
                self._halt(batch, cmd)
            stack = [cmd]
            while stack:
                done = stack.pop()
                bad = done.status is not Status.SUCCEEDED
                for dep in done.dependents:
                    if dep.status.final:
                        continue
                    kind, path = dep.links.get(done.spec.index, (EdgeKind.WAW, ""))
                    if bad and policy is FailurePolicy.SKIP_DEPENDENTS and kind.uses_result:
                        reason = skip_reason(done.spec.index, done.status, kind, path, done.root)
                        dep.root = done.root or (done.spec.index, done.status)
                        self._emit(dep, Status.SKIPPED, reason=reason)
                        batch.remaining -= 1
                        stack.append(dep)
                        continue
                    dep.waiting_on -= 1
                    if dep.waiting_on == 0 and dep.status is Status.PENDING:
                        self._released.append(dep)
        if batch.remaining <= 0 and not batch.done.is_set():
            self._finish_batch(batch)
        self._release()

    def _release(self) -> None:
        """Make released dependents ready. A loop, not recursion: a dependent refused at once
        settles and releases its own (a chain of thousands must not exhaust the stack)."""
        if self._releasing:
            return
        self._releasing = True
        try:
            while self._released:
                dep = self._released.popleft()
                if dep.status is Status.PENDING and not dep.batch.cancelled:
                    self._make_ready(dep)
        finally:
            self._releasing = False

    def _halt(self, batch: _Batch, failed: _Cmd) -> None:
        """on_failure=halt: nothing after the failed command in script order starts."""
        index = failed.spec.index
        if batch.halted_at is not None and batch.halted_at <= index:
            return
        batch.halted_at = index
        reason = halt_reason(index, failed.status)
        for later in batch.commands:
            waiting = (Status.PENDING, Status.QUEUED, Status.AWAITING_APPROVAL)
            if later.spec.index > index and later.status in waiting:
                later.gated = False
                self._emit(later, Status.SKIPPED, reason=reason)
                batch.remaining -= 1

    def _finish_batch(self, batch: _Batch) -> None:
        counts: dict[str, int] = {}
        for c in batch.commands:
            counts[c.status.value] = counts.get(c.status.value, 0) + 1
        if batch.expired:
            batch.status = Status.TIMED_OUT
        elif batch.cancelled:
            batch.status = Status.CANCELLED
        elif all(c.status is Status.SUCCEEDED for c in batch.commands):
            batch.status = Status.SUCCEEDED
        elif any(c.status is Status.INTERRUPTED for c in batch.commands):
            batch.status = Status.INTERRUPTED
        else:
            batch.status = Status.FAILED
        makespan = time.monotonic() - batch.started
        for name in batch.executors:
            ex = self.executors.get(name)
            if isinstance(ex, BatchAware):
                self._pool.submit(close_batch_quietly, ex, batch.id)
        self.bus.publish(
            BatchFinished(
                batch_id=batch.id, status=batch.status, counts=counts, makespan_s=makespan
            )
        )
        batch.done.set()
        if self.retain_finished is not None:
            self._retained.append(batch.id)
            while len(self._retained) > self.retain_finished:
                self.forget(self._retained.popleft())

    def _emit(self, cmd: _Cmd, status: Status, **fields: object) -> None:
        previous = cmd.status
        cmd.status = status
        if status.final:
            cmd.gated = False
        if "reason" in fields:
            cmd.reason = str(fields["reason"])
        self.bus.publish(
            CommandStatusChanged(
                batch_id=cmd.batch.id,
                command_id=cmd.id,
                index=cmd.spec.index,
                status=status,
                cls=cmd.spec.cls.value,
                previous=previous,
                executor=cmd.executor,
                attempt=cmd.attempt,
                **fields,  # type: ignore[arg-type]
            )
        )

    # --- read access for callers ----------------------------------------------------------

    def result(
        self, batch_id: str
    ) -> list[tuple[CommandSpec, Status, Outcome | None, str | None, str]]:
        """(spec, status, outcome, executor, reason) per command, in index order."""
        with self._lock:
            batch = self._batches[batch_id]
            return [(c.spec, c.status, c.outcome, c.executor, c.reason) for c in batch.commands]

    def batch_status(self, batch_id: str) -> Status:
        with self._lock:
            return self._batches[batch_id].status

    def forget(self, batch_id: str) -> None:
        """Drop a finished batch's bookkeeping (long-running servers)."""
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None or not batch.done.is_set():
                return
            del self._batches[batch_id]
            for c in batch.commands:
                self._by_id.pop(c.id, None)
