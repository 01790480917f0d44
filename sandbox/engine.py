"""The engine without a server: judge, schedule and run batches in this process.

Used by `bashfleet run` (one batch, then close) and by `bashfleet mcp --workspace`
(many batches over a session). Docker is opened the first time a batch needs it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.errors import BashfleetError, InputError
from sandbox.events import CommandMisjudged, Event, EventBus, OutputReceived
from sandbox.executors.base import Executor
from sandbox.model import CommandClass, Outcome, Status
from sandbox.pipeline import Judgement, batch_spec, check_script, judge
from sandbox.priority import DurationModel
from sandbox.routing import instance_alive, make_router, new_instance_id, open_docker
from sandbox.scheduler import CommandSpec, Scheduler, default_limits

if TYPE_CHECKING:
    from sandbox.executors.local import LocalExecutor

CLI_MAX_SCRIPT_BYTES = 64 << 20
Result = tuple[CommandSpec, Status, Outcome | None, str | None, str]


@dataclass
class BatchInfo:
    id: str
    script: str
    workspace: Path
    total: int
    started: float = field(default_factory=time.monotonic)
    created_at: float = field(default_factory=time.time)
    ended: float | None = None


class _OutputKeeper:
    """Each command's output in memory, up to ``cap`` bytes per stream."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.lock = threading.Lock()
        self.kept: dict[tuple[str, int, str], bytearray] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, OutputReceived):
            with self.lock:
                buf = self.kept.setdefault((event.batch_id, event.index, event.stream), bytearray())
                if len(buf) < self.cap:
                    buf += event.data[: self.cap - len(buf)]
        elif isinstance(event, CommandMisjudged):
            # it runs again, writable: what it printed so far is discarded
            with self.lock:
                for stream in ("stdout", "stderr"):
                    self.kept.pop((event.batch_id, event.index, stream), None)

    def read(self, batch_id: str, index: int, stream: str) -> bytes:
        with self.lock:
            return bytes(self.kept.get((batch_id, index, stream), b""))

    def drop(self, batch_id: str) -> None:
        with self.lock:
            for key in [k for k in self.kept if k[0] == batch_id]:
                del self.kept[key]


class LocalEngine:
    """One scheduler with a local pool (and Docker when a batch needs it).

    ``local``: a warming pool (``sandbox.executors.local.warming``); it is closed with the
    engine. ``keep_output``: keep every command's output for ``output()`` (up to the batch's
    output cap per stream). ``retain``: how many finished batches stay readable."""

    def __init__(
        self,
        workspace: Path,
        local: LocalExecutor,
        *,
        isolation: str = "auto",
        jobs: int | None = None,
        keep_output: bool = True,
        retain: int = 50,
        warn: Callable[[str], object] | None = None,
        durations_file: Path | None = None,
    ) -> None:
        self.workspace = workspace.resolve()
        self.isolation = isolation
        self.local = local
        self.warn = warn or (lambda _text: None)
        self.instance = new_instance_id("cli")
        self.executors: dict[str, Executor] = {"local": local}
        self._docker_tried = False
        self._docker_ready = False
        self._docker_why = ""
        self._lock = threading.Lock()
        self.bus = EventBus()
        self.keeper: _OutputKeeper | None = None
        self.batches: dict[str, BatchInfo] = {}
        self._finished: deque[str] = deque()
        self.retain = retain
        if keep_output:
            from sandbox.model import DEFAULT_OUTPUT_CAP

            self.keeper = _OutputKeeper(DEFAULT_OUTPUT_CAP)
            self.bus.subscribe(self.keeper)
        self.durations_file = durations_file  # learned durations, kept between runs
        self.durations = DurationModel()
        if durations_file is not None:
            self.durations.load(durations_file)
        self.scheduler = Scheduler(
            self.executors,
            make_router(isolation, lambda: self._docker_ready, lambda: self._docker_why),
            bus=self.bus,
            limits=default_limits(jobs),
            max_running=jobs,
            durations=self.durations,
        )

    def judge(self, text: str) -> Judgement:
        check_script(text, max_bytes=CLI_MAX_SCRIPT_BYTES)
        return judge(text, max_statements=None)

    def submit(
        self,
        text: str,
        judgement: Judgement,
        *,
        workspace: Path | None = None,
        timeout_s: float | None = None,
        retries: int = 0,
        on_failure: str | None = None,
        deadline_s: float | None = None,
    ) -> str:
        """``on_failure`` None: ``halt`` for a script that starts with ``set -e``."""
        where = (workspace or self.workspace).resolve()
        if not where.is_dir():
            raise InputError(f"workspace {where} is not a directory")
        if any(j.verdict.cls is not CommandClass.SAFE for j in judgement.judged):
            self._open_docker(where)
        spec = batch_spec(
            judgement,
            where,
            timeout_s=timeout_s,
            retries=retries,
            priority=5,
            on_failure=on_failure,
            deadline_s=deadline_s,
        )
        info = BatchInfo(id="", script=text, workspace=where, total=len(spec.commands))
        with self._lock:
            info.id = self.scheduler.submit(spec)
            self.batches[info.id] = info
        return info.id

    def _open_docker(self, workspace: Path) -> None:
        if self.isolation == "local":
            return
        with self._lock:
            if not self._docker_tried:
                self._docker_tried = True
                docker, self._docker_why = open_docker(self.instance)
                if docker is not None:
                    self.scheduler.add_executor("docker", docker)
                    self.executors["docker"] = docker
                    docker.recover_orphans(alive=instance_alive)  # type: ignore[attr-defined]
                    self._docker_ready = True
        if not self._docker_ready and self.isolation == "docker":
            raise BashfleetError(
                f"--isolation docker, but {self._docker_why}. See `bashfleet doctor`."
            )
        if self._docker_ready and workspace.stat().st_uid == 0:
            self.warn(
                f"bashfleet: warning: {workspace} belongs to root, and containers never run "
                "as root: container commands cannot write there. Give the workspace to a "
                f"non-root user (chown -R 1000:1000 {workspace}) or pass --isolation local.\n"
            )

    def wait(self, batch_id: str, timeout_s: float | None = None) -> bool:
        done = self.scheduler.wait(batch_id, timeout_s)
        if done:
            self._ended(batch_id)
        return done

    def _ended(self, batch_id: str) -> None:
        with self._lock:
            info = self.batches.get(batch_id)
            if info is None or info.ended is not None:
                return
            info.ended = time.monotonic()
            self._finished.append(batch_id)
            while len(self._finished) > self.retain:
                old = self._finished.popleft()
                self.batches.pop(old, None)
                self.scheduler.forget(old)
                if self.keeper is not None:
                    self.keeper.drop(old)

    def info(self, batch_id: str) -> BatchInfo:
        info = self.batches.get(batch_id)
        if info is None:
            raise InputError(f"no batch {batch_id} in this session")
        return info

    def status(self, batch_id: str) -> Status:
        self.info(batch_id)
        return self.scheduler.batch_status(batch_id)

    def progress(self, batch_id: str) -> tuple[int, int]:
        """(commands ended, commands in all)."""
        results = self.result(batch_id)
        return sum(1 for _s, st, *_ in results if st.final), len(results)

    def makespan_s(self, batch_id: str) -> float:
        info = self.info(batch_id)
        return (info.ended or time.monotonic()) - info.started

    def cancel(self, batch_id: str) -> None:
        self.info(batch_id)
        self.scheduler.cancel_batch(batch_id)

    def result(self, batch_id: str) -> list[Result]:
        self.info(batch_id)
        return self.scheduler.result(batch_id)

    def output(self, batch_id: str, index: int, stream: str) -> bytes:
        if stream not in ("stdout", "stderr"):
            raise InputError("`stream` is stdout or stderr")
        if self.keeper is None:
            raise InputError("this engine does not keep output")
        return self.keeper.read(batch_id, index, stream)

    def close(self) -> None:
        self.scheduler.shutdown(grace_s=0)
        for ex in self.executors.values():
            close = getattr(ex, "close", None)
            if callable(close):
                close()
        if self.durations_file is not None:
            try:
                self.durations.save(self.durations_file)
            except OSError as e:
                self.warn(f"bashfleet: warning: cannot keep learned durations: {e}\n")
