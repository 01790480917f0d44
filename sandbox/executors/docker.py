"""Run jobs in locked-down Docker containers. The only module that imports ``docker``.

Containers (sandbox/executors/docker_profiles.py has their exact settings):
- ``conditional`` / ``sequential``: one warm container per (batch, workspace), started in the
  background by ``open_batch`` and removed by ``close_batch``; each command is an ``exec``
  in it, so system-level changes (/tmp, processes it leaves on purpose) carry over as in a
  serial run. About 6x cheaper per command than ``docker run --rm`` (57 vs 323 ms here).
  Without ``open_batch``, the first command starts it; ``close_batch``/``shutdown`` remove it.
- ``dangerous``: a fresh container per command, taken from a small pool of pre-started idle
  containers keyed by (workspace, limits) and removed (force) when the command ends.

Each container is of the job's image (``Job.image``: its workspace's; else the executor's
default), checked once per image for bash. A conditional or sequential job of an ``egress``
workspace runs on the ``bashfleet-egress`` network (``egress.py``: outbound only, never the
host); every other container has no network. A job's variables and secrets go in the
exec's environment (the API request), never on a command line.

Every command runs under a wrapper: its own session (so its tree is one process group,
recorded in /tmp/.bashfleet-<job id>.pgid), rlimits, and ``timeout -s KILL`` inside the
container, so a command dies on time even if bashfleet dies. On timeout or cancel, a second
exec kills the group and anything carrying the job's ``BASHFLEET_JOB`` marker using bash
builtins only (it must work while a fork bomb holds every pid); if the stream still does
not end, the container itself is removed (a warm one is replaced on next use).

User: the workspace owner's ``uid:gid``, so created files belong to that owner. A root-owned
workspace runs as the image's unprivileged ``sandbox`` user (1000:1000), never as root, and
is writable only if its permissions allow it: workspaces should belong to a non-root user
(``os.chown(ws, 1000, 1000)`` when bashfleet itself runs as root).

OOM: Docker's ``State.OOMKilled`` is only set when a container's main process exits, which
an exec never is, so after a failed command a builtin-only exec reads the container's memory
cgroup ``oom_kill`` counter (and ``pids.events`` max) and compares it with the last reading:
an increase means OOM_KILLED (or "process limit reached"). In a shared batch container two
commands failing at the same moment could both be blamed for one kill.

Engine failures raise ``EngineUnavailable``/``ExecutorError`` and feed a circuit breaker;
while it is open, ``run`` refuses at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import docker

from sandbox.breaker import CircuitBreaker
from sandbox.errors import ExecutorError
from sandbox.executors import docker_profiles as prof
from sandbox.executors import egress
from sandbox.executors.base import OutputSink
from sandbox.executors.docker_engine import EngineGuard
from sandbox.executors.docker_output import OutputSplitter
from sandbox.image import default_image
from sandbox.model import CommandClass, Job, Outcome, Status

log = logging.getLogger(__name__)

KILL_GRACE_S = 0.5  # the in-container timeout fires first; the host kills after this much more
STREAM_END_S = 2.0  # after a kill, how long the output stream may take to end


@dataclass(eq=False)
class _Box:
    """A started container."""

    id: str
    spec: prof.ContainerSpec
    counters: dict[str, int] = field(default_factory=dict)
    broken: bool = False  # must not be reused


@dataclass(eq=False)
class _Running:
    job: Job
    box: _Box
    cancel: threading.Event = field(default_factory=threading.Event)


class DockerExecutor:
    name = "docker"

    def __init__(
        self,
        image: str | None = None,
        instance_id: str | None = None,
        client: docker.DockerClient | None = None,
        *,
        base_url: str | None = None,
        profiles: dict[CommandClass, prof.Profile] | None = None,
        breaker: CircuitBreaker | None = None,
        pool_size: int = 1,
        api_timeout_s: float = 20.0,
    ) -> None:
        self.image = default_image(image)
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.breaker = breaker or CircuitBreaker()
        self._guard = EngineGuard(self.breaker, self.image, self.name)
        self._client = client
        self._base_url = base_url
        self._api_timeout_s = api_timeout_s
        self._profiles = {**prof.DEFAULT_PROFILES, **(profiles or {})}
        self._pool_size = pool_size
        self._lock = threading.Lock()
        self._warm: dict[prof.ContainerSpec, Future[_Box]] = {}
        self._pool: dict[prof.ContainerSpec, list[Future[_Box]]] = {}
        self._batches: dict[str, str] = {}  # open batch -> workspace (real path)
        self._pooled: set[str] = set()  # open batches with dangerous commands: keep a pool
        self._running: dict[str, _Running] = {}
        self._cancelled: set[str] = set()  # cancelled before run() started
        self._background = ThreadPoolExecutor(2, thread_name_prefix="bashfleet-docker")
        self._usable_images: set[str] = set()  # images known to have bash

    # -- Executor -------------------------------------------------------------------------

    def run(self, job: Job, on_output: OutputSink) -> Outcome:
        started = time.time()
        with self._lock:
            if job.id in self._cancelled:
                self._cancelled.discard(job.id)
                return Outcome(Status.CANCELLED, started_at=started, ended_at=time.time())
        self._guard.gate()
        box = self._acquire(prof.spec_for(job, self.image, self._profiles[job.cls]))
        try:
            return self._run_in(box, job, on_output, started)
        finally:
            if box.spec.role == "single" or box.broken:
                self._discard(box)

    def cancel(self, job_id: str) -> None:
        with self._lock:
            running = self._running.get(job_id)
            if running is None:
                self._cancelled.add(job_id)
            else:
                running.cancel.set()

    # -- BatchAware -----------------------------------------------------------------------

    def open_batch(
        self,
        batch_id: str,
        workspace: str,
        classes: set[str],
        *,
        image: str = "",
        network: bool = False,
    ) -> None:
        """Start the batch's warm container (and a dangerous-pool entry) in the background,
        of the workspace's ``image`` and ``network`` (as its conditional jobs will ask)."""
        with self._lock:
            self._batches[batch_id] = str(Path(workspace).resolve())
            if any(CommandClass(c) is CommandClass.DANGEROUS for c in classes):
                self._pooled.add(batch_id)
        for cls in sorted({CommandClass(c) for c in classes} - {CommandClass.SAFE}):
            job = Job(
                id="",
                command="",
                cls=cls,
                workspace=Path(workspace),
                batch_id=batch_id,
                image=image,
                network=network and cls in (CommandClass.CONDITIONAL, CommandClass.SEQUENTIAL),
            )
            spec = prof.spec_for(job, self.image, self._profiles[cls])
            if spec.role == "batch":
                with self._lock:
                    if spec not in self._warm:
                        self._warm[spec] = self._background.submit(self._start, spec)
            else:
                self._refill(spec)

    def close_batch(self, batch_id: str) -> None:
        """Remove the batch's containers, and idle pool ones no open batch can use any more."""
        with self._lock:
            doomed = [self._warm.pop(s) for s in list(self._warm) if s.batch_id == batch_id]
            self._batches.pop(batch_id, None)
            self._pooled.discard(batch_id)
            open_workspaces = {self._batches[b] for b in self._pooled}
            for spec in [s for s in self._pool if s.workspace not in open_workspaces]:
                doomed.extend(self._pool.pop(spec))
        for fut in doomed:
            with contextlib.suppress(Exception):
                self._discard(fut.result())

    # -- lifecycle ------------------------------------------------------------------------

    def ping(self) -> str:
        """The engine's version; raises EngineUnavailable when it does not answer."""
        with self._guard("ping"):
            version = self._docker().version()
        return str(version.get("Version", "?"))

    def close(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Remove every container this instance made (waiting for ones being started)."""
        for batch_id in list(self._batches):
            self.close_batch(batch_id)
        with self._lock:
            doomed = list(self._warm.values()) + [f for fs in self._pool.values() for f in fs]
            self._warm.clear()
            self._pool.clear()
            for running in self._running.values():
                running.cancel.set()
        for fut in doomed:
            with contextlib.suppress(Exception):
                self._discard(fut.result())
        self._background.shutdown(wait=True)
        with contextlib.suppress(ExecutorError):
            for c in self._list({"label": f"{prof.LABEL_INSTANCE}={self.instance_id}"}):
                self._remove(c.id)

    def recover_orphans(
        self, all_instances: bool = False, alive: Callable[[str], bool] | None = None
    ) -> list[str]:
        """Remove containers of earlier bashfleet instances; return the ids of the commands
        that were running in them (from the label, or the running-marker files inside).

        ``alive(instance_id)`` spares the containers of instances that still run (several
        `bashfleet run` processes may share one engine)."""
        label = prof.LABEL_COMMAND if all_instances else prof.LABEL_INSTANCE
        command_ids: list[str] = []
        for c in self._list({"label": label}):
            owner = c.labels.get(prof.LABEL_INSTANCE, "")
            if not all_instances and owner == self.instance_id:
                continue
            if alive is not None and alive(owner):
                continue
            if c.labels.get(prof.LABEL_COMMAND):
                command_ids.append(c.labels[prof.LABEL_COMMAND])
            if c.status == "running":
                with contextlib.suppress(ExecutorError):
                    user = c.attrs.get("Config", {}).get("User") or "0"
                    _, out = self._exec_quick(c.id, prof.running_command(), user)
                    command_ids.extend(out.decode(errors="replace").split())
            self._remove(c.id)
        return list(dict.fromkeys(command_ids))

    # -- running one job ------------------------------------------------------------------

    def _run_in(self, box: _Box, job: Job, on_output: OutputSink, started: float) -> Outcome:
        running = _Running(job, box)
        with self._lock:
            self._running[job.id] = running
            if job.id in self._cancelled:
                self._cancelled.discard(job.id)
                running.cancel.set()
        try:
            return self._stream(running, on_output, started)
        finally:
            with self._lock:
                self._running.pop(job.id, None)

    def _stream(self, running: _Running, on_output: OutputSink, started: float) -> Outcome:
        job, box = running.job, running.box
        api = self._docker().api
        t0 = time.monotonic()
        try:
            with self._guard("exec"):
                exec_id = api.exec_create(
                    box.id,
                    prof.exec_command(job),
                    user=box.spec.user,
                    environment=prof.exec_environment(job),
                    workdir="/workspace",
                )["Id"]
                stream = api.exec_start(exec_id, stream=True, demux=True)
        except ExecutorError:
            box.broken = True  # gone or unusable: the next command gets a new container
            raise
        try:
            return self._follow(running, on_output, started, exec_id, stream, t0)
        except ExecutorError as e:
            e.started = True  # the engine failed while the command ran
            raise

    def _follow(
        self,
        running: _Running,
        on_output: OutputSink,
        started: float,
        exec_id: str,
        stream: Any,
        t0: float,
    ) -> Outcome:
        job, box = running.job, running.box
        api = self._docker().api
        splitter = OutputSplitter(on_output, job.output_cap)
        done = threading.Event()

        def read() -> None:
            try:
                for out, err in stream:
                    if out:
                        splitter.feed("stdout", out)
                    if err:
                        splitter.feed("stderr", err)
            finally:
                done.set()

        threading.Thread(target=read, name=f"docker-out-{job.id}", daemon=True).start()
        deadline = None if job.timeout_s is None else t0 + job.timeout_s + KILL_GRACE_S
        stopped: Status | None = None
        disk = _DiskGuard(job.workspace, job.limits.disk_bytes)
        while not done.wait(0.05):
            if running.cancel.is_set():
                stopped = Status.CANCELLED
            elif deadline is not None and time.monotonic() >= deadline:
                stopped = Status.TIMED_OUT
            elif disk.exceeded():
                stopped = Status.FAILED
            if stopped is not None:
                self._kill(box, job, stream, done)
                break
        splitter.flush()
        exit_code = None
        if not box.broken:
            with self._guard("exec inspect"):
                exit_code = api.exec_inspect(exec_id)["ExitCode"]
        elapsed = time.monotonic() - t0
        timed_out = job.timeout_s is not None and elapsed >= job.timeout_s and exit_code == 137
        if stopped is None and timed_out:
            stopped = Status.TIMED_OUT
        outcome = self._outcome(box, job, stopped, exit_code, started, splitter.truncated)
        if disk.why:
            outcome = replace(outcome, status=Status.FAILED, error=disk.why)
        return outcome

    def _outcome(
        self,
        box: _Box,
        job: Job,
        stopped: Status | None,
        exit_code: int | None,
        started: float,
        truncated: bool,
    ) -> Outcome:
        status, error, signal = stopped or Status.FAILED, None, None
        if stopped is Status.TIMED_OUT:
            error, signal = f"timed out after {job.timeout_s:g}s", 9
        elif stopped is Status.CANCELLED:
            signal = 9
        elif exit_code == 0:
            status = Status.SUCCEEDED
        if status is not Status.SUCCEEDED and not box.broken and stopped is not Status.CANCELLED:
            oom, forks = self._new_limit_events(box)
            if oom and stopped is None:
                status = Status.OOM_KILLED
                error = f"killed by the memory limit ({box.spec.memory_bytes >> 20} MiB)"
            if forks:
                note = f"process limit ({box.spec.pids}) refused {forks} forks"
                error = f"{error}; {note}" if error else note
        return Outcome(
            status,
            exit_code=exit_code,
            signal=signal,
            started_at=started,
            ended_at=time.time(),
            error=error,
            truncated=truncated,
        )

    def _kill(self, box: _Box, job: Job, stream: Any, done: threading.Event) -> None:
        """Kill the job's whole tree; remove its container if that is the only way."""
        if box.spec.role == "batch":
            until = time.monotonic() + STREAM_END_S
            while not done.is_set() and time.monotonic() < until:
                # may fail while a fork bomb holds every pid: retry
                with contextlib.suppress(ExecutorError):
                    self._exec_quick(box.id, prof.killer_command(job.id), box.spec.user)
                done.wait(0.2)
            if done.is_set():
                return
        box.broken = True
        with contextlib.suppress(ExecutorError):
            self._remove(box.id)
        if not done.wait(STREAM_END_S):
            stream.close()

    def _new_limit_events(self, box: _Box) -> tuple[int, int]:
        """(OOM kills, refused forks) in the container since the last look."""
        try:
            _, out = self._exec_quick(box.id, prof.probe_command(), box.spec.user)
        except ExecutorError:
            return 0, 0
        now = prof.parse_counters(out.decode(errors="replace"))
        with self._lock:
            before, box.counters = box.counters, now
        return (
            now.get("oom_kill", 0) - before.get("oom_kill", 0),
            now.get("max", 0) - before.get("max", 0),
        )

    # -- containers -----------------------------------------------------------------------

    def _acquire(self, spec: prof.ContainerSpec) -> _Box:
        if spec.role == "single":
            with self._lock:
                queue = self._pool.get(spec)
                fut = queue.pop(0) if queue else None
            self._refill(spec)
            if fut is not None:
                with contextlib.suppress(ExecutorError):
                    return fut.result()
            return self._start(spec)
        with self._lock:
            fut = self._warm.get(spec)
            if fut is None or (fut.done() and (fut.exception() or fut.result().broken)):
                fut = self._warm[spec] = self._background.submit(self._start, spec)
        return fut.result()

    def _refill(self, spec: prof.ContainerSpec) -> None:
        """Keep ``pool_size`` idle single-use containers for open batches with dangerous work."""
        with self._lock:
            if spec.workspace not in {self._batches[b] for b in self._pooled}:
                return
            queue = self._pool.setdefault(spec, [])
            while len(queue) < self._pool_size:
                queue.append(self._background.submit(self._start, spec))

    def _start(self, spec: prof.ContainerSpec) -> _Box:
        client = self._docker()
        with self._lock:
            batch = spec.batch_id or next(
                (b for b, ws in self._batches.items() if ws == spec.workspace), ""
            )
        if spec.network:
            with self._guard("egress network"):
                egress.ensure(client)
        with self._guard("create container", image=spec.image):
            container = client.containers.create(
                **prof.create_kwargs(spec, self.instance_id, batch)
            )
        container_id = str(container.id)
        try:
            with self._guard("start container"):
                container.start()
            self._check_image(container_id, spec)
        except ExecutorError:
            with contextlib.suppress(ExecutorError):
                self._remove(container_id)
            raise
        return _Box(container_id, spec)

    def _check_image(self, container_id: str, spec: prof.ContainerSpec) -> None:
        """Once per image: it must have bash (every command runs under bash)."""
        if spec.image in self._usable_images:
            return
        try:
            code, _ = self._exec_quick(container_id, ["bash", "-c", "exit 0"], spec.user)
        except ExecutorError as e:
            text = str(e).lower()
            # no bash, or no `sleep` (the idle process: the new container exited at once)
            if not any(w in text for w in ("not found", "no such file", "not running")):
                raise  # the engine's trouble, not the image's
            code, why = -1, str(e)
        else:
            why = f"exit {code}"
        if code != 0:
            raise ExecutorError(
                f"image {spec.image} cannot run commands: it has no bash or no sleep ({why}); "
                "bashfleet runs every command with bash in a container kept up by sleep",
                executor=self.name,
                retryable=False,
            )
        self._usable_images.add(spec.image)

    def _discard(self, box: _Box) -> None:
        box.broken = True
        with self._lock:
            for spec, fut in list(self._warm.items()):
                if fut.done() and not fut.exception() and fut.result() is box:
                    del self._warm[spec]
        try:
            self._remove(box.id)
        except ExecutorError as e:
            log.warning("could not remove container %s: %s", box.id[:12], e)

    def _remove(self, container_id: str) -> None:
        with self._guard("remove container", missing_ok=True):
            self._docker().api.remove_container(container_id, force=True)

    def _list(self, filters: dict[str, str | list[str] | bool]) -> list[Any]:
        with self._guard("list containers"):
            return list(
                self._docker().containers.list(ignore_removed=True, all=True, filters=filters)
            )

    def _exec_quick(self, container_id: str, cmd: list[str], user: str) -> tuple[int, bytes]:
        api = self._docker().api
        with self._guard("exec"):
            exec_id = api.exec_create(container_id, cmd, user=user)["Id"]
            out = api.exec_start(exec_id)
            return int(api.exec_inspect(exec_id)["ExitCode"] or 0), bytes(out)

    # -- engine ---------------------------------------------------------------------------

    def _docker(self) -> docker.DockerClient:
        if self._client is None:
            with self._guard("connect"):
                if self._base_url:
                    self._client = docker.DockerClient(
                        base_url=self._base_url, timeout=int(self._api_timeout_s)
                    )
                else:
                    self._client = docker.from_env(timeout=int(self._api_timeout_s))
        return self._client


class _DiskGuard:
    """Stops a command once the workspace's filesystem has lost more than ``cap`` bytes of
    free space since it started (statvfs: one cheap call per check, whatever the number of
    files). It measures the filesystem, so other writers on it count too: the cap is a
    guard for the host's disk, set well above what one command normally writes."""

    def __init__(self, workspace: Path, cap: int | None) -> None:
        self.workspace = workspace
        self.cap = cap
        self.why = ""
        self.start = self._free() if cap is not None else None

    def _free(self) -> int | None:
        try:
            st = os.statvfs(self.workspace)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def exceeded(self) -> bool:
        if self.cap is None or self.start is None:
            return False
        free = self._free()
        if free is None or self.start - free <= self.cap:
            return False
        self.why = (
            f"stopped: it took more than {self.cap >> 20} MiB of the workspace's disk "
            f"({(self.start - free) >> 20} MiB)"
        )
        return True
