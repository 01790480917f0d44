"""The executor interface: run a job to its end, and cancel a running job.

    run(job, on_output) -> Outcome   blocking; called from a worker thread
    cancel(job_id)                   thread-safe; makes run() return CANCELLED soon

An executor may also offer ``start(job, on_output, on_done) -> bool`` (``Startable``):
start the job without blocking and call ``on_done(outcome or ExecutorError)``
once, later, from a thread of its own (never from within ``start``); False means
it started nothing and the caller should ``run`` the job instead. The local pool
does this for its hot path, so that a batch of short commands needs no thread per
command.

An executor streams output as it arrives through ``on_output(stream, data)``
(``stream`` is "stdout" or "stderr"; ``data`` is whole lines where possible,
never more than 64 KiB at a time) and enforces the job's output cap per
stream, sending one marker line when it is reached and then draining without
forwarding. Infrastructure failures raise ``ExecutorError``; a command's own
failure is an ``Outcome``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from sandbox.errors import ExecutorError
from sandbox.model import Job, Outcome

OutputSink = Callable[[str, bytes], None]
DoneCallback = Callable[[Outcome | ExecutorError], None]

CHUNK_LIMIT = 64 << 10


def truncation_marker(cap: int) -> bytes:
    return f"\n[bashfleet: output truncated at {cap} bytes]\n".encode()


@runtime_checkable
class Executor(Protocol):
    name: str

    def run(self, job: Job, on_output: OutputSink) -> Outcome: ...

    def cancel(self, job_id: str) -> None: ...


@runtime_checkable
class Startable(Protocol):
    """Executors that can start a job without a thread blocking on it (see above)."""

    def start(self, job: Job, on_output: OutputSink, on_done: DoneCallback) -> bool: ...


@runtime_checkable
class BatchAware(Protocol):
    """Executors that prepare per-batch resources (the Docker executor's batch containers)."""

    def open_batch(
        self,
        batch_id: str,
        workspace: str,
        classes: set[str],
        *,
        image: str = "",
        network: bool = False,
    ) -> None: ...

    def close_batch(self, batch_id: str) -> None: ...


def close_batch_quietly(ex: BatchAware, batch_id: str) -> None:
    """Release a batch's resources in the background: a failure is logged, not raised."""
    try:
        ex.close_batch(batch_id)
    except ExecutorError as e:
        logging.getLogger(__name__).warning("could not clean up batch %s: %s", batch_id, e)
