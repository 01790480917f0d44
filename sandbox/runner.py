"""`bashfleet run`: one batch, no server, live output tagged by command index."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sandbox.engine import CLI_MAX_SCRIPT_BYTES, LocalEngine
from sandbox.events import CommandStatusChanged, Event, OutputReceived
from sandbox.model import Status

if TYPE_CHECKING:
    from sandbox.executors.local import LocalExecutor

ISOLATIONS = ("auto", "docker", "local")
__all__ = ["CLI_MAX_SCRIPT_BYTES", "ISOLATIONS", "RunOptions", "run_script"]


@dataclass
class RunOptions:
    jobs: int | None = None
    workspace: Path = field(default_factory=Path.cwd)
    isolation: str = "auto"
    json: bool = False
    timeout_s: float | None = None
    retries: int = 0
    on_failure: str | None = None  # None: halt after `set -e` first, else skip_dependents
    deadline_s: float | None = None
    durations_file: Path | None = None  # learned durations, kept between runs


class _Printer:
    """Live output, tagged like `parallel --tag`, plus a progress line on a TTY."""

    def __init__(self, out: IO[bytes], err: IO[str], total: int) -> None:
        self.out = out
        self.err = err
        self.total = total
        self.lock = threading.Lock()
        self.partial: dict[tuple[int, str], bytes] = {}
        self.counts: dict[Status, int] = {}
        self.status: dict[int, Status] = {}
        self.tty = err.isatty()
        self.started = time.monotonic()
        self.last_progress = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, OutputReceived):
            self._output(event)
        elif isinstance(event, CommandStatusChanged):
            with self.lock:
                self.status[event.index] = event.status
                if event.status.final:
                    self._progress(force=True)
                    if event.status not in (Status.SUCCEEDED,):
                        self._clear()
                        why = f": {event.reason}" if event.reason else ""
                        code = (
                            f" (exit {event.exit_code})" if event.exit_code not in (None, 0) else ""
                        )
                        self.err.write(f"[{event.index + 1}] {event.status.value}{code}{why}\n")
                        self.err.flush()

    def _output(self, e: OutputReceived) -> None:
        key = (e.index, e.stream)
        with self.lock:
            data = self.partial.pop(key, b"") + e.data
            lines = data.split(b"\n")
            tail = lines.pop()
            if len(tail) > 65536:
                lines.append(tail)
                tail = b""
            if tail:
                self.partial[key] = tail
            if lines:
                self._clear()
                tag = (
                    f"[{e.index + 1}] ".encode()
                    if e.stream == "stdout"
                    else f"[{e.index + 1}!] ".encode()
                )
                self.out.write(b"".join(tag + line + b"\n" for line in lines))
                self.out.flush()
            self._progress()

    def flush_partials(self) -> None:
        with self.lock:
            for (index, stream), tail in sorted(self.partial.items()):
                tag = f"[{index + 1}] " if stream == "stdout" else f"[{index + 1}!] "
                self.out.write(tag.encode() + tail + b"\n")
            self.partial.clear()
            self.out.flush()
            self._clear()

    def _clear(self) -> None:
        if self.tty:
            self.err.write("\r\x1b[K")

    def _progress(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self.last_progress < 0.1:
            return
        self.last_progress = now
        done = sum(1 for s in self.status.values() if s.final)
        running = sum(1 for s in self.status.values() if s is Status.RUNNING)
        queued = sum(1 for s in self.status.values() if s is Status.QUEUED)
        self.err.write(
            f"\r\x1b[K{done}/{self.total} done · {running} running · {queued} queued · "
            f"{now - self.started:.1f}s"
        )
        self.err.flush()


def run_script(
    text: str,
    opts: RunOptions,
    out: IO[bytes],
    err: IO[str],
    local: LocalExecutor | None = None,
) -> int:
    """Run a batch to its end. Returns the process exit code (0 = every command succeeded).

    ``local``: the local pool to use (``local.warming``); it is closed at the end."""
    if local is None:
        from sandbox.executors.local import warming

        local = warming(opts.workspace)
    try:
        engine = LocalEngine(
            opts.workspace,
            local,
            isolation=opts.isolation,
            jobs=opts.jobs,
            keep_output=opts.json,
            warn=err.write,
            durations_file=opts.durations_file,
        )
    except BaseException:
        local.close()
        raise
    try:
        judgement = engine.judge(text)
        printer = _Printer(
            out if not opts.json else sys.stderr.buffer,
            err,
            len(judgement.judged),
        )
        engine.bus.subscribe(printer)
        batch_id = engine.submit(
            text,
            judgement,
            timeout_s=opts.timeout_s,
            retries=opts.retries,
            on_failure=opts.on_failure,
            deadline_s=opts.deadline_s,
        )
        try:
            while not engine.wait(batch_id, 0.5):
                pass
        except KeyboardInterrupt:
            err.write("\ninterrupted: cancelling the batch\n")
            engine.cancel(batch_id)
            engine.wait(batch_id, 15)
        makespan = engine.makespan_s(batch_id)
        printer.flush_partials()
    finally:
        engine.close()  # what has not ended by now is `interrupted`
    results = engine.result(batch_id)
    if opts.json:
        summary = _summary(engine, batch_id, results, makespan)
        out.write((json.dumps(summary) + "\n").encode())
        out.flush()
    else:
        _report(results, err, makespan)
    return 0 if all(st is Status.SUCCEEDED for _s, st, *_ in results) else 1


def _summary(
    engine: LocalEngine, batch_id: str, results: list[Any], makespan: float
) -> dict[str, Any]:
    commands = []
    for spec, status, outcome, executor, reason in results:

        def text(stream: str, index: int = spec.index) -> str:
            return engine.output(batch_id, index, stream).decode("utf-8", "replace")

        commands.append(
            {
                "index": spec.index,
                "command": spec.command,
                "class": spec.cls.value,
                "executor": executor,
                "status": status.value,
                "exit_code": outcome.exit_code if outcome else None,
                "duration_s": round(outcome.duration_s, 4) if outcome else None,
                "stdout": text("stdout"),
                "stderr": text("stderr"),
                "reason": reason,
            }
        )
    return {"commands": commands, "makespan_s": round(makespan, 4)}


def _report(results: list[Any], err: IO[str], makespan: float) -> None:
    counts: dict[str, int] = {}
    for _spec, status, *_ in results:
        counts[status.value] = counts.get(status.value, 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    err.write(f"bashfleet: {len(results)} commands in {makespan:.2f}s: {parts}\n")
