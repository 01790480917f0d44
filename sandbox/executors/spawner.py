"""Warm sandboxes: one long-lived bubblewrap per (workspace, network) that spawns commands.

bwrap costs 2.4-4.5 ms per command here, more than the command itself (``bash -c
true`` is 1.3 ms), so read-only jobs pay it once per sandbox instead:

    bwrap <the view of bwrap.BwrapView, unchanged> -- python3 -I -S -c SERVER_SOURCE FD

In the image view the server runs on the image's own ``/usr/bin/python3`` (3.9 or
newer), as the job's user; an image without it has no warm sandbox (a bwrap per
command: correct, a few ms slower each).

The server holds one end of a SOCK_SEQPACKET socketpair. Per job the host sends a
JSON request (argv, environment, marker, the BASH_ENV limits script) with the
job's stdout/stderr pipe write ends (SCM_RIGHTS); the server starts the command
with ``posix_spawn`` (a vfork: a fork of the Python server costs ~0.5 ms more):
``setsid``, /dev/null and the two pipes on 0-2, the limits script on fd 3 (the
same self-tested ``BASH_ENV`` mechanism as ``rlimits``), nothing else inherited,
an empty signal mask, default SIGPIPE/SIGXFSZ, cwd the workspace (bwrap's
``--chdir``). It watches each shell with a pidfd; when one exits (left unreaped,
so its pid, group and session stay reserved) it kills the job's leftovers, reaps
it and writes ``{"status": raw wait status, "cpu": s}`` to the job's own status pipe
(sent with its stdout/stderr), then closes it: the job's watcher learns of the exit
without any other thread, and an end of file without a status means the server died.
``{"kill": id}`` (timeout, cancel) kills the shell, its group and the rest.

The server is the namespace's child subreaper, so when a shell exits its
children become the server's: if the server's only children are job shells
(one read of ``/proc/ME/task/ME/children``), the job left nothing, which is the
common case. Otherwise the leftovers are found in the sandbox's own small /proc:
the job's session, its process group, its marker variable (``BASHFLEET_JOB``),
the descendants of all those, and any orphan that left both its session and its
environment (no job in flight claims it: it is killed at the next job's end,
even if it came from a job still running).

The server is made non-dumpable (jobs run as the same uid: they must not ptrace
it or read its memory). If the host closes the socket the server exits; bwrap's
init then leaves and the kernel kills the whole pid namespace; ``--die-with-parent``
ties bwrap to the host thread that started it (a thread that lives as long as
the server: PDEATHSIG follows the parent *thread*).

What differs from a sandbox per command: jobs of one workspace that run at the
same time share the sandbox's /tmp (HOME; the server empties it whenever no job
is in flight) and its pid/ipc/uts/net namespaces, so they can see, and as the
same uid signal, each other (and the server: a job that kills it makes the jobs
in flight there fail with a retryable ``ExecutorError``; the next job starts a
new server; one that stops it stalls them until their timeouts). Nothing
outside the sandbox becomes visible, and the view is the same (a server is
keyed by the workspace's path and inode and by which hidden folders exist).

Host side: ``SpawnerPool`` starts servers lazily (the first job's self-tests run
while it starts), one reader thread each (it starts the bwrap, waits for the
server's "ready", notices its death, closes it after ``IDLE_S`` without jobs). A server that cannot
start is not retried for ``RETRY_AFTER_S``; the executor then uses a bwrap per
command (``Unavailable``), as it does for a command too large for one request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.executors import cgroups, proctree

log = logging.getLogger(__name__)

IDLE_S = 60.0  # a server without jobs for this long is closed
MAX_SERVERS = 16  # warm sandboxes at once; past it the least recently used idle one closes
RETRY_AFTER_S = 30.0  # after a server failed to start, per-command bwrap for this long
START_TIMEOUT_S = 10.0
REAP_TIMEOUT_S = 5.0  # after a kill, how long the server may take to report the exit
MAX_REQUEST = 60 << 10  # larger requests (huge commands) take the per-command path
_RECV_SIZE = 64 << 10
SCRIPT_FD = 3  # where a job's BASH_ENV limits script is (``rlimits.ulimit_script``)

SERVER_SOURCE = r"""
import ctypes, json, os, selectors, signal, socket, sys

if len(sys.argv) > 3:  # root with CAP_SETUID/SETGID/SETPCAP only: become the job's user
    uid, gid = int(sys.argv[2]), int(sys.argv[3])
    for cap in range(64):  # an empty bounding set (PR_CAPBSET_DROP)
        ctypes.CDLL(None).prctl(24, cap, 0, 0, 0)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # clears every capability
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE 0: jobs may not ptrace us or read our memory
    sys.exit("bashfleet spawner: prctl(PR_SET_DUMPABLE) failed")
if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER: orphans of every job come to us
    sys.exit("bashfleet spawner: prctl(PR_SET_CHILD_SUBREAPER) failed")
ME = os.getpid()
CHILDREN = "/proc/%d/task/%d/children" % (ME, ME)
TMP_SKELETON = set(os.listdir("/tmp"))  # e.g. the parents of a workspace under /tmp
MARKER_KEY = b"BASHFLEET_JOB="
jobs = {}  # job id -> {"shell": pid, "marker": bytes, "pidfd": fd}
shells = {}  # shell pid -> job id


def marker_of(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            env = f.read()
    except OSError:
        return None
    for entry in env.split(b"\0"):
        if entry.startswith(MARKER_KEY):
            return entry[len(MARKER_KEY):]
    return None


def only_shells_below():
    # After a shell's exit its children are ours (we are the subreaper): if all our children
    # are job shells, that job left nothing behind. One small read instead of a /proc listdir.
    try:
        with open(CHILDREN, "rb") as f:
            return all(int(pid) in shells for pid in f.read().split())
    except (OSError, ValueError):
        return False


def others():
    # the sandbox's processes but init, us and the job shells (a listdir, nothing read)
    return [
        int(name)
        for name in os.listdir("/proc")
        if name.isdigit() and int(name) not in shells and int(name) not in (1, ME)
    ]


def scan(pids):
    # pid -> (ppid, pgrp, session, zombie)
    procs = {}
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            procs[pid] = (int(fields[1]), int(fields[2]), int(fields[3]), fields[0] == b"Z")
        except (OSError, ValueError, IndexError):
            continue
    return procs


def kill_leftovers(job_id, rounds=10):
    # SIGKILL the job's processes: its session, its group, its marker, their descendants,
    # and any orphan that left both session and environment (no live job claims it).
    job = jobs[job_id]
    shell = job["shell"]
    for _ in range(rounds):
        if job.get("killing"):  # unreaped, so these still name the job's shell and group
            for kill in (os.kill, os.killpg):
                try:
                    kill(shell, signal.SIGKILL)
                except OSError:
                    pass
        pids = others()
        if not pids:
            return  # only job shells: nothing left (the common case: one listdir)
        procs = scan(pids)
        live_sids = {j["shell"] for i, j in jobs.items() if i != job_id}
        live_markers = {j["marker"] for i, j in jobs.items() if i != job_id}
        targets = set()
        for pid, (ppid, pgrp, sid, zombie) in procs.items():
            if zombie:
                if ppid == ME:
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass
                continue
            if sid == shell or pgrp == shell:
                targets.add(pid)
                continue
            if sid in live_sids or pgrp in live_sids:
                continue
            marker = marker_of(pid)
            if marker == job["marker"] or (ppid == ME and marker not in live_markers):
                targets.add(pid)
        children = {}
        for pid, (ppid, _, _, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        todo = list(targets) + ([shell] if job.get("killing") else [])
        while todo:
            pid = todo.pop()
            targets.add(pid)
            todo.extend(c for c in children.get(pid, ()) if c not in targets)
        targets.discard(shell)
        if not targets:
            return
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def report(fd, msg):
    # the job's own status pipe: one small write (atomic), then EOF
    try:
        os.write(fd, json.dumps(msg).encode())
    except OSError:
        pass
    os.close(fd)


def spawn(req, fds, status, sel):
    out, err = fds
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out, 1),
        (os.POSIX_SPAWN_DUP2, err, 2),
    ]
    env = req["env"]
    script_r = None
    if req.get("script"):
        script_r, w = os.pipe()  # the script is tiny: the write cannot block
        os.write(w, req["script"].encode())
        os.close(w)
        actions.append((os.POSIX_SPAWN_DUP2, script_r, 3))
        env = dict(env, BASH_ENV="/dev/fd/3")
    try:
        shell = os.posix_spawn(
            req["argv"][0],
            req["argv"],
            env,
            file_actions=actions,
            setsid=True,
            setsigmask=(),
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )
    except OSError as e:
        report(status, {"spawn_error": str(e)})
        return
    finally:
        if script_r is not None:
            os.close(script_r)
    pidfd = os.pidfd_open(shell)
    jobs[req["id"]] = {
        "shell": shell,
        "marker": req["marker"].encode(),
        "pidfd": pidfd,
        "status": status,
    }
    shells[shell] = req["id"]
    sel.register(pidfd, selectors.EVENT_READ, req["id"])


def ended(job_id, sel):
    job = jobs[job_id]
    if not only_shells_below():
        kill_leftovers(job_id)  # the shell is a zombie still: its pid, group, session stay ours
    sel.unregister(job["pidfd"])
    os.close(job["pidfd"])
    _, status, ru = os.wait4(job["shell"], 0)
    del jobs[job_id], shells[job["shell"]]
    if not jobs:  # a quiet moment: /tmp (HOME) is empty again, as in a fresh sandbox
        wipe_tmp()
    report(job["status"], {"status": status, "cpu": ru.ru_utime + ru.ru_stime})


def wipe_tmp():
    # only what jobs made: the skeleton bwrap made for the mounts under /tmp stays
    try:
        names = [n for n in os.listdir("/tmp") if n not in TMP_SKELETON]
    except OSError:
        return
    if names:
        import shutil

        for name in names:
            path = "/tmp/" + name
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass


def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    sock.set_inheritable(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sock.send(json.dumps({"ready": ME}).encode())
    while True:
        for key, _ in sel.select():
            if key.data is not None:
                ended(key.data, sel)
                continue
            try:
                msg, fds, _, _ = socket.recv_fds(sock, RECV_SIZE, 4)
            except OSError:
                msg, fds = b"", []
            for fd in fds:  # a job never inherits another's fds
                os.set_inheritable(fd, False)
            if not msg:
                return
            req = json.loads(msg)
            try:
                if "kill" in req:
                    if req["kill"] in jobs:
                        jobs[req["kill"]]["killing"] = True
                        kill_leftovers(req["kill"])
                elif len(fds) == 3:
                    spawn(req, fds[:2], fds.pop(), sel)  # the status pipe is the job's now
            finally:
                for fd in fds:
                    os.close(fd)


main()
""".replace("RECV_SIZE", str(_RECV_SIZE))


# workspace, network, image, dev, inode, view
_Key = tuple[str, bool, str, int, int, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class View:
    """A warm sandbox's command line up to ``--``, the python3 inside that runs the
    server, and what must not change for a running server to be reused (the image
    tree and uid, or which hidden folders exist)."""

    argv: list[str]
    python: str
    key: tuple[str, ...]
    identity: tuple[str, ...] = ()  # uid, gid: the server leaves root for them first


def host_python(hidden: list[Path]) -> str:
    """A python3 that the host view can see (it hides /run and the data folder)."""
    for exe in (os.path.realpath(sys.executable), "/usr/bin/python3"):
        path = Path(exe)
        if path.is_file() and not any(path.is_relative_to(h) for h in hidden):
            return exe
    raise Unavailable("no python3 visible inside the sandbox")


class Unavailable(Exception):
    """No warm sandbox for this job: run it with a bwrap of its own."""


class NotReady(Unavailable):
    """The warm sandbox is still starting (only when the caller asked not to wait)."""


class SpawnedProcess:
    """A job running in a warm sandbox, as ``watch.JobWatch`` sees it (``watch.Process``).

    ``exit_fd`` is the read end of the job's status pipe: the server writes the exit
    status there and closes it; an end of file without a status means the server (and
    with it the namespace) is gone. Used by one thread at a time (the job's watch).
    """

    def __init__(self, server: _Server, seq: int, marker: str, status_fd: int) -> None:
        self._server, self.seq, self.marker = server, seq, marker
        self.stdout = self.stderr = -1
        self.exit_fd: int | None = status_fd  # non-blocking
        self.status: int | None = None
        self.cpu = 0.0
        self.lost: str | None = None  # why the server could not report the exit
        self._done = False
        self._kill_sent = False

    def oom_kills(self) -> int:
        return 0  # the sandbox has one memory group for all its jobs: rlimits per job

    def exited(self) -> bool:
        if not self._done:
            self._read_status()
        return self._done

    def _read_status(self) -> None:
        fd = self.exit_fd
        if fd is None:
            return
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._done = True
        self._server.job_ended()
        try:
            msg = json.loads(data) if data else None
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            self.lost = self._server.dead or "the warm sandbox exited"
            return
        self.status, self.lost = msg.get("status"), msg.get("spawn_error")
        self.cpu = float(msg.get("cpu", 0.0))

    def kill_tree(self) -> None:
        if not self.exited():
            if not self._kill_sent:
                self._kill_sent = True
                self._server.send({"kill": self.seq})
            # belt and braces: the host sees the namespace's processes too
            proctree.kill_marked(self.marker)
        elif self.lost is not None:  # the namespace died with its server; check anyway
            proctree.kill_marked(self.marker)

    def force_end(self) -> None:
        """The server did not report a killed job's end: kill the whole sandbox."""
        self._server.abort("it did not report a killed job's end")

    def wait_exit(self, timeout_s: float) -> bool:
        """Block until the server reports the exit (or is gone); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self.exited():
            left = deadline - time.monotonic()
            if left <= 0 or self.exit_fd is None:
                return False
            poller = select.poll()
            poller.register(self.exit_fd, select.POLLIN)
            poller.poll(left * 1000)
        return True

    def reap(self, patient: bool = True) -> tuple[int, float]:
        """(returncode as Popen gives it, CPU seconds); ends the server if it does not answer.

        ``patient=False``: the caller did its waiting (``wait_exit``/``force_end``) already.
        """
        for fd in (self.stdout, self.stderr):
            if fd >= 0:
                os.close(fd)
        self.stdout = self.stderr = -1
        if patient and not self.wait_exit(REAP_TIMEOUT_S):
            self.force_end()
            self.wait_exit(REAP_TIMEOUT_S)
        self.discard()
        if self.status is None:
            return -9, self.cpu
        return os.waitstatus_to_exitcode(self.status), self.cpu

    def discard(self) -> None:
        """Close the status pipe."""
        if self.exit_fd is not None:
            os.close(self.exit_fd)
            self.exit_fd = None
        if not self._done:
            self._done = True
            self._server.job_ended()


class _Server:
    """One warm sandbox: its bwrap process, its socket and its reader thread."""

    def __init__(
        self,
        argv: list[str],
        key: _Key,
        group: Callable[[], cgroups.Group | None] | None = None,
        identity: tuple[str, ...] = (),
    ) -> None:
        self.key = key
        self._make_group = group
        self.lock = threading.Lock()
        self._send_lock = threading.Lock()  # the socket is closed only under it: no fd reuse races
        self.ready = threading.Event()
        self.dead: str | None = None
        self.closing = False
        self.last_used = time.monotonic()
        self.pid: int | None = None
        self._inflight = 0  # jobs sent whose status pipe has not been read yet
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._proc: subprocess.Popen[bytes] | None = None
        argv = [*argv, str(theirs.fileno()), *identity]
        self._thread = threading.Thread(
            target=self._run, args=(argv, theirs), name=f"bashfleet-spawner {key[0]}", daemon=True
        )
        self._thread.start()

    # -- the job side --------------------------------------------------------------

    def spawn(
        self,
        seq: int,
        request: bytes,
        fds: tuple[int, int, int],
        status_r: int,
        marker: str,
        wait: bool = True,
    ) -> SpawnedProcess:
        """Send one job with the write ends of its stdout, stderr and status pipes.
        Raises Unavailable if the server cannot take it (nothing ran), NotReady if it is
        starting and ``wait`` is False."""
        if not wait and not self.ready.is_set():
            raise NotReady("the warm sandbox is starting")
        if not self.ready.wait(START_TIMEOUT_S) or self.dead:
            raise Unavailable(self.dead or "the warm sandbox did not start in time")
        with self.lock:
            if self.dead or self.closing:
                raise Unavailable(self.dead or "closing")
            self._inflight += 1
            self.last_used = time.monotonic()
        try:
            with self._send_lock:
                socket.send_fds(self._sock, [request], list(fds))
        except OSError as e:
            self.job_ended()
            raise Unavailable(f"cannot reach the warm sandbox: {e}") from e
        return SpawnedProcess(self, seq, marker, status_r)

    def idle_now(self) -> bool:
        with self.lock:
            return self._inflight == 0

    def job_ended(self) -> None:
        with self.lock:
            self._inflight -= 1
            self.last_used = time.monotonic()

    def send(self, message: dict[str, Any]) -> None:
        with self._send_lock, contextlib.suppress(OSError):
            self._sock.send(json.dumps(message).encode())

    # -- ending it -------------------------------------------------------------------

    def close(self) -> None:
        """Ask the server to end (it exits when its socket closes); jobs in flight die."""
        with self.lock:
            self.closing = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def abort(self, why: str) -> None:
        """Kill the whole sandbox now (the outer bwrap: the namespace goes with it)."""
        log.warning("warm sandbox for %s: killing it: %s", self.key[0], why)
        with self.lock:
            self.dead = self.dead or why
            proc = self._proc
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
        self.close()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # -- the reader thread -------------------------------------------------------------

    def _run(self, argv: list[str], theirs: socket.socket) -> None:
        why = "the warm sandbox exited"
        group = self._make_group() if self._make_group is not None else None
        if group is not None:  # bwrap, its namespace and every job in it: one pids cgroup
            argv = [*group.enter_argv(), *argv]
        try:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    pass_fds=(theirs.fileno(),),
                    env={},
                    start_new_session=True,
                )
            except OSError as e:
                why = f"cannot start bwrap: {e}"
                return
            finally:
                theirs.close()
            with self.lock:
                self._proc = proc
            why = self._read_replies(proc)
        finally:
            if group is not None:
                group.remove()  # kills anything the namespace's end left
            self._lost(why)

    def _read_replies(self, proc: subprocess.Popen[bytes]) -> str:
        self._sock.settimeout(1.0)
        try:
            while True:
                try:
                    data = self._sock.recv(_RECV_SIZE)
                except TimeoutError:
                    if not self.ready.is_set() and time.monotonic() - self.last_used > 2 * (
                        START_TIMEOUT_S
                    ):
                        return "the warm sandbox did not start"
                    if self._idle():
                        return "idle"
                    continue
                except OSError as e:
                    return f"the warm sandbox's socket failed: {e}"
                if not data:
                    return self._exit_reason(proc)
                self._dispatch(json.loads(data))
        finally:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)

    def _exit_reason(self, proc: subprocess.Popen[bytes]) -> str:
        if self.closing:
            return "closed"
        try:
            _, err = proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            err = b""
        text = (err or b"").decode(errors="replace").strip()[-500:]
        return f"the warm sandbox exited ({proc.returncode}){': ' + text if text else ''}"

    def _dispatch(self, msg: dict[str, Any]) -> None:
        # Exits go to each job's own status pipe; the socket only says when the server is up.
        if "ready" in msg:
            self.pid = proc.pid if (proc := self._proc) else None
            self.ready.set()

    def _idle(self) -> bool:
        with self.lock:
            if not self._inflight and time.monotonic() - self.last_used > IDLE_S:
                self.closing = True
                return True
            return False

    def _lost(self, why: str) -> None:
        # Jobs in flight see their status pipes close (the server is gone with its namespace).
        with self.lock:
            self.dead = self.dead or why
        self.ready.set()
        with self._send_lock:
            self._sock.close()
        if why not in ("idle", "closed"):
            log.warning("warm sandbox for %s ended: %s", self.key[0], why)


class SpawnerPool:
    """Warm sandboxes by (workspace real path, network, image), started on first use: a
    sandbox serves one workspace only, never two (its path, device and inode are its key)."""

    def __init__(
        self,
        view: Callable[[Path, bool, str], View],
        groups: Callable[[], cgroups.Group | None] | None = None,
    ) -> None:
        self._view = view  # (workspace, network, image) -> View; raises Unavailable
        self._groups = groups  # a new pids cgroup for each sandbox (None: no limit)
        self._lock = threading.Lock()
        self._servers: dict[_Key, _Server] = {}
        self._failed: dict[_Key, float] = {}
        self._seq = 0
        self._closed = False

    def spawn(
        self,
        workspace: Path,
        network: bool,
        argv: list[str],
        env: dict[str, str],
        limits_script: bytes | None,
        marker: str,
        wait: bool = True,
        image: str = "",
    ) -> SpawnedProcess:
        """Start ``argv`` in the warm sandbox for ``workspace``; Unavailable: use bwrap per job.

        ``wait=False``: raise NotReady instead of waiting for a sandbox that is starting."""
        view = self._view(workspace, network, image)
        key = self._key(workspace, network, image, view)
        with self._lock:
            if self._closed:
                raise Unavailable("closed")
            self._seq += 1
            seq = self._seq
        request = json.dumps(
            {
                "id": seq,
                "argv": argv,
                "env": env,
                "marker": marker,
                "script": (limits_script or b"").decode(),
            }
        ).encode()
        if len(request) > MAX_REQUEST:
            raise Unavailable("the command is too large for the warm sandbox")
        server = self._server(key, view)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        # the status pipe: a few bytes written once by the server, never a blocking write
        st_r, st_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            handle = server.spawn(seq, request, (out_w, err_w, st_w), st_r, marker, wait=wait)
        except Unavailable as e:
            for fd in (out_r, err_r, st_r):
                os.close(fd)
            with self._lock:
                if (
                    not isinstance(e, NotReady)
                    and self._servers.get(key) is server
                    and server.dead not in (None, "idle")
                ):
                    self._failed[key] = time.monotonic()
            raise
        finally:
            for fd in (out_w, err_w, st_w):  # the server has its own copies now
                os.close(fd)
        handle.stdout, handle.stderr = out_r, err_r
        return handle

    def prestart(self, workspace: Path, network: bool, image: str = "") -> None:
        """Start the sandbox for ``workspace`` now (its ~40 ms overlap the caller's self-tests)."""
        with contextlib.suppress(Unavailable, OSError):
            view = self._view(workspace, network, image)
            self._server(self._key(workspace, network, image, view), view)

    def _key(self, workspace: Path, network: bool, image: str, view: View) -> _Key:
        # A new server if the workspace was replaced or the view changed (a new image
        # tree, another owner, a hidden folder that appeared).
        path = str(workspace)
        st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise Unavailable(f"{path} is not a directory")
        return (path, network, image, st.st_dev, st.st_ino, view.key)

    def _server(self, key: _Key, view: View) -> _Server:
        with self._lock:
            if self._closed:
                raise Unavailable("closed")
            server = self._servers.get(key)
            if server is not None and not server.dead and not server.closing:
                return server
            failed_at = self._failed.get(key)
            if failed_at is not None and time.monotonic() - failed_at < RETRY_AFTER_S:
                raise Unavailable("the warm sandbox failed to start recently")
            self._reap_idle()
            self._make_room()
            argv = [*view.argv, view.python, "-I", "-S", "-c", SERVER_SOURCE]
            server = self._servers[key] = _Server(argv, key, self._groups, view.identity)
            return server

    def _make_room(self) -> None:
        """At MAX_SERVERS, close the least recently used server with no job in flight;
        if every one is busy, this job takes a bwrap of its own (Unavailable)."""
        if len(self._servers) < MAX_SERVERS:
            return
        idle = [(s.last_used, k) for k, s in self._servers.items() if s.idle_now()]
        if not idle:
            raise Unavailable(f"{MAX_SERVERS} warm sandboxes are busy")
        _, key = min(idle)
        self._servers.pop(key).close()

    def _reap_idle(self) -> None:
        for key, server in list(self._servers.items()):
            if server.dead or server.closing:
                del self._servers[key]

    def servers(self) -> list[_Server]:
        with self._lock:
            return [s for s in self._servers.values() if not s.dead]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.close()
        for server in servers:
            server.join(5.0)
