"""Finding and killing every process a local job started, without a helper binary.

A job's processes are found three ways, because each alone has holes:

- its process group (the job runs in its own session): catches ``&``, pipelines,
  ``nohup`` and double forks, which all keep the group;
- a marker variable (``BASHFLEET_JOB=<token>``) in the job's environment, which
  every descendant inherits: catches ``setsid`` and daemons, which leave the group
  but keep their environment (read from ``/proc/PID/environ``);
- while the job's shell is alive, its descendant tree (psutil): catches a process
  that both left the group and cleared its environment, as long as it has not
  been orphaned yet.

A process that calls ``setsid`` *and* execs with a scrubbed environment after its
shell exited is not found here; the job's pids cgroup (``cgroups``, where one can be
made) and the bubblewrap path (a pid namespace per job) have no such hole.
Everything is killed with SIGKILL: a job's end is final.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import psutil

MARKER_VAR = "BASHFLEET_JOB"
START_SLACK_S = 2.0  # psutil's create_time() rests on /proc/stat's btime, which can move 1 s


def running_since(pid: int, start: int) -> bool:
    """True when process ``pid`` runs and was started at ``start`` (whole seconds of its
    ``create_time()``, as written into instance ids): a pid alone may have been reused.
    The start may read a second off from another process (btime jitter), hence a slack."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - start) < START_SLACK_S and (
            proc.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


_MARKER_KEY = MARKER_VAR.encode() + b"="


UNSURE = b"\0"  # never a real marker: environ read empty from a live user process
_PF_KTHREAD = 0x00200000


def _settled_without_env(pid: int) -> bool:
    """Is an empty environ final (zombie, kernel thread, gone) rather than a process mid-exec?"""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return True
    return fields[0] in (b"Z", b"X") or bool(int(fields[6]) & _PF_KTHREAD)


def _read_marker(pid: int) -> bytes | None:
    """The job marker in a process's environment; None if it has none; UNSURE if unreadable yet."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:  # gone, or not ours to read
        return None
    if not env:  # between execve's new mm and its environment being set up, it reads empty
        return None if _settled_without_env(pid) else UNSURE
    at = env.find(_MARKER_KEY)
    while at > 0 and env[at - 1] != 0:  # must start a NUL-separated entry
        at = env.find(_MARKER_KEY, at + 1)
    if at < 0:
        return None
    start = at + len(_MARKER_KEY)
    end = env.find(b"\0", start)
    return env[start:] if end < 0 else env[start:end]


class MarkerIndex:
    """pid -> marker, for every process on the host, read once per pid.

    A process's marker can only change when it execs with a new environment, so
    a pid is read when first seen and forgotten when it disappears. A scan lists
    /proc and reads only new pids, which keeps it cheap enough to run at the end
    of every job. A process caught mid-exec reads as UNSURE and is read again by
    later scans for ``unsure_s`` (after that its environment really is empty, as
    with ``env -i``). If scans are far apart a pid might be reused in between,
    so an index older than ``max_age_s`` is rebuilt from scratch.
    """

    def __init__(self, max_age_s: float = 1.0, unsure_s: float = 0.2) -> None:
        self._lock = threading.Lock()
        self._markers: dict[int, bytes | None] = {}
        self._unsure_since: dict[int, float] = {}
        self._scanned_at = 0.0
        self._max_age_s = max_age_s
        self._unsure_s = unsure_s

    def pids_with(self, marker: bytes) -> tuple[list[int], bool]:
        """The pids carrying ``marker``, and whether some process could not be read yet."""
        with self._lock:
            now = time.monotonic()
            if now - self._scanned_at > self._max_age_s:
                self._markers.clear()
                self._unsure_since.clear()
            self._scanned_at = now
            live = {int(name) for name in os.listdir("/proc") if name.isdigit()}
            for pid in self._markers.keys() - live:
                del self._markers[pid]
                self._unsure_since.pop(pid, None)
            for pid in live:
                if pid in self._markers and pid not in self._unsure_since:
                    continue
                seen = _read_marker(pid)
                if seen == UNSURE:
                    since = self._unsure_since.setdefault(pid, now)
                    if now - since <= self._unsure_s:
                        self._markers[pid] = UNSURE
                        continue
                    seen = None  # its environment really is empty (env -i)
                self._unsure_since.pop(pid, None)
                self._markers[pid] = seen
            found = [pid for pid, m in self._markers.items() if m == marker]
            return found, bool(self._unsure_since)


_INDEX = MarkerIndex()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """The live descendant tree of ``pid`` (empty if it is gone)."""
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def kill_tree(
    pgid: int | None, marker: str, *, extra: list[int] | None = None, rounds: int = 5
) -> None:
    """SIGKILL the group ``pgid`` (if any), the pids in ``extra`` and every process with ``marker``.

    ``pgid`` must still be reserved (its leader unreaped) so that it cannot name
    someone else's group. Repeats while new marked processes turn up, since one
    may have forked between the group kill and the scan.
    """
    for pid in extra or ():
        _kill(pid)
    wanted = marker.encode()
    killed: set[int] = set()
    for _ in range(rounds):
        if pgid is not None:
            kill_group(pgid)
        marked, unsure = _INDEX.pids_with(wanted)
        fresh = [pid for pid in marked if pid not in killed]
        if not fresh and not unsure:
            return
        for pid in fresh:
            _kill(pid)
        killed.update(fresh)
        if not fresh:
            time.sleep(0.001)  # let the exec in progress finish, then read it again


def kill_marked(marker: str) -> None:
    """SIGKILL every process carrying ``marker`` (a warm sandbox's job: no group of ours)."""
    kill_tree(None, marker)


def kill_jobs(job_ids: set[str]) -> int:
    """SIGKILL every process whose marker belongs to one of these jobs (any attempt's token).

    Crash recovery knows only the command ids, not the random part of each marker, so
    this matches ``BASHFLEET_JOB=<id>`` and ``BASHFLEET_JOB=<id>.<token>``."""
    prefix = f"{MARKER_VAR}=".encode()
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        for var in env.split(b"\0"):
            if var.startswith(prefix):
                job = var[len(prefix) :].decode(errors="replace").split(".", 1)[0]
                if job in job_ids:
                    _kill(int(entry))
                    killed += 1
                break
    return killed
