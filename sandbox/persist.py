"""Writes the scheduler's events to the store, off the scheduler's threads.

Status changes are coalesced per command and committed in small groups by one
writer thread, so a 1,000-command batch costs a handful of transactions per
second instead of three per command. Output goes to the output files at once
(appends are cheap) and only a tail is kept for the database row.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sandbox.approvals import APPROVAL_EXPIRED
from sandbox.events import (
    BatchFinished,
    CommandMisjudged,
    CommandStatusChanged,
    Event,
    OutputReceived,
)
from sandbox.model import Status
from sandbox.store import Store
from sandbox.store.records import ExecutorKind

log = logging.getLogger(__name__)
TAIL_BYTES = 4096
FLUSH_EVERY_S = 0.05
RETRY_FIRST_S = 0.25  # a failed write is retried after this, doubling up to RETRY_MAX_S
RETRY_MAX_S = 5.0


def _now(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


class StoreWriter:
    """Subscribe ``writer`` to the bus; call ``close()`` to flush and stop."""

    def __init__(self, store: Store, on_error: Callable[[Exception], None] | None = None) -> None:
        self.store = store
        self.on_error = on_error
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._tails: dict[tuple[str, str], bytearray] = {}
        self._sizes: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bashfleet-store", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        if isinstance(event, OutputReceived):
            self._output(event)
            return
        if isinstance(event, CommandMisjudged):
            self._discard(event)
            return
        if isinstance(event, CommandStatusChanged | BatchFinished):
            with self._lock:
                self._pending += 1
            self._queue.put(event)

    def _output(self, e: OutputReceived) -> None:
        try:
            self.store.output.append(e.batch_id, e.command_id, e.stream, e.data)
        except OSError as err:  # a full disk must not break the scheduler
            log.error("cannot store output of %s: %s", e.command_id, err)
            return
        key = (e.command_id, e.stream)
        with self._lock:
            tail = self._tails.setdefault(key, bytearray())
            tail += e.data
            del tail[:-TAIL_BYTES]
            self._sizes[key] = e.offset + len(e.data)

    def _discard(self, e: CommandMisjudged) -> None:
        try:
            self.store.output.discard(e.batch_id, e.command_id)
        except OSError as err:
            log.error("cannot discard output of %s: %s", e.command_id, err)
        with self._lock:
            for stream in ("stdout", "stderr"):
                self._tails.pop((e.command_id, stream), None)
                self._sizes.pop((e.command_id, stream), None)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything published so far is in the database."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        self.flush()
        self._closing.set()
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            stop = self._gather(group)
            delay = RETRY_FIRST_S
            while not self._write(group):
                # the database refused (full disk, server gone): keep the group and retry, so
                # no status is lost; newer events join behind it, in order
                if stop or self._closing.wait(delay):
                    log.error(
                        "giving up on %d status events: the store stays unwritable", len(group)
                    )
                    break
                delay = min(delay * 2, RETRY_MAX_S)
                stop = self._gather(group, wait=False)
            with self._idle:
                self._pending -= len(group)
                self._idle.notify_all()
            if stop:
                return

    def _gather(self, group: list[Event], *, wait: bool = True) -> bool:
        """Add what else is queued (waiting up to FLUSH_EVERY_S for more when ``wait``).
        True if the writer was told to stop."""
        try:
            while len(group) < 500 or not wait:
                item = self._queue.get(timeout=FLUSH_EVERY_S) if wait else self._queue.get_nowait()
                if item is None:
                    return True
                group.append(item)
        except queue.Empty:
            pass
        return False

    def _write(self, events: list[Event]) -> bool:
        changes: dict[str, dict[str, Any]] = {}
        finished: list[BatchFinished] = []
        started: dict[str, datetime] = {}
        for e in events:
            if isinstance(e, CommandStatusChanged):
                changes.setdefault(e.command_id, {}).update(self._command_changes(e))
                if e.status is Status.RUNNING:
                    started.setdefault(e.batch_id, _now(e.at))
            elif isinstance(e, BatchFinished):
                finished.append(e)
        try:
            for batch_id, at in started.items():
                self.store.batches.update_batch(
                    batch_id, status=Status.RUNNING, started_at=at, only_from=[Status.PENDING]
                )
            for command_id, values in changes.items():
                self.store.batches.update_command(command_id, **values)
            for f in finished:
                self.store.batches.update_batch(f.batch_id, status=f.status, finished_at=_now(f.at))
            for c in (e for e in events if isinstance(e, CommandStatusChanged)):
                if c.status is Status.REJECTED and c.reason == APPROVAL_EXPIRED:
                    # nobody decided: the system did
                    target = f"{c.batch_id}/{c.command_id}"
                    self.store.audit.append("approval_expired", actor="system", target=target)
        except Exception as err:  # keep running: the caller retries this group
            log.exception("cannot persist %d events", len(events))
            if self.on_error:
                self.on_error(err)
            return False
        self._forget(
            e.command_id for e in events if isinstance(e, CommandStatusChanged) and e.status.final
        )
        return True

    def _forget(self, command_ids: Iterable[str]) -> None:
        with self._lock:
            for command_id in command_ids:
                for stream in ("stdout", "stderr"):
                    self._tails.pop((command_id, stream), None)
                    self._sizes.pop((command_id, stream), None)

    def _command_changes(self, e: CommandStatusChanged) -> dict[str, Any]:
        values: dict[str, Any] = {"status": e.status}
        if e.executor in ("local", "docker"):
            values["executor"] = ExecutorKind(e.executor)
        if e.status is Status.QUEUED:
            values["queued_at"] = _now(e.at)
        elif e.status is Status.RUNNING:
            values["started_at"] = _now(e.at)
        if e.status.final:  # replaces "waits for #3 ..." left from pending
            values["error"] = None if e.status is Status.SUCCEEDED else (e.reason or None)
        elif e.reason and e.status is not Status.RUNNING:
            values["error"] = e.reason
        if e.status is Status.REJECTED and e.reason == APPROVAL_EXPIRED:
            values["approval"] = "expired"
            values["approval_at"] = _now(e.at)
        if e.status.final:
            values["finished_at"] = _now(e.at)
            values["exit_code"] = e.exit_code
            values["signal"] = e.signal
            values["duration_s"] = e.duration_s
            values["truncated"] = e.truncated
            with self._lock:  # read, not popped: a failed write is retried (see _forget)
                for stream in ("stdout", "stderr"):
                    key = (e.command_id, stream)
                    tail = self._tails.get(key)
                    size = self._sizes.get(key, 0)
                    if tail is not None:
                        values[f"{stream}_tail"] = tail.decode("utf-8", "replace")
                    values[f"{stream}_bytes"] = size
        return values
