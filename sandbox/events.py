"""Frozen, keyword-only events with past-tense names, and a tiny bus.

Every transition the scheduler makes is one of these values. Subscribers
(the CLI's printer, the service's store writer, the Socket.IO bridge) get
them synchronously on the scheduler's threads, so they must be quick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox.model import Status

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchSubmitted(Event):
    batch_id: str
    commands: int
    workspace: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CommandStatusChanged(Event):
    batch_id: str
    command_id: str
    index: int
    status: Status
    cls: str = ""  # the command's class: safe, conditional, sequential, dangerous
    previous: Status | None = None
    executor: str | None = None
    reason: str = ""  # why it waits, why it was skipped, what failed
    exit_code: int | None = None
    signal: int | None = None
    duration_s: float | None = None
    attempt: int = 1
    truncated: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class OutputReceived(Event):
    batch_id: str
    command_id: str
    index: int
    stream: str  # "stdout" | "stderr"
    data: bytes
    offset: int  # byte offset of data within that stream


@dataclass(frozen=True, kw_only=True, slots=True)
class CommandMisjudged(Event):
    """A command judged safe tried to write in its read-only sandbox: the output it made
    so far is discarded, and it runs again, writable, before what comes after it."""

    batch_id: str
    command_id: str
    index: int
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchFinished(Event):
    batch_id: str
    status: Status
    counts: dict[str, int]
    makespan_s: float


@dataclass(frozen=True, kw_only=True, slots=True)
class PoolResized(Event):
    pool: str
    before: int
    after: int
    reason: str


Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out. A failing subscriber is logged, never propagated."""

    def __init__(self) -> None:
        self._subscribers: tuple[Subscriber, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers = (*self._subscribers, fn)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not fn)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for fn in self._subscribers:
            try:
                fn(event)
            except Exception:  # a subscriber must never break the scheduler
                log.exception("event subscriber failed on %s", type(event).__name__)
