"""The local process pool's executor: ``bash -c COMMAND`` on the host, contained.

Each job is spawned with ``subprocess.Popen`` (no ``preexec_fn``: the scheduler
is threaded) as ``[bwrap VIEW --] bash -c COMMAND`` in its own session and
process group, with an allowlisted environment. Its rlimits are set by that
same bash from a ``BASH_ENV`` script handed over on a pipe, or by ``prlimit``
if that self-test fails (see ``rlimits``: measured, BASH_ENV costs nothing,
prlimit ~0.4 ms and a ``ulimit; exec bash`` wrapper ~0.7 ms per command).

Read-only jobs (the safe class) run under bubblewrap when it is installed (see
``bwrap``: read-only host and workspace, private /tmp, data folder and Docker
socket hidden, no network, no capabilities, a pid namespace that dies with the
command). bwrap costs ~3 ms per command, so read-only jobs are spawned inside a
*warm* sandbox, one long-lived bwrap per (workspace, network) with the same view
(see ``spawner``), and take a bwrap of their own only when ``warm=False`` or that
sandbox is unavailable. Writable jobs (``--isolation local``) do not use bwrap.

Every warm sandbox, and every job outside one, runs in a pids cgroup of its own
(see ``cgroups``: a fork bomb fails with EAGAIN at ``pids.max`` and ends by its
timeout; the group is emptied and removed at the end). A job outside the warm
sandboxes joins its group from the same ``BASH_ENV`` script (no exec more), or
through an ``sh`` wrapper where that cannot work; a warm sandbox is started in its
group, so its jobs pay nothing per command.
Outside a pid namespace a job's processes are found through its group, a per-job
marker variable and its descendant tree (see ``proctree``); there, as root, a
command *can* signal bashfleet.

A job is watched over stdout, stderr, an exit fd (a pidfd, or for a warm-sandbox
job its status pipe) and a cancel eventfd, so neither pipe can fill up and block
the command: by the thread that called ``run``, or, for jobs handed over with
``start`` (the warm-sandbox hot path), by the executor's one ``WatchLoop`` thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import ExecutorError
from sandbox.executors import bwrap, cgroups, proctree, rlimits, spawner
from sandbox.executors.base import DoneCallback, OutputSink
from sandbox.executors.environment import command_environment
from sandbox.executors.rootfs import ImageTrees
from sandbox.executors.watch import HostProcess, JobWatch, Process, WatchLoop
from sandbox.model import Job, Limits, Outcome, Status

log = logging.getLogger(__name__)

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# A cancel for a job whose run() has not started yet is honoured when run() starts
# within this long (the scheduler's hand-off race), not by a later retry of it.
REPROBE_S = 5.0  # a failed bubblewrap self-test is tried again after this long
EARLY_CANCEL_TTL_S = 10.0
IMAGE_BASH = "/bin/bash"  # where an image with bash has it (merged /usr or not)
IMAGE_HOME = "/tmp"
# /tmp of a warm sandbox, shared by the safe commands of its workspace running at once
# (a job of its own gets its Limits.tmpfs_bytes, as a container does)
WARM_TMP_BYTES = 256 << 20  # HOME inside a sandbox (its private /tmp), as in a container


@dataclass
class _Running:
    """A job in flight, as seen by ``cancel``."""

    wake_fd: int
    cancelled: bool = False
    own_fd: bool = True  # False: the watch loop's eventfd, shared by its jobs


def _read_all(fd: int) -> bytes:
    """What a pipe holds once its writers are gone."""
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    return b"".join(chunks)


class _HomeDirs:
    """An empty HOME for each job, outside the workspace, without a mkdir per job.

    Each worker thread keeps one directory and empties it after use (a listdir
    when the job wrote nothing there); it is removed when the thread ends.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def take(self) -> str:
        path: str | None = getattr(self._local, "path", None)
        if path is None or not os.path.isdir(path):
            path = tempfile.mkdtemp(prefix="bashfleet-home-")
            self._local.path = path
            self._local.owner = owner = _DirOwner()
            weakref.finalize(owner, shutil.rmtree, path, ignore_errors=True)
        return path

    def give_back(self, path: str) -> None:
        if os.listdir(path):
            shutil.rmtree(path, ignore_errors=True)
            try:
                os.mkdir(path, 0o700)
            except OSError:  # could not empty it: take() makes a fresh one
                self._local.path = None


class _DirOwner:
    """Lives in a thread-local: when the thread ends, the directory goes with it."""


class LocalExecutor:
    """Runs jobs as host processes; see the module docstring.

    ``use_bwrap``: None = bubblewrap for read-only jobs when it is installed and
    passes a self-test; True = require it for read-only jobs (ExecutorError
    otherwise); False = never. Writable jobs never use it.
    ``hidden_paths``: folders the sandbox must not see (bashfleet's data folder;
    ``$BASHFLEET_DATA`` is always added when set).
    ``warm``: read-only jobs share a long-lived sandbox per workspace (``spawner``)
    instead of paying for a bwrap each; ``close()`` ends those sandboxes.
    ``pids``: the process-count limits (``cgroups``) per warm sandbox, and per job outside
    one when its ``Limits.pids`` is None (otherwise that, as for a container).
    ``trees`` and ``image``: read-only jobs see ``image``'s unpacked root filesystem
    (``rootfs``), the workspace at ``/workspace``, as the workspace's owner (the image
    view: what the server always uses); a job that names its workspace's image
    (``Job.image``) sees that image's tree instead, unpacked on its first use. Without
    ``trees``: a read-only view of the host (``bashfleet run`` on the user's own machine
    with no Docker engine).
    """

    name = "local"

    def __init__(
        self,
        use_bwrap: bool | None = None,
        *,
        hidden_paths: tuple[str | Path, ...] = (),
        warm: bool = True,
        pids: cgroups.PidsLimits = cgroups.DEFAULT_LIMITS,
        trees: ImageTrees | None = None,
        image: str = "",
        fallback_uid: int = 1000,
        host_fallback: bool = False,
    ) -> None:
        self._bash = shutil.which("bash", path=SAFE_PATH)
        self._prlimit = shutil.which("prlimit", path=SAFE_PATH)
        binary = shutil.which("bwrap", path=SAFE_PATH) if use_bwrap is not False else None
        if use_bwrap and not binary:
            raise ExecutorError(
                "bubblewrap was requested but is not installed (apt-get install -y bubblewrap)",
                executor=self.name,
                retryable=False,
            )
        data = os.environ.get("BASHFLEET_DATA")
        hidden = [Path(p) for p in (*hidden_paths, *([data] if data else []))]
        self._bwrap = bwrap.BwrapView(binary, hidden) if binary else None
        self._trees = trees
        self._host_fallback = host_fallback  # the CLI: no image tree -> the host view
        self._image = image
        self._images: set[str] = {image} if image else set()  # trees used: kept by prune
        self._has_bash: set[Path] = set()
        self._fallback_uid = fallback_uid
        self._cgroups = cgroups.shared()
        self._pids = pids
        self._spawners = (
            spawner.SpawnerPool(
                self._warm_view,
                groups=lambda: self._cgroups.group(
                    "sandbox", pids.sandbox, memory_bytes=_sandbox_memory()
                ),
            )
            if self._bwrap is not None and warm
            else None
        )
        self._bwrap_problem: str | None = None
        if self._bwrap is None:
            self._bwrap_problem = "disabled" if use_bwrap is False else "not installed"
        self._probed = False
        self._probed_at = 0.0
        self._probe_lock = threading.Lock()
        self._lock = threading.Lock()
        self._resolve_cache: dict[Path, tuple[Path, float]] = {}
        self._running: dict[str, _Running] = {}
        self._early_cancels: dict[str, float] = {}  # job id -> when, for cancel-before-run
        self._bash_env_ok: dict[bool, bool] = {}  # sandboxed? -> BASH_ENV limits self-test
        self._homes = _HomeDirs()
        self._user = pwd.getpwuid(os.geteuid()).pw_name
        self._loop = WatchLoop(reap_timeout_s=spawner.REAP_TIMEOUT_S)
        self._limit_pairs: dict[Limits, tuple[rlimits.Pairs, bytes | None]] = {}
        self._random = b""  # os.urandom in bulk: job markers, 8 bytes each

    # -- what is in force ------------------------------------------------------

    @property
    def usable(self) -> bool:
        """False when read-only jobs are known not to be runnable here now (no bubblewrap,
        a failed self-test, no image tree): the router then sends them to a container.
        Cheap: it never runs a self-test (an unprobed pool counts as usable)."""
        if self._bwrap is None or self._bash is None:
            return False
        if not self._probed:
            return True
        return self._bwrap_problem is None or time.monotonic() - self._probed_at >= REPROBE_S

    @property
    def problem(self) -> str | None:
        """Why read-only jobs cannot run here, if they cannot (for doctor and the dashboard)."""
        if self._bwrap is None:
            return f"bubblewrap {self._bwrap_problem}"
        return self._bwrap_problem

    def prepare(self) -> str | None:
        """Unpack the image and run the self-tests now (blocking); the problem, if any."""
        return None if self._sandbox_ready() else self._bwrap_problem

    @property
    def isolation(self) -> str:
        if self._cgroups.problem is None:
            pids = f"; a pids cgroup per job and per warm sandbox ({self._pids.sandbox} tasks)"
        else:
            pids = f"; no process-count limit ({self._cgroups.problem})"
        if self._sandbox_ready() and self._trees is not None:
            return (
                f"bubblewrap on the image {self._image} (read-only workspace at /workspace, "
                "the workspace owner's uid, pid namespace, no host path) for read-only jobs; "
                f"process group, rlimits and a scrubbed environment for the rest{pids}"
            )
        if self._sandbox_ready():
            return (
                "bubblewrap (read-only workspace, pid namespace) for read-only jobs; "
                f"process group, rlimits and a scrubbed environment for the rest{pids}"
            )
        return (
            "process group only (install bubblewrap for a read-only workspace; "
            f"bubblewrap: {self._bwrap_problem}){pids}"
        )

    def _sandbox_ready(self) -> bool:
        if self._bwrap is None:
            return False
        if self._probed and (
            self._bwrap_problem is None or time.monotonic() - self._probed_at < REPROBE_S
        ):
            return self._bwrap_problem is None
        with self._probe_lock:  # first use, or a failed probe worth trying again
            if not self._probed or (
                self._bwrap_problem is not None and time.monotonic() - self._probed_at >= REPROBE_S
            ):
                try:
                    tree = self._tree()
                except ExecutorError as e:
                    self._bwrap_problem = f"no image tree: {e}"
                else:
                    self._bwrap_problem = self._bwrap.self_test(tree, self._fallback_uid)
                self._probed_at = time.monotonic()
                self._probed = True
        return self._bwrap_problem is None

    # -- the protocol ----------------------------------------------------------

    def warm_up(self, workspace: Path, network: bool = False, image: str = "") -> None:
        """Make the read-only path ready before the first job needs it: start the
        workspace's warm sandbox and run the self-tests (blocking; for a spare thread,
        while the batch is being read and planned). Errors are left for ``run``."""
        if self._bwrap is None or self._bash is None:
            return
        ws = self._resolved(workspace)
        if self._spawners is not None:
            self._spawners.prestart(ws, network, image)
        if self._sandbox_ready():
            self._bash_env_works(sandboxed=True)

    def prune_trees(self, keep: set[str] | None = None) -> None:
        """Remove image trees this pool no longer uses (older ids of its images, others):
        it keeps its default image's, those of the images its jobs used, and ``keep``'s."""
        if self._trees is not None:
            for path in self._trees.prune(self._images | (keep or set())):
                log.info("removed the unused image tree %s", path)

    def close(self) -> None:
        """End the warm sandboxes (a job still running in one dies with it) and any unpack
        under way."""
        if self._spawners is not None:
            self._spawners.close()
        if self._trees is not None:
            self._trees.close()

    def cancel(self, job_id: str) -> None:
        with self._lock:  # held while writing: run() closes wake_fd only under it
            running = self._running.get(job_id)
            if running is None:  # not started yet (or already over): remember briefly
                self._early_cancels[job_id] = time.monotonic()
                while len(self._early_cancels) > 1024:
                    del self._early_cancels[next(iter(self._early_cancels))]
                return
            running.cancelled = True
            os.eventfd_write(running.wake_fd, 1)

    def run(self, job: Job, on_output: OutputSink) -> Outcome:
        workspace = self._workspace(job)
        if job.read_only and self._spawners is not None and not self._probed:
            # starts while the self-tests run
            self._spawners.prestart(workspace, job.network, job.image)
        # the image view (the server): every job, writable or not, runs in its sandbox
        image_view = self._trees is not None and not self._host_fallback
        must = job.read_only or image_view
        sandboxed = must and self._sandbox_ready()
        if must and not sandboxed and (self._bwrap is not None or image_view):
            # Installed but failing (e.g. under heavy load), or no image tree: never run a
            # command without its sandbox; the scheduler routes it elsewhere or retries.
            raise ExecutorError(
                f"the local sandbox is unusable right now: {self.problem or 'not installed'}",
                executor=self.name,
                retryable=True,
            )
        marker = self._marker(job)
        home = IMAGE_HOME if sandboxed else self._homes.take()  # bwrap's /tmp is private
        env = self._environment(job, marker, home)
        running = self._register(job, os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))
        try:
            return self._spawn_and_watch(job, env, workspace, sandboxed, running, marker, on_output)
        finally:
            self._unregister(job, running)
            if not sandboxed:
                self._homes.give_back(home)

    def start(self, job: Job, on_output: OutputSink, on_done: DoneCallback) -> bool:
        """Start a read-only job in its warm sandbox without blocking; False if it cannot.

        The hot path of a batch: no thread of its own, its output and end are watched
        by the executor's one ``WatchLoop`` thread, which calls ``on_done`` (never from
        within ``start``). False (nothing started) when the job needs anything slow or
        unusual first (self-tests, a sandbox still starting, a bwrap of its own, a
        cancel that came before it, a writable job): then ``run`` it instead.
        """
        if not (job.read_only and self._spawners is not None and self._bash is not None):
            return False
        if not (self._probed and self._bwrap_problem is None) or job.id in self._early_cancels:
            return False
        limits, script = self._limits(job.limits)
        if limits and self._bash_env_ok.get(True) is not True:
            return False
        if job.image and self._trees is not None and not self._trees.ready(job.image):
            return False  # its tree is not unpacked yet: run() does that, on a worker thread
        workspace = self._resolved(job.workspace)  # (the sandbox's key checks it is a directory)
        try:
            marker = self._marker(job)
            env = self._environment(job, marker, IMAGE_HOME)
        except ExecutorError:
            return False  # run() reports it
        argv = [self._shell(), "-c", job.command]
        running = self._register(job, self._loop.wake_fd, own_fd=False)
        try:
            spawned = self._spawners.spawn(
                workspace, job.network, argv, env, script, marker, wait=False, image=job.image
            )
        except (spawner.Unavailable, OSError):
            self._unregister(job, running)
            return False
        started = time.time()

        def done(watch: JobWatch, error: BaseException | None) -> None:
            self._unregister(job, running)
            if error is not None:
                on_done(ExecutorError(f"watching the job failed: {error}", executor=self.name))
            elif spawned.lost is not None and watch.reason is None:
                on_done(
                    ExecutorError(
                        f"the warm sandbox died while the command ran ({spawned.lost})",
                        executor=self.name,
                    )
                )
            else:
                on_done(watch.outcome(watch.reason, started))

        self._loop.add(self._watch(spawned, job, running, on_output), done)
        return True

    def _register(self, job: Job, wake_fd: int, own_fd: bool = True) -> _Running:
        running = _Running(wake_fd=wake_fd, own_fd=own_fd)
        with self._lock:
            if job.id in self._running:
                if own_fd:
                    os.close(wake_fd)
                raise ExecutorError(f"job {job.id} is already running", executor=self.name)
            cancelled_at = self._early_cancels.pop(job.id, None)
            running.cancelled = cancelled_at is not None and (
                time.monotonic() - cancelled_at < EARLY_CANCEL_TTL_S
            )
            self._running[job.id] = running
        return running

    def _unregister(self, job: Job, running: _Running) -> None:
        with self._lock:
            del self._running[job.id]
            if running.own_fd:
                os.close(running.wake_fd)

    def _limits(self, limits: Limits) -> tuple[rlimits.Pairs, bytes | None]:
        """``rlimits.wanted`` and the warm sandbox's limits script, remembered per Limits
        value (a batch shares one)."""
        known = self._limit_pairs.get(limits)
        if known is None:
            pairs = rlimits.wanted(limits)
            script = rlimits.ulimit_script(pairs, spawner.SCRIPT_FD) if pairs else None
            known = (pairs, script)
            if len(self._limit_pairs) > 64:
                self._limit_pairs.clear()
            self._limit_pairs[limits] = known
        return known

    def _marker(self, job: Job) -> str:
        """The job's marker: its id and 64 unguessable bits (fetched 4 KiB at a time)."""
        with self._lock:
            if not self._random:
                self._random = os.urandom(4096)
            bits, self._random = self._random[:8], self._random[8:]
        return f"{job.id}.{bits.hex()}"

    # -- building the process ----------------------------------------------------

    def _resolved(self, path: Path) -> Path:
        """``path.resolve()``, remembered for a second: a batch of a thousand commands in
        one workspace need not walk its symlinks a thousand times. A stale answer is still
        a real directory resolved without following anything planted since."""
        now = time.monotonic()
        hit = self._resolve_cache.get(path)
        if hit is not None and now - hit[1] < 1.0:
            return hit[0]
        real = path.resolve()
        if len(self._resolve_cache) > 256:
            self._resolve_cache.clear()
        self._resolve_cache[path] = (real, now)
        return real

    def _workspace(self, job: Job) -> Path:
        if self._bash is None:
            raise ExecutorError("bash is not installed on this host", executor=self.name)
        workspace = self._resolved(job.workspace)
        if not workspace.is_dir():
            raise ExecutorError(
                f"workspace {job.workspace} does not exist or is not a directory",
                executor=self.name,
                retryable=False,
            )
        return workspace

    def _tree(self, image: str = "") -> Path | None:
        """The root filesystem of ``image`` (default: the pool's) for the image view
        (None: the host view). ExecutorError, not retryable, for an image without bash."""
        trees = self._trees
        if trees is None:
            return None
        image = image or self._image
        try:
            tree = trees.tree(image)
        except (OSError, ExecutorError) as e:
            if self._host_fallback:
                log.info("no image tree (%s): a read-only view of the host", e)
                self._trees = None
                return None
            if isinstance(e, ExecutorError):
                raise
            raise ExecutorError(f"cannot unpack {image}: {e}", executor=self.name) from e
        if tree not in self._has_bash:
            if not any(os.path.lexists(tree / d / "bash") for d in ("bin", "usr/bin")):
                raise ExecutorError(
                    f"image {image} cannot run commands: it has no bash "
                    "(bashfleet runs every command with bash)",
                    executor=self.name,
                    retryable=False,
                )
            self._has_bash.add(tree)
            self._images.add(image)
        return tree

    def _shell(self) -> str:
        """bash: the image's in the image view, else the host's."""
        if self._trees is not None:
            return IMAGE_BASH
        assert self._bash is not None
        return self._bash

    def _identity(self, workspace: Path) -> bwrap.Identity:
        return bwrap.workspace_identity(workspace, self._fallback_uid)

    def _view(
        self,
        workspace: Path,
        read_only: bool,
        network: bool,
        status_fd: int | None = None,
        *,
        drop: bool = True,
        tmp_bytes: int | None = WARM_TMP_BYTES,
        image: str = "",
    ) -> list[str]:
        """bwrap's argv up to ``--``, then (``drop``) what makes the job its user."""
        assert self._bwrap is not None
        tree = self._tree(image)
        who = self._identity(workspace) if tree is not None else None
        try:
            argv = self._bwrap.argv(
                workspace,
                tree=tree,
                who=who,
                read_only=read_only,
                network=network,
                status_fd=status_fd,
                tmp_bytes=tmp_bytes,
            )
            return [*argv, *self._bwrap.drop(tree, who)] if drop else argv
        except (ValueError, OSError) as e:
            raise ExecutorError(f"cannot build the sandbox: {e}", executor=self.name) from e

    def _warm_view(self, workspace: Path, network: bool, image: str = "") -> spawner.View:
        """What a warm sandbox for ``workspace`` (and ``image``) runs: its bwrap argv, the
        python3 its server runs on, and what must stay the same for a server to be reused."""
        try:
            tree = self._tree(image)
            argv = self._view(workspace, read_only=True, network=network, drop=False, image=image)
        except ExecutorError as e:
            raise spawner.Unavailable(str(e)) from e
        if tree is None:
            assert self._bwrap is not None
            hidden = [h.resolve() for h in self._bwrap.hidden]
            python = spawner.host_python(hidden)
            return spawner.View(argv, python, tuple(str(os.path.isdir(h)) for h in hidden))
        if not (tree / "usr" / "bin" / "python3").exists():
            raise spawner.Unavailable(f"{image or self._image} has no /usr/bin/python3")
        who = self._identity(workspace)
        ids = (str(who.uid), str(who.gid))
        leave_root = os.geteuid() == 0 and who.uid != 0
        return spawner.View(argv, "/usr/bin/python3", (str(tree), *ids), ids if leave_root else ())

    def _environment(self, job: Job, marker: str, home: str) -> dict[str, str]:
        for key, value in job.env:
            if not key or "=" in key or "\0" in key + value:
                raise ExecutorError(f"invalid environment variable {key!r}", retryable=False)
        if self._trees is not None and home == IMAGE_HOME:
            # the image view: exactly what a container of the workspace gets
            return command_environment(job.env, marker)
        env = {"PATH": SAFE_PATH, "HOME": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        env |= {"TERM": "dumb", "USER": self._user, "LOGNAME": self._user}
        if "TZ" in os.environ:
            env["TZ"] = os.environ["TZ"]
        env.update(job.env)
        env[proctree.MARKER_VAR] = marker  # last: a job cannot hide from the tree kill
        return env

    def _spawn(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        limits: rlimits.Pairs,
        via_bash_env: bool,
        pass_fds: tuple[int, ...] = (),
        group: cgroups.Group | None = None,
        sandboxed: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start the job in its own session, its limits set and its pids cgroup joined
        before any of it runs (in a bwrap of its own /sys is read-only: it joins before).

        Closes ``pass_fds`` (our copies) once the child has them.
        """
        join = group.join_step() if group is not None and via_bash_env and not sandboxed else None
        if via_bash_env and (limits or join):
            r, w = os.pipe()  # the script is tiny: it fits in the pipe, the write cannot block
            if sandboxed:  # bash reopens it as /dev/fd/N, maybe as another uid (the image view)
                os.fchmod(r, 0o444)
            os.write(w, rlimits.ulimit_script(limits, r, join))
            os.close(w)
            env = {**env, "BASH_ENV": f"/dev/fd/{r}"}
            pass_fds = (*pass_fds, r)
        elif limits:
            if self._prlimit is None:
                raise ExecutorError("cannot set resource limits: BASH_ENV failed, no prlimit")
            argv = [*rlimits.prlimit_argv(self._prlimit, limits), *argv]
        if group is not None and join is None:
            argv = [*group.enter_argv(), *argv]  # one exec more, off the warm path
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                start_new_session=True,
                pass_fds=pass_fds,
                bufsize=0,
            )
        except OSError as e:
            raise ExecutorError(f"cannot start bash: {e}", executor=self.name) from e
        finally:
            for fd in pass_fds:
                os.close(fd)

    def _bash_env_works(self, sandboxed: bool) -> bool:
        """Self-test, once per mode: does bash apply a BASH_ENV limits script here?"""
        with self._lock:
            known = self._bash_env_ok.get(sandboxed)
        if known is not None:
            return known
        probe = rlimits.wanted(Limits(cpu_s=500, memory_bytes=None, file_size_bytes=None))
        ws = Path(tempfile.mkdtemp(prefix="bashfleet-probe-"))
        try:
            assert self._bash is not None
            script = 'ulimit -S -t; ulimit -H -t; echo "${BASH_ENV-unset}"'
            argv = [self._shell() if sandboxed else self._bash, "-c", script]
            if sandboxed:
                os.chmod(ws, 0o755)
                argv = [*self._view(ws, read_only=True, network=False), *argv]
            proc = self._spawn(
                argv, {"PATH": SAFE_PATH}, ws, probe, via_bash_env=True, sandboxed=sandboxed
            )
            out, _ = proc.communicate(timeout=10)
            ok = out == b"500\n501\nunset\n"
        except (OSError, subprocess.SubprocessError, ExecutorError):
            ok = False
        finally:
            shutil.rmtree(ws, ignore_errors=True)
        with self._lock:
            self._bash_env_ok[sandboxed] = ok
        return ok

    # -- watching it ---------------------------------------------------------------

    def _spawn_and_watch(
        self,
        job: Job,
        env: dict[str, str],
        workspace: Path,
        sandboxed: bool,
        running: _Running,
        marker: str,
        on_output: OutputSink,
    ) -> Outcome:
        started = time.time()
        if running.cancelled:
            return Outcome(Status.CANCELLED, started_at=started, ended_at=started)
        limits, _script = self._limits(job.limits)
        assert self._bash is not None
        argv = [self._shell(), "-c", job.command]
        if sandboxed and job.read_only and self._spawners is not None:
            outcome = self._run_warm(job, argv, env, workspace, limits, running, marker, on_output)
            if outcome is not None:
                return outcome
        group = self._cgroups.group(
            "job", job.limits.pids or self._pids.job, memory_bytes=job.limits.memory_bytes
        )
        wants_script = bool(limits) or (group is not None and not sandboxed)
        via_bash_env = wants_script and self._bash_env_works(sandboxed)
        status_r, status_w = os.pipe() if sandboxed else (-1, -1)
        try:
            if sandboxed:
                view = self._view(
                    workspace,
                    job.read_only,
                    job.network,
                    status_fd=status_w,
                    tmp_bytes=job.limits.tmpfs_bytes,
                    image=job.image,
                )
                argv = [*view, *argv]
            keep = (status_w,) if sandboxed else ()
            proc = self._spawn(argv, env, workspace, limits, via_bash_env, keep, group, sandboxed)
            host = HostProcess(proc, marker, sandboxed, group)
            watch = self._watch(host, job, running, on_output)
            reason = watch.loop_and_finish()
            came_up = not sandboxed or bwrap.came_up(_read_all(status_r))
            if reason is None and not came_up and not host.oom_kills():
                # (the OOM killer may pick bwrap itself: then the job was over its memory)
                tail = watch.stderr_tail.decode(errors="replace").strip()
                raise ExecutorError(f"bubblewrap could not set up the sandbox: {tail}")
            return watch.outcome(reason, started)
        finally:
            if sandboxed:
                os.close(status_r)
            if group is not None:
                group.remove()

    def _run_warm(
        self,
        job: Job,
        argv: list[str],
        env: dict[str, str],
        workspace: Path,
        limits: rlimits.Pairs,
        running: _Running,
        marker: str,
        on_output: OutputSink,
    ) -> Outcome | None:
        """Run the job in the warm sandbox of its workspace; None if it cannot take it."""
        assert self._spawners is not None
        if limits and not self._bash_env_works(sandboxed=True):
            return None  # a warm sandbox sets limits the BASH_ENV way only
        script = self._limits(job.limits)[1]
        try:
            spawned = self._spawners.spawn(
                workspace, job.network, argv, env, script, marker, image=job.image
            )
        except spawner.Unavailable as e:
            log.debug("job %s: a bwrap of its own (%s)", job.id, e)
            return None
        started = time.time()
        watch = self._watch(spawned, job, running, on_output)
        reason = watch.loop_and_finish()
        if spawned.lost is not None and reason is None:
            raise ExecutorError(
                f"the warm sandbox died while the command ran ({spawned.lost})",
                executor=self.name,
            )
        return watch.outcome(reason, started)

    def _watch(self, proc: Process, job: Job, running: _Running, on_output: OutputSink) -> JobWatch:
        return JobWatch(proc, job, on_output, running.wake_fd, lambda: running.cancelled)


def _sandbox_memory() -> int:
    """A warm sandbox's memory limit: every safe job of one workspace at once."""
    import psutil

    return int(psutil.virtual_memory().total * cgroups.SANDBOX_MEMORY_SHARE)


def warming(workspace: Path, trees: Path | None = None) -> LocalExecutor:
    """A local pool whose sandbox for ``workspace`` warms up on a spare thread meanwhile
    (the ~50 ms of bubblewrap start and self-tests overlap reading and planning a batch).

    ``trees``: where image trees are unpacked (``bashfleet run``): safe commands see the
    sandbox image, as containers do, when a Docker engine answers, and a read-only view
    of the host on a machine without one (the CLI runs on the user's own machine)."""
    from sandbox.image import default_image

    # a workspace of root's (your own folder, as root) is read as root, with no capability:
    # containers run it as uid 1000 (and cannot write it: `bashfleet run` warns); the
    # portal's workspaces always belong to uid 1000
    local = LocalExecutor(
        trees=ImageTrees(trees) if trees is not None else None,
        image=default_image(),
        fallback_uid=0,
        host_fallback=True,
    )
    threading.Thread(
        target=local.warm_up, args=(workspace,), name="bashfleet-warm-up", daemon=True
    ).start()
    return local
