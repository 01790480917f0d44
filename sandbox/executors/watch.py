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

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Protocol

from sandbox.executors import proctree
from sandbox.executors.base import OutputSink
from sandbox.executors.streams import LineForwarder
from sandbox.model import Job, Outcome, Status

DRAIN_GRACE_S = 0.5  # reading on after the shell exited and its tree was killed
_READ_SIZE = 64 << 10
_MEMORY_HINTS = (b"MemoryError", b"Cannot allocate memory", b"bad_alloc", b"out of memory")


class Process(Protocol):
    """A running job as the watch sees it."""

    stdout: int  # read ends, closed by ``reap``
    stderr: int
    exit_fd: int | None  # readable once the shell exited; None: poll ``exited``

    def exited(self) -> bool: ...

    def kill_tree(self) -> None: ...

    def reap(self) -> tuple[int, float]:
        """Close our fds, wait for the end; (returncode as Popen gives it, CPU seconds)."""
        ...


class HostProcess:
    """``bash -c`` (or a bwrap around it) started by us with ``subprocess.Popen``."""

    def __init__(self, proc: subprocess.Popen[bytes], marker: str, pid_namespace: bool) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self.proc, self.marker, self.pid_namespace = proc, marker, pid_namespace
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

    def reap(self) -> tuple[int, float]:
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

    # -- the loop ----------------------------------------------------------------

    def loop_and_finish(self) -> str | None:
        """``loop``, then ``finish`` whatever happened; the loop's reason."""
        try:
            return self.loop()
        finally:
            self.finish()

    def loop(self) -> str | None:
        """Run until the shell is gone and output drained; return "timeout", "cancel" or None."""
        timeout_s = self.job.timeout_s
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        reason: str | None = None
        stop_at: float | None = None  # set once the tree is dead: drain a little more, then stop
        with selectors.PollSelector() as sel:
            for fd in self.open_pipes:
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ)
            sel.register(self.wake_fd, selectors.EVENT_READ)
            if self.proc.exit_fd is not None:
                sel.register(self.proc.exit_fd, selectors.EVENT_READ)
            while True:
                now = time.monotonic()
                if stop_at is None:
                    if self.cancelled():
                        reason = "cancel"
                    elif deadline is not None and now >= deadline:
                        reason = "timeout"
                    if reason or self.proc.exited():
                        self.kill_tree()  # nothing outlives the shell
                        stop_at = now + DRAIN_GRACE_S
                if stop_at is not None and (not self.open_pipes or now >= stop_at):
                    return reason
                until = deadline if stop_at is None else stop_at
                waits = [] if until is None else [until - now]
                if self.proc.exit_fd is None:
                    waits.append(0.05)
                for key, _ in sel.select(max(0.0, min(waits)) if waits else None):
                    if key.fd in self.open_pipes:
                        self._read(key.fd, sel)
                    else:  # exit fd or wake fd: the loop top looks at the state
                        sel.unregister(key.fd)

    def _read(self, fd: int, sel: selectors.BaseSelector) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        forwarder = self.open_pipes[fd]
        if not data:
            sel.unregister(fd)
            del self.open_pipes[fd]
            forwarder.close()
            return
        if forwarder.stream == "stderr":
            self.stderr_tail = (self.stderr_tail + data)[-4096:]
        forwarder.feed(data)

    def kill_tree(self) -> None:
        self.proc.kill_tree()
        self.tree_killed = True

    def finish(self) -> None:
        """Kill whatever is left, stop forwarding, reap the shell with its CPU time."""
        if not self.tree_killed:
            self.kill_tree()
        for forwarder in self.open_pipes.values():
            forwarder.close()
        self.open_pipes.clear()
        self.returncode, self.cpu_used = self.proc.reap()

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
        return None
