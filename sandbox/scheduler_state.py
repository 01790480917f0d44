"""The scheduler's records of each command (``_Cmd``) and batch (``_Batch``), and the
small pure helpers on them. Guarded by the scheduler's lock, like everything it keeps."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox.batch_spec import BatchSpec, CommandSpec
from sandbox.errors import ExecutorError
from sandbox.model import EdgeKind, Outcome, Status
from sandbox.redact import Redactor, StreamRedactor

log = logging.getLogger("sandbox.scheduler")  # the scheduler's log, as before the split


@dataclass(eq=False)
class _Cmd:
    spec: CommandSpec
    batch: _Batch
    id: str
    status: Status = Status.PENDING
    waiting_on: int = 0
    dependents: list[_Cmd] = field(default_factory=list)
    attempt: int = 1
    rank: float = 1.0  # estimated seconds on the longest chain from here to the end
    executor: str | None = None
    base: float = 0.0
    fingerprint: str = ""
    not_before: float = 0.0
    infra_since: float | None = None
    cancel_requested: bool = False
    blocked: bool = False  # a dangerous command that waited for its exclusive lock
    aged: int = 0  # whole AGING_STEP_S it has waited while queued (each raises priority)
    heap_seq: int = -1  # its live entry in its class heap; older entries are stale
    outcome: Outcome | None = None
    reason: str = ""
    offsets: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    misjudged: bool = False  # judged safe, tried to write: runs again as conditional
    links: dict[int, tuple[EdgeKind, str]] = field(default_factory=dict)  # need -> (kind, path)
    root: tuple[int, Status] | None = None  # skipped: the failure upstream (index, status)
    redactors: dict[str, StreamRedactor] = field(default_factory=dict)  # per stream, one attempt
    gated: bool = False  # awaiting approval: the gate counts as one more unmet need


@dataclass(eq=False)
class _Batch:
    spec: BatchSpec
    id: str
    commands: list[_Cmd] = field(default_factory=list)
    remaining: int = 0
    cancelled: bool = False
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    status: Status = Status.RUNNING
    executors: set[str] = field(default_factory=set)
    halted_at: int | None = None  # on_failure=halt: the first failed index
    expired: str = ""  # why its deadline stopped it
    redactor: Redactor | None = None  # its secrets' forms, when it has secrets


def _approval_reason(cmd: _Cmd) -> str:
    return f"awaits approval: a {cmd.spec.cls.value} command"


def _held(batch: _Batch) -> bool:
    """A batch with a command that awaits approval outlives a shutdown (see Service.recover)."""
    return any(c.gated and c.status is Status.AWAITING_APPROVAL for c in batch.commands)


def _internal_error(cmd: _Cmd, e: Exception) -> ExecutorError:
    return ExecutorError(f"internal error in the {cmd.executor} executor: {e}", retryable=False)


def _scope(cmd: _Cmd) -> str:
    """Durations are learned per workspace: the same command can take longer in another."""
    return str(cmd.batch.spec.workspace)


def _where(batch: _Batch) -> dict[str, Any]:
    """``open_batch``'s image and network: what the batch's container jobs will ask for."""
    env = batch.spec.environment
    return {"image": (env.image if env else None) or "", "network": batch.spec.allow_network}
