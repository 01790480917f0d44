"""A scripted executor for fast, deterministic scheduler tests.

Each command text is looked up in a script of ``FakeResult`` values (or a
callable); the fake records the order and overlap of runs so tests can
assert on concurrency without real processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox.errors import ExecutorError
from sandbox.executors.base import OutputSink
from sandbox.model import Job, Outcome, Status


@dataclass(frozen=True, slots=True)
class FakeResult:
    exit_code: int = 0
    duration_s: float = 0.0
    stdout: bytes = b""
    stderr: bytes = b""
    status: Status | None = None  # overrides the status derived from exit_code
    infra_error: str | None = None  # raise ExecutorError instead of running
    infra_started: bool = False  # ... as if the engine failed while the command ran


@dataclass
class FakeExecutor:
    name: str = "fake"
    script: dict[str, FakeResult | Callable[[Job], FakeResult]] = field(default_factory=dict)
    default: FakeResult = field(default_factory=FakeResult)
    started: list[str] = field(default_factory=list)  # command texts in start order
    running: int = 0
    max_running: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cancels: dict[str, threading.Event] = field(default_factory=dict)

    def run(self, job: Job, on_output: OutputSink) -> Outcome:
        entry = self.script.get(job.command, self.default)
        result = entry(job) if callable(entry) else entry
        if result.infra_error:
            raise ExecutorError(
                result.infra_error, executor=self.name, started=result.infra_started
            )
        with self._lock:
            cancel = self._cancels.setdefault(job.id, threading.Event())
            self.started.append(job.command)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        started = time.time()
        try:
            if result.stdout:
                on_output("stdout", result.stdout)
            if result.stderr:
                on_output("stderr", result.stderr)
            timeout = job.timeout_s if job.timeout_s is not None else float("inf")
            wait = min(result.duration_s, timeout)
            cancelled = cancel.wait(wait) if wait > 0 else cancel.is_set()
        finally:
            with self._lock:
                self.running -= 1
                self._cancels.pop(job.id, None)
        ended = time.time()
        if cancelled:
            return Outcome(status=Status.CANCELLED, started_at=started, ended_at=ended)
        if result.duration_s > timeout:
            return Outcome(status=Status.TIMED_OUT, started_at=started, ended_at=ended)
        status = result.status or (Status.SUCCEEDED if result.exit_code == 0 else Status.FAILED)
        return Outcome(
            status=status, exit_code=result.exit_code, started_at=started, ended_at=ended
        )

    def cancel(self, job_id: str) -> None:
        with self._lock:
            self._cancels.setdefault(job_id, threading.Event()).set()
