"""`bashfleet run`: one batch, no server, live output tagged by command index."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sandbox.errors import BashfleetError
from sandbox.events import CommandStatusChanged, Event, EventBus, OutputReceived
from sandbox.executors.base import Executor
from sandbox.model import CommandClass, Status
from sandbox.pipeline import batch_spec, check_script, failure_policy, judge
from sandbox.priority import DurationModel
from sandbox.routing import instance_alive, make_router, new_instance_id, open_docker
from sandbox.scheduler import Scheduler, default_limits

if TYPE_CHECKING:
    from sandbox.executors.local import LocalExecutor

ISOLATIONS = ("auto", "docker", "local")
CLI_MAX_SCRIPT_BYTES = 64 << 20


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

    def __init__(self, out: IO[bytes], err: IO[str], total: int, keep: bool, cap: int) -> None:
        self.out = out
        self.err = err
        self.total = total
        self.keep = keep
        self.cap = cap
        self.lock = threading.Lock()
        self.partial: dict[tuple[int, str], bytes] = {}
        self.kept: dict[tuple[int, str], bytearray] = {}
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
            if self.keep:
                buf = self.kept.setdefault(key, bytearray())
                if len(buf) < self.cap:
                    buf += e.data[: self.cap - len(buf)]
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
        check_script(text, max_bytes=CLI_MAX_SCRIPT_BYTES)
        judgement = judge(text, max_statements=None)
        policy = failure_policy(judgement, opts.on_failure)
        workspace = opts.workspace.resolve()
        if not workspace.is_dir():
            raise BashfleetError(f"workspace {workspace} is not a directory")
    except BaseException:
        local.close()
        raise
    instance = new_instance_id("cli")
    executors: dict[str, Executor] = {"local": local}
    needs_docker = opts.isolation != "local" and any(
        j.verdict.cls is not CommandClass.SAFE for j in judgement.judged
    )
    docker_ready, why = False, ""
    if needs_docker:
        docker, why = open_docker(instance)
        if docker is not None:
            executors["docker"] = docker
            docker_ready = True
            docker.recover_orphans(alive=instance_alive)  # type: ignore[attr-defined]
            if workspace.stat().st_uid == 0:
                err.write(
                    f"bashfleet: warning: {workspace} belongs to root, and containers never run "
                    "as root: container commands cannot write there. Give the workspace to a "
                    f"non-root user (chown -R 1000:1000 {workspace}) or pass --isolation local.\n"
                )
        elif opts.isolation == "docker":
            raise BashfleetError(f"--isolation docker, but {why}. See `bashfleet doctor`.")
    bus = EventBus()
    spec = batch_spec(
        judgement,
        workspace,
        timeout_s=opts.timeout_s,
        retries=opts.retries,
        priority=5,
        on_failure=policy,
        deadline_s=opts.deadline_s,
    )
    printer = _Printer(
        out if not opts.json else sys.stderr.buffer,
        err,
        len(spec.commands),
        keep=opts.json,
        cap=spec.output_cap,
    )
    bus.subscribe(printer)
    limits = default_limits(opts.jobs)
    durations = DurationModel()
    if opts.durations_file is not None:
        durations.load(opts.durations_file)
    sched = Scheduler(
        executors,
        make_router(opts.isolation, docker_ready, why),
        bus=bus,
        limits=limits,
        max_running=opts.jobs,
        durations=durations,
    )
    started = time.monotonic()
    try:
        batch_id = sched.submit(spec)
        while not sched.wait(batch_id, 0.5):
            pass
    except KeyboardInterrupt:
        err.write("\ninterrupted: cancelling the batch\n")
        sched.cancel_batch(batch_id)
        sched.wait(batch_id, 15)
    finally:
        makespan = time.monotonic() - started
        printer.flush_partials()
        sched.shutdown(grace_s=0)
        for ex in executors.values():
            close = getattr(ex, "close", None)
            if callable(close):
                close()
    if opts.durations_file is not None:
        try:
            durations.save(opts.durations_file)
        except OSError as e:
            err.write(f"bashfleet: warning: cannot keep learned durations: {e}\n")
    results = sched.result(batch_id)
    if opts.json:
        summary = _summary(results, printer, makespan)
        out.write((json.dumps(summary) + "\n").encode())
        out.flush()
    else:
        _report(results, err, makespan)
    return 0 if all(st is Status.SUCCEEDED for _s, st, *_ in results) else 1


def _summary(results: list[Any], printer: _Printer, makespan: float) -> dict[str, Any]:
    commands = []
    for spec, status, outcome, executor, reason in results:

        def text(stream: str, index: int = spec.index) -> str:
            return bytes(printer.kept.get((index, stream), b"")).decode("utf-8", "replace")

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
