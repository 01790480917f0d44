"""Watching one spawned job: its output, its end, its tree, and what its end means.

One ``JobWatch`` per job, driven by the job's own thread: a poll loop over
stdout, stderr, an exit fd (the shell exited) and an eventfd (someone cancelled).
Both pipes are always read, so a chatty command never blocks on a full pipe.

The job is a ``Process``: ``HostProcess`` for a child of ours (exit fd: a pidfd;
the shell is left unreaped until its tree is dead, so its pid, which is also its
process group id, cannot be reused under us), or ``spawner.SpawnedProcess`` for
a job in a warm sandbox (exit fd: an eventfd its server's reader thread signals).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sandbox.executors import cgroups, proctree
from sandbox.executors.base import OutputSink
from sandbox.executors.streams import LineForwarder
from sandbox.model import Job, Outcome, Status

log = logging.getLogger(__name__)

DRAIN_GRACE_S = 0.5  # reading on after the shell exited and its tree was killed
_READ_SIZE = 64 << 10
_MEMORY_HINTS = (b"MemoryError", b"Cannot allocate memory", b"bad_alloc", b"out of memory")
# strerror(EROFS): what a write in a read-only sandbox prints (the misjudged-safe sign)
_EROFS = b"Read-only file system"
_ENOSPC = b"No space left on device"


class Process(Protocol):
    """A running job as the watch sees it."""

    stdout: int  # read ends, closed by ``reap``
    stderr: int
    exit_fd: int | None  # readable once the shell exited; None: poll ``exited``

    def exited(self) -> bool: ...

    def kill_tree(self) -> None: ...

    def reap(self, patient: bool = True) -> tuple[int, float]:
        """Close our fds, wait for the end; (returncode as Popen gives it, CPU seconds).

        ``patient=False``: the caller waited for ``exited`` (or gave up) already."""
        ...

    def force_end(self) -> None:
        """A killed job's end is overdue: end it by any means (``exited`` becomes true)."""
        ...

    def oom_kills(self) -> int:
        """Processes of this job the kernel killed for its memory limit (0: none, or the
        job has no memory group of its own)."""
        ...


class HostProcess:
    """``bash -c`` (or a bwrap around it) started by us with ``subprocess.Popen``.

    ``group``: the job's pids cgroup, if it has one: whatever is still in it when the
    tree is killed is killed too (even a ``setsid`` child without the marker)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        marker: str,
        pid_namespace: bool,
        group: cgroups.Group | None = None,
    ) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self.proc, self.marker, self.pid_namespace = proc, marker, pid_namespace
        self.group = group
        self.stdout, self.stderr = proc.stdout.fileno(), proc.stderr.fileno()
        try:
            self.exit_fd: int | None = os.pidfd_open(proc.pid)
        except OSError:  # no pidfd (kernel < 5.3): poll instead
            self.exit_fd = None

    def exited(self) -> bool:
        """Has the shell exited? (It stays a zombie: its pid remains ours.)"""
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def kill_tree(self) -> None:
        pid = self.proc.pid
        if self.exited():
            if self.pid_namespace:
                # bwrap's init left with the shell, and the kernel killed the rest of
                # the namespace: no /proc scan needed (it costs ~0.3 ms on a busy host).
                proctree.kill_group(pid)
            else:  # the group and the marker are what is left to find them by
                proctree.kill_tree(pid, self.marker)
        else:  # a live shell still has a walkable tree
            proctree.kill_tree(pid, self.marker, extra=proctree.descendants(pid))
        if self.group is not None:  # one small read when the job left nothing
            self.group.kill_all()

    def oom_kills(self) -> int:
        if self.group is None or self.group.memory_bytes is None:
            return 0
        return self.group.oom_kills()

    def force_end(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # unreaped: the group is still the job's
        if self.group is not None:
            self.group.kill_all()

    def reap(self, patient: bool = True) -> tuple[int, float]:
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        if self.exit_fd is not None:
            os.close(self.exit_fd)
            self.exit_fd = None
        try:
            _, status, rusage = os.wait4(self.proc.pid, 0)
        except ChildProcessError:
            self.proc.returncode = 255
            return 255, 0.0
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        # Popen now believes it was waited for and will never waitpid() a reused pid.
        return self.proc.returncode, rusage.ru_utime + rusage.ru_stime


class JobWatch:
    """One job's state: its output forwarders, deadline, drain grace and end.

    ``advance`` is the loop's top (cancel? timeout? exited? then kill the tree and
    drain for a moment); ``read`` takes what a pipe has. ``loop`` drives one watch
    on the calling thread; ``WatchLoop`` drives many on one thread.
    """

    def __init__(
        self,
        proc: Process,
        job: Job,
        on_output: OutputSink,
        wake_fd: int,
        cancelled: Callable[[], bool],
    ) -> None:
        self.proc, self.job = proc, job
        self.wake_fd, self.cancelled = wake_fd, cancelled
        self.forwarders = [
            LineForwarder("stdout", on_output, job.output_cap),
            LineForwarder("stderr", on_output, job.output_cap),
        ]
        self.open_pipes = dict(zip((proc.stdout, proc.stderr), self.forwarders, strict=True))
        self.stderr_tail = b""
        self.returncode: int | None = None
        self.cpu_used = 0.0
        self.tree_killed = False
        self.reason: str | None = None  # "timeout", "cancel" or None
        self.deadline: float | None = None
        self.stop_at: float | None = None  # set once the tree is dead: drain a little, then stop

    # -- the loop ----------------------------------------------------------------

    def loop_and_finish(self) -> str | None:
        """``loop``, then ``finish`` whatever happened; the loop's reason."""
        try:
            return self.loop()
        finally:
            self.finish()

    def begin(self) -> None:
        timeout_s = self.job.timeout_s
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for fd in self.open_pipes:
            os.set_blocking(fd, False)

    def advance(self, now: float) -> bool:
        """The loop's top: True once the shell is gone (or killed) and output drained."""
        if self.stop_at is None:
            if self.cancelled():
                self.reason = "cancel"
            elif self.deadline is not None and now >= self.deadline:
                self.reason = "timeout"
            if self.reason or self.proc.exited():
                self.kill_tree()  # nothing outlives the shell
                self.stop_at = now + DRAIN_GRACE_S
        return self.stop_at is not None and (not self.open_pipes or now >= self.stop_at)

    def wake_at(self) -> float | None:
        """When ``advance`` must look again even if no fd becomes ready."""
        return self.deadline if self.stop_at is None else self.stop_at

    def loop(self) -> str | None:
        """Run until the shell is gone and output drained; return "timeout", "cancel" or None."""
        self.begin()
        with selectors.PollSelector() as sel:
            for fd in self.open_pipes:
                sel.register(fd, selectors.EVENT_READ)
            sel.register(self.wake_fd, selectors.EVENT_READ)
            if self.proc.exit_fd is not None:
                sel.register(self.proc.exit_fd, selectors.EVENT_READ)
            while True:
                now = time.monotonic()
                if self.advance(now):
                    return self.reason
                until = self.wake_at()
                waits = [] if until is None else [until - now]
                if self.proc.exit_fd is None:
                    waits.append(0.05)
                for key, _ in sel.select(max(0.0, min(waits)) if waits else None):
                    if key.fd not in self.open_pipes or self.read(key.fd):
                        sel.unregister(key.fd)  # exit or wake fd: the loop top looks at the state

    def read(self, fd: int) -> bool:
        """Take what pipe ``fd`` holds; True once it is closed (at its end of file)."""
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return False
        forwarder = self.open_pipes[fd]
        if not data:
            del self.open_pipes[fd]
            forwarder.close()
            return True
        if forwarder.stream == "stderr":
            self.stderr_tail = (self.stderr_tail + data)[-4096:]
        forwarder.feed(data)
        return False

    def kill_tree(self) -> None:
        self.proc.kill_tree()
        self.tree_killed = True

    def finish(self, patient: bool = True) -> None:
        """Kill whatever is left, stop forwarding, reap the shell with its CPU time."""
        self.close_streams()
        self.returncode, self.cpu_used = self.proc.reap(patient)

    def close_streams(self) -> None:
        """Kill whatever is left and stop forwarding (flushing any last partial line)."""
        if not self.tree_killed:
            self.kill_tree()
        for forwarder in self.open_pipes.values():
            forwarder.close()
        self.open_pipes.clear()

    # -- what it meant -------------------------------------------------------------

    def outcome(self, reason: str | None, started: float) -> Outcome:
        code = self.returncode
        assert code is not None
        sig = -code if code < 0 else None
        exit_code = None if sig else code
        status, error = self._verdict(reason, exit_code, sig)
        return Outcome(
            status=status,
            exit_code=exit_code,
            signal=sig,
            started_at=started,
            ended_at=time.time(),
            error=error,
            truncated=any(f.truncated for f in self.forwarders),
            wrote_read_only=(
                self.job.read_only and status is Status.FAILED and _EROFS in self.stderr_tail
            ),
        )

    def _verdict(
        self, reason: str | None, exit_code: int | None, sig: int | None
    ) -> tuple[Status, str | None]:
        if reason == "timeout":
            return Status.TIMED_OUT, f"timed out after {self.job.timeout_s:g} s"
        if reason == "cancel":
            return Status.CANCELLED, None
        if exit_code == 0:
            return Status.SUCCEEDED, None
        if self.proc.oom_kills():
            limit = self.job.limits.memory_bytes or 0
            return Status.OOM_KILLED, f"killed at its memory limit ({limit >> 20} MiB)"
        error = self._limit_hit(exit_code, sig)
        if error is None and sig is not None:
            error = f"killed by {signal.Signals(sig).name}"
        return Status.FAILED, error

    def _limit_hit(self, exit_code: int | None, sig: int | None) -> str | None:
        """Which rlimit ended the command, where that can be told."""

        def died_of(s: signal.Signals) -> bool:
            # A shell reports a child's fatal signal as 128+N (so does bwrap).
            return sig == s or exit_code == 128 + s

        limits = self.job.limits
        cpu_used = self.cpu_used
        if limits.cpu_s is not None and (
            died_of(signal.SIGXCPU) or (died_of(signal.SIGKILL) and cpu_used >= limits.cpu_s)
        ):
            return f"CPU time limit hit ({limits.cpu_s} s)"
        if limits.file_size_bytes is not None and died_of(signal.SIGXFSZ):
            return f"file size limit hit ({limits.file_size_bytes} bytes)"
        if limits.memory_bytes is not None and any(h in self.stderr_tail for h in _MEMORY_HINTS):
            return f"memory limit probably hit (address space {limits.memory_bytes} bytes)"
        if _ENOSPC in self.stderr_tail:
            return "no space left: /tmp is a capped tmpfs (or the disk is full)"
        return None


# -- many jobs, one thread -------------------------------------------------------------------

Done = Callable[[JobWatch, BaseException | None], None]


@dataclass(eq=False)
class _Entry:
    watch: JobWatch
    done: Done
    fds: set[int] = field(default_factory=set)
    end_by: float | None = None  # killed, waiting for its end to be reported until then
    forced: bool = False


class WatchLoop:
    """One thread that watches many jobs: their pipes, exit fds and deadlines (epoll).

    ``add(watch, done)`` hands over a begun job; ``done(watch, error)`` is called on the
    loop's thread once the job is over and reaped (``error``: the loop itself failed on
    it, the job was still killed). ``done`` may ``add`` further jobs: they are taken up
    before the loop sleeps again. ``poke()`` makes every job look at its state (cancels).
    A killed job whose end is not reported within ``reap_timeout_s`` is ``force_end``-ed,
    and given up after as long again. The thread starts on demand and ends when it has
    had nothing to watch for ``idle_s``.
    """

    def __init__(self, reap_timeout_s: float = 5.0, idle_s: float = 10.0) -> None:
        self.reap_timeout_s = reap_timeout_s
        self.idle_s = idle_s
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._lock = threading.Lock()
        self._inbox: list[_Entry] = []
        self._thread: threading.Thread | None = None
        self._entries: set[_Entry] = set()

    def add(self, watch: JobWatch, done: Done) -> None:
        watch.begin()
        entry = _Entry(watch, done)
        with self._lock:
            self._inbox.append(entry)
            thread = self._thread
            if thread is None:
                thread = self._thread = threading.Thread(
                    target=self._run, name="bashfleet-watch", daemon=True
                )
                thread.start()
        if thread is not threading.current_thread():  # the loop takes its own adds anyway
            os.eventfd_write(self.wake_fd, 1)

    def poke(self) -> None:
        os.eventfd_write(self.wake_fd, 1)

    def running(self) -> int:
        with self._lock:
            return len(self._entries) + len(self._inbox)

    def _run(self) -> None:
        idle_since = time.monotonic()
        with selectors.DefaultSelector() as sel:
            sel.register(self.wake_fd, selectors.EVENT_READ, None)
            while True:
                with self._lock:
                    new, self._inbox = self._inbox, []
                    idle = not new and not self._entries
                    if idle and time.monotonic() - idle_since > self.idle_s:
                        self._thread = None
                        return
                    self._entries.update(new)
                for entry in new:
                    self._register(sel, entry)
                timeout = self._timeout(idle_since)
                touched: set[_Entry] = set()
                poked = False
                for key, _ in sel.select(timeout):
                    entry = key.data
                    if entry is None:
                        with contextlib.suppress(BlockingIOError):
                            os.eventfd_read(self.wake_fd)
                        poked = True
                        continue
                    try:
                        if key.fd not in entry.watch.open_pipes or entry.watch.read(key.fd):
                            sel.unregister(key.fd)  # exit fd (one-shot) or a closed pipe
                            entry.fds.discard(key.fd)
                    except Exception as e:  # never let one job stop the loop
                        self._end(sel, entry, e)
                        continue
                    touched.add(entry)
                now = time.monotonic()
                for entry in self._entries if poked else list(self._entries):
                    at = entry.end_by if entry.end_by is not None else entry.watch.wake_at()
                    if poked or (at is not None and now >= at):
                        touched.add(entry)
                busy = bool(self._entries)
                for entry in touched:
                    if entry in self._entries:
                        self._step(sel, entry, now)
                if busy and not self._entries:
                    idle_since = time.monotonic()

    def _register(self, sel: selectors.BaseSelector, entry: _Entry) -> None:
        watch = entry.watch
        fds = [*watch.open_pipes]
        if watch.proc.exit_fd is not None:
            fds.append(watch.proc.exit_fd)
        try:
            for fd in fds:
                sel.register(fd, selectors.EVENT_READ, entry)
                entry.fds.add(fd)
        except Exception as e:
            self._end(sel, entry, e)

    def _timeout(self, idle_since: float) -> float | None:
        with self._lock:
            if self._inbox:
                return 0.0
        if not self._entries:
            return max(0.0, idle_since + self.idle_s - time.monotonic()) + 0.01
        now = time.monotonic()
        soonest: float | None = None
        for entry in self._entries:
            at = entry.end_by if entry.end_by is not None else entry.watch.wake_at()
            if entry.watch.proc.exit_fd is None:  # no exit fd: look every 50 ms
                at = now + 0.05 if at is None else min(at, now + 0.05)
            if at is not None and (soonest is None or at < soonest):
                soonest = at
        return None if soonest is None else max(0.0, soonest - now)

    def _step(self, sel: selectors.BaseSelector, entry: _Entry, now: float) -> None:
        watch = entry.watch
        try:
            if entry.end_by is None:
                if not watch.advance(now):
                    return
                watch.close_streams()
                if not watch.proc.exited():  # killed: wait for its end, without blocking
                    entry.end_by = now + self.reap_timeout_s
                    return
            elif not watch.proc.exited():
                if now < entry.end_by:
                    return
                if not entry.forced:
                    entry.forced = True
                    watch.proc.force_end()
                    entry.end_by = now + self.reap_timeout_s
                    return
            watch.finish(patient=False)
        except Exception as e:
            self._end(sel, entry, e)
            return
        self._end(sel, entry, None)

    def _end(self, sel: selectors.BaseSelector, entry: _Entry, error: BaseException | None) -> None:
        self._entries.discard(entry)
        for fd in entry.fds:
            with contextlib.suppress(KeyError, ValueError, OSError):
                sel.unregister(fd)
        entry.fds.clear()
        if error is not None:
            log.error("watching job %s failed: %s", entry.watch.job.id, error, exc_info=error)
            with contextlib.suppress(Exception):
                entry.watch.finish(patient=False)
        try:
            entry.done(entry.watch, error)
        except Exception:
            log.exception("the end of job %s could not be handed back", entry.watch.job.id)
