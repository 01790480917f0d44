"""A process-count limit for the local pool: the pids cgroup controller.

``RLIMIT_NPROC`` does not bind root (and counts per uid, not per job), so a fork
bomb that lands in the local pool (a misclassified command, or anything run with
``--isolation local``) could take the host's whole pid space. Instead every warm
sandbox and every job that runs outside one gets a pids cgroup of its own::

    <pids hierarchy>/<bashfleet's own cgroup>/bashfleet/<pid>-<start time>/   pids.max INSTANCE
        sandbox-N/   pids.max SANDBOX   one warm sandbox (all its jobs share it)
        job-N/       pids.max Limits.pids (else JOB)   one job outside the warm sandboxes

A fork past ``pids.max`` fails with EAGAIN inside that group only; the command then
ends by its timeout or its exit, and the rest of the host (other jobs, other
workspaces, bashfleet itself) is not starved. The group is nested under bashfleet's
own cgroup, so a limit around bashfleet itself (systemd's ``TasksMax=``) still holds.

A process must be in its group *before* it can fork (no ``preexec_fn``: the caller is
threaded), so it joins on its own, before it runs anything of the job's:

- a warm sandbox is started as ``sh -c 'echo $$ > GROUP/cgroup.procs && exec "$@"'
  sh bwrap ...`` (``enter_argv``): bwrap and all below it inherit the group; one exec
  more per *sandbox*, nothing per command;
- a job outside the sandboxes joins from its ``BASH_ENV`` limits script (``rlimits``:
  the very bash that runs the command, before the command; no exec more), or, where
  that cannot work (a bwrap of its own: /sys is read-only in there; the prlimit
  fallback), through the same ``sh`` wrapper.

A job that cannot join does not run (exit 126). At a job's or sandbox's end every task
still in its group is killed (this also catches what the process-tree kill cannot
name: a ``setsid`` child that scrubbed its environment) and the group is removed.
Groups of a bashfleet that died are killed and removed at the next start.

Where no pids hierarchy is writable (not root, read-only /sys, no pids controller) the
pool runs without the limit and says so once in the log; ``bashfleet doctor`` reports it.
cgroup v1 (a ``pids`` hierarchy) and v2 (the unified hierarchy with ``pids`` available;
there groups are made under its root, the only place processes may sit beside groups
with controllers) are both handled. A job outside bubblewrap runs as the same user as
bashfleet and could, as root, move itself out of its group: the limit is against
accidents (fork bombs), not against a hostile command, which belongs in Docker.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from sandbox.executors.proctree import running_since

log = logging.getLogger(__name__)

# The limits, in one place (tasks: processes and threads).
JOB_PIDS_MAX = 512  # one job outside the warm sandboxes, unless its Limits.pids says otherwise
SANDBOX_PIDS_MAX = 2048  # one warm sandbox: every job of one workspace at once
INSTANCE_PIDS_MAX = 8192  # all of this bashfleet process's local jobs together (pid_max is 32768)

# memory: all local jobs of this bashfleet together may hold this share of the host's RAM
# (tmpfs pages they write included), so the host always keeps the rest
INSTANCE_MEMORY_SHARE = 0.75
SANDBOX_MEMORY_SHARE = 0.5  # one warm sandbox (every safe job of one workspace at once)

GROUP_DIR = "bashfleet"
KILL_WAIT_S = 2.0  # how long ``kill_all`` keeps killing a group that is not empty yet
_ENTER = 'echo $$ > "$0" && exec "$@"'
_ENTER2 = 'echo $$ > "$0" && echo $$ > "$1" && shift && exec "$@"'


@dataclass(frozen=True, slots=True)
class PidsLimits:
    job: int = JOB_PIDS_MAX
    sandbox: int = SANDBOX_PIDS_MAX


DEFAULT_LIMITS = PidsLimits()


class Group:
    """One pids cgroup (and, where the memory controller is there, a memory cgroup of the
    same name): a warm sandbox's or a job's."""

    def __init__(self, owner: PidsCgroups, path: Path, memory: Path | None = None) -> None:
        self._owner = owner
        self.path = path
        self.memory = memory  # cgroup v1: a group in the memory hierarchy; v2: None
        self.memory_bytes: int | None = None
        self.procs = str(path / "cgroup.procs")

    def enter_argv(self) -> list[str]:
        """An argv prefix that puts the process in this group, then execs the rest."""
        if self.memory is not None:
            return ["/bin/sh", "-c", _ENTER2, self.procs, str(self.memory / "cgroup.procs")]
        return ["/bin/sh", "-c", _ENTER, self.procs]

    def join_step(self) -> str:
        """A shell step that puts the current shell (``$$``) in this group."""
        step = f"echo $$ > {self.procs}"  # our own path: [A-Za-z0-9/._-] only (checked)
        if self.memory is not None:
            step += f" && echo $$ > {self.memory / 'cgroup.procs'}"
        return step

    def oom_kills(self) -> int:
        """Processes the kernel killed in this group for its memory limit."""
        where = self.memory or self.path
        for name in ("memory.oom_control", "memory.events"):
            try:
                text = (where / name).read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip().isdigit():
                    return int(value)
        return 0

    def current(self) -> int:
        """Tasks charged to the group now (zombies included); -1 if it is gone."""
        try:
            return int((self.path / "pids.current").read_text())
        except (OSError, ValueError):
            return -1

    def pids(self) -> list[int]:
        try:
            with open(self.procs, "rb") as f:
                return [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            return []

    def kill_all(self, wait_s: float = KILL_WAIT_S) -> bool:
        """SIGKILL every task in the group until none is left; True if it is empty.

        A forking process may add one between a read and the kills, so it reads again
        until the group is empty (a killed task cannot fork any more)."""
        return self._owner.kill_all(self.path, wait_s)

    def remove(self) -> None:
        """Kill what is left and remove the group (later, if it does not empty at once)."""
        self._owner.remove(self.path)
        if self.memory is not None:  # emptied with the pids group: the same tasks
            self._owner.remove(self.memory)


class PidsCgroups:
    """This process's parent group for the local pool, and the groups in it.

    ``problem`` is None when groups can be made; otherwise why not (then ``group``
    returns None and the pool runs without a process-count limit).
    """

    def __init__(self, root: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self._pending: list[Path] = []  # groups whose removal must be tried again
        self.version = 0
        self.base: Path | None = None  # .../bashfleet/<instance>
        self.memory_base: Path | None = None  # the same in the v1 memory hierarchy
        self.problem: str | None = None
        self.memory_problem: str | None = None
        try:
            self._setup(root)
        except OSError as e:
            self.problem = f"cannot create a pids cgroup: {e}"
            self.base = None
        except _NoPids as e:
            self.problem = str(e)
            self.base = None
        if self.base is not None:
            self._setup_memory(root)
            atexit.register(self.close)

    # -- setting up ----------------------------------------------------------------

    def _setup(self, root: Path | None) -> None:
        if root is None:
            root, self.version = _find_hierarchy()
        else:
            self.version = 2 if (root / "cgroup.controllers").exists() else 1
        parent = root / GROUP_DIR
        if self.version == 2:
            _enable_pids(root)
        me = psutil.Process()
        base = parent / f"{me.pid}-{int(me.create_time())}"
        if not set(str(base)) <= _SAFE_CHARS:
            raise _NoPids(f"the cgroup path {base} holds characters it may not")
        for attempt in range(3):  # another bashfleet may remove an empty parent meanwhile
            parent.mkdir(exist_ok=True)
            if self.version == 2:
                _enable_pids(parent)
            if attempt == 0:
                _remove_stale(self, parent)
            try:
                base.mkdir(exist_ok=True)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        (base / "pids.max").write_text(str(INSTANCE_PIDS_MAX))
        if self.version == 2:
            _enable_pids(base)
        self.base = base

    def _setup_memory(self, root: Path | None) -> None:
        """Memory limits beside the pids ones (v1: a hierarchy of its own; v2: the same
        groups with the memory controller enabled). Without it: rlimits only, and a note."""
        assert self.base is not None
        total = psutil.virtual_memory().total
        try:
            if self.version == 2:
                for level in (self.base.parent.parent, self.base.parent, self.base):
                    _enable(level, "memory")
                (self.base / "memory.max").write_text(str(int(total * INSTANCE_MEMORY_SHARE)))
                return
            where = _find_memory_hierarchy() if root is None else None
            if where is None:
                self.memory_problem = "no memory cgroup hierarchy is mounted"
                return
            base = where / GROUP_DIR / self.base.name
            (where / GROUP_DIR).mkdir(exist_ok=True)
            _remove_stale(self, where / GROUP_DIR)
            base.mkdir(exist_ok=True)
            (base / "memory.limit_in_bytes").write_text(str(int(total * INSTANCE_MEMORY_SHARE)))
            self.memory_base = base
        except OSError as e:
            self.memory_problem = f"cannot create a memory cgroup: {e}"

    def _memory_group(self, name: str, memory_bytes: int | None) -> Path | None:
        """The memory half of a new group (v1), or its limit in the pids group (v2)."""
        if memory_bytes is None or self.memory_problem is not None:
            return None
        if self.version == 2:
            assert self.base is not None
            path = self.base / name
            (path / "memory.max").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):
                (path / "memory.swap.max").write_text("0")
            return None
        if self.memory_base is None:
            return None
        path = self.memory_base / name
        path.mkdir()
        (path / "memory.limit_in_bytes").write_text(str(memory_bytes))
        with contextlib.suppress(OSError):  # without swap accounting there is no memsw file
            (path / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
        return path

    # -- groups ----------------------------------------------------------------------

    def group(self, kind: str, limit: int, memory_bytes: int | None = None) -> Group | None:
        """A new group ``kind-N`` capped at ``limit`` tasks and, where the memory
        controller is there, ``memory_bytes`` (None: no limit available)."""
        if self.base is None:
            return None
        if self._pending:
            self._retry_pending()
        with self._lock:
            self._seq += 1
            path = self.base / f"{kind}-{self._seq}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(limit))
        except OSError as e:
            with contextlib.suppress(OSError):
                path.rmdir()
            log.warning("cannot create the pids cgroup %s: %s", path, e)
            return None
        try:
            memory = self._memory_group(path.name, memory_bytes)
        except OSError as e:
            log.warning("no memory limit for %s: %s", path, e)
            memory = None
        group = Group(self, path, memory)
        if memory_bytes is not None and (memory is not None or self.version == 2):
            group.memory_bytes = memory_bytes
        return group

    def kill_all(self, path: Path, wait_s: float = KILL_WAIT_S) -> bool:
        if self.version == 2 and (path / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (path / "cgroup.kill").write_text("1")
        procs = path / "cgroup.procs"
        deadline = time.monotonic() + wait_s
        killed: set[int] = set()
        while True:
            try:
                pids = [int(p) for p in procs.read_bytes().split()]
            except FileNotFoundError:
                return True
            except (OSError, ValueError):
                return False
            if not pids:
                return True
            fresh = [p for p in pids if p not in killed]
            for pid in fresh:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            killed.update(fresh)
            if time.monotonic() >= deadline:
                return False
            if not fresh:
                time.sleep(0.002)  # killed, not gone yet

    def remove(self, path: Path) -> None:
        if not self._remove_now(path, wait_s=KILL_WAIT_S):
            with self._lock:
                self._pending.append(path)

    def _remove_now(self, path: Path, wait_s: float) -> bool:
        self.kill_all(path, wait_s)
        try:
            path.rmdir()
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno != errno.EBUSY:
                log.warning("cannot remove the pids cgroup %s: %s", path, e)
            return False
        return True

    def _retry_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        left = [p for p in pending if not self._remove_now(p, wait_s=0.0)]
        if left:
            with self._lock:
                self._pending.extend(left)

    def close(self) -> None:
        """Remove every group of this process (at exit; a live sandbox's tasks are killed)."""
        for base in (self.memory_base, self.base):
            if base is not None:
                self._remove_instance(base)

    def _remove_instance(self, base: Path) -> None:
        with contextlib.suppress(OSError):
            for child in base.iterdir():
                if child.is_dir():
                    self._remove_now(child, wait_s=0.5)
        with contextlib.suppress(OSError):
            base.rmdir()
            base.parent.rmdir()  # if no other bashfleet uses it: leave the host as it was


class _NoPids(Exception):
    pass


_SAFE_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-")


def _mounts() -> tuple[dict[str, tuple[str, str]], str | None]:
    """v1 controller -> (mount point, mount root), and the v2 mount point."""
    v1: dict[str, tuple[str, str]] = {}
    v2: str | None = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, after = left.split(), right.split()
            if len(fields) < 5 or len(after) < 3:
                continue
            if after[0] == "cgroup":
                for controller in after[2].split(","):
                    v1.setdefault(controller, (_unescape(fields[4]), _unescape(fields[3])))
            elif after[0] == "cgroup2" and v2 is None:
                v2 = _unescape(fields[4])
    return v1, v2


def _v1_own_dir(controller: str, mounts: dict[str, tuple[str, str]]) -> Path | None:
    """cgroup v1: this process's own group in ``controller``'s hierarchy (where ours go)."""
    if controller not in mounts:
        return None
    mount, mount_root = mounts[controller]
    rel = _own_cgroups().get(controller, "/")
    if mount_root != "/" and rel.startswith(mount_root):
        rel = rel[len(mount_root) :]
    where = Path(mount) / rel.lstrip("/")
    return where if where.is_dir() else Path(mount)


def _find_hierarchy() -> tuple[Path, int]:
    """The directory where this process's pids groups go, and the cgroup version."""
    v1, v2 = _mounts()
    pids = _v1_own_dir("pids", v1)
    if pids is not None:
        return pids, 1
    if v2 is not None:
        try:
            available = (Path(v2) / "cgroup.controllers").read_text().split()
        except OSError:
            available = []
        if "pids" in available:
            return Path(v2), 2
        raise _NoPids("the cgroup v2 hierarchy does not offer the pids controller")
    raise _NoPids("no pids cgroup hierarchy is mounted")


def _own_cgroups() -> dict[str, str]:
    """controller -> this process's cgroup path (v1 lines only)."""
    own: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) == 3 and parts[1]:
                for controller in parts[1].split(","):
                    own[controller] = parts[2]
    return own


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")


def _enable_pids(path: Path) -> None:
    """cgroup v2: let the groups below ``path`` use the pids controller."""
    _enable(path, "pids")


def _enable(path: Path, controller: str) -> None:
    """cgroup v2: let the groups below ``path`` use ``controller``."""
    control = path / "cgroup.subtree_control"
    if controller not in control.read_text().split():
        control.write_text(f"+{controller}")


def _find_memory_hierarchy() -> Path | None:
    """cgroup v1: where this process's memory groups go (below its own memory cgroup)."""
    return _v1_own_dir("memory", _mounts()[0])


def _instance_alive(name: str) -> bool:
    pid, _, start = name.partition("-")
    if not (pid.isdigit() and start.isdigit()):
        return False
    return running_since(int(pid), int(start))


def _remove_stale(owner: PidsCgroups, parent: Path) -> None:
    """Kill and remove the groups of a bashfleet that is gone (it crashed, or was killed)."""
    for instance in parent.iterdir():
        if not instance.is_dir() or _instance_alive(instance.name):
            continue
        for child in instance.iterdir():
            if child.is_dir():
                owner._remove_now(child, wait_s=0.5)
        if owner._remove_now(instance, wait_s=0.5):
            log.info("removed the pids cgroup of a bashfleet that is gone: %s", instance)


_SHARED: PidsCgroups | None = None
_SHARED_LOCK = threading.Lock()


def shared() -> PidsCgroups:
    """This process's groups (made on first use; logs once if there can be none)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = PidsCgroups()
            if _SHARED.problem is not None:
                log.warning(
                    "no process-count limit for the local pool (a fork bomb there can "
                    "exhaust the host's pids): %s",
                    _SHARED.problem,
                )
        return _SHARED


def probe() -> str | None:
    """For ``bashfleet doctor``: None if a pids group can be made here, else why not."""
    cgroups = shared()
    if cgroups.problem is not None:
        return cgroups.problem
    group = cgroups.group("probe", 1)
    if group is None:
        return "cannot create a pids cgroup"
    group.remove()
    return None
