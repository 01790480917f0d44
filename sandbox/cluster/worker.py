"""A worker node: `bashfleet worker --broker URL --name NAME [--data DIR]`.

It takes signed jobs from its Celery queue (``bashfleet.node.NAME``; a message holds one
signed body or a list of them, each signed on its own), refuses any whose signature, age,
addressee or nonce does not hold up (and reports the refusal, which the control plane
audits) while the others of its message run, runs the rest with its own local pool or
Docker engine (the same executors as the embedded mode, workspaces under its own data
folder), and streams output and outcomes back through the ``bashfleet:results`` Redis
stream, in order, with byte offsets. A heartbeat key with load figures says it is alive.

A job is acknowledged once it has started (late acknowledgement covers the time between
fetching and starting); one started on a node that then dies is never started again:
its nonce is spent, and a redelivery is refused. Running jobs are journalled in
DATA/cluster/running, so that a restarted node kills what its predecessor left behind
(processes by their job marker, containers by this node's label) and reports them
interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from sandbox.cluster import wire
from sandbox.cluster.signing import (
    MAX_AGE_S,
    ForgedMessage,
    entry_mac,
    field_bytes,
    load_node_key,
    seal,
    sign,
    verify,
)
from sandbox.errors import BashfleetError, ExecutorError
from sandbox.executors.base import BatchAware, Executor, close_batch_quietly
from sandbox.executors.local import LocalExecutor
from sandbox.executors.proctree import kill_jobs
from sandbox.executors.rootfs import ImageTrees, trees_dir
from sandbox.image import SANDBOX_UID, default_image
from sandbox.model import Job, Outcome, Status
from sandbox.routing import open_docker
from sandbox.scheduler import default_limits

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
NODE_NAME = wire.NODE_NAME


class NodeWorker:
    def __init__(self, name: str, broker: str, data_dir: Path, *, isolation: str = "auto") -> None:
        if not NODE_NAME.fullmatch(name):
            raise BashfleetError(f"invalid node name {name!r}: 1 to 64 letters, digits, '_' or '-'")
        self.name = name
        self.broker = broker
        self.key = load_node_key(name)  # its own: a job for another node fails here
        self.timeout_s = wire.node_timeout_s()
        self.data = data_dir.resolve()
        self.root = self.data / "workspaces"
        self.journal = self.data / "cluster" / "running"
        me = psutil.Process()
        self.instance = f"node.{name}.{me.pid}.{int(me.create_time())}"
        self.redis = wire.redis_client(broker)
        self.local = LocalExecutor(
            trees=ImageTrees(trees_dir(self.data)),
            image=default_image(None),
            fallback_uid=SANDBOX_UID,
        )
        self.docker: Executor | None = None
        self.docker_why = "isolation is local"
        if isolation != "local":
            self.docker, self.docker_why = open_docker(self.instance)
        self.limits = {c.value: n for c, n in default_limits(None).items()}
        self.slots = sum(self.limits.values())
        self._running: dict[str, Executor] = {}
        self._ended: set[str] = set()  # ended elsewhere (the control plane said so)
        self._lock = threading.Lock()
        self._out: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="node-job")
        self._stop = threading.Event()
        self._stopping = False

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Prepare the sandbox, clean up after a predecessor, start reporting."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.journal.mkdir(parents=True, exist_ok=True)
        from sandbox.cluster.node_files import sweep

        sweep(self.root, self.data)  # what a transfer cut short by a crash left
        problem = self.local.prepare()
        if problem:
            log.warning("node %s: local sandbox unusable (%s)", self.name, problem)
        threading.Thread(target=self._send_loop, name="node-results", daemon=True).start()
        self.recover()
        self._beat()
        threading.Thread(target=self._beat_loop, name="node-heartbeat", daemon=True).start()

    def recover(self) -> list[str]:
        """Kill what a dead predecessor on this node left running; report it interrupted."""
        left = [p.name for p in self.journal.iterdir() if JOB_ID.fullmatch(p.name)]
        if left:
            kill_jobs(set(left))
        if self.docker is not None:
            mine = f"node.{self.name}."
            with contextlib.suppress(BashfleetError):
                self.docker.recover_orphans(  # type: ignore[attr-defined]
                    all_instances=True,
                    alive=lambda owner: not owner.startswith(mine) or owner == self.instance,
                )
        why = f"node {self.name} restarted while it ran; it is not run again"
        for job_id in left:
            self._emit({"t": "done", "job": job_id, "outcome": _interrupted(why)}, journal=job_id)
        if left:
            log.warning("node %s: killed %d commands left by its predecessor", self.name, len(left))
        return left

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop: what still runs ends interrupted (and is reported so)."""
        self._stopping = True
        with self._lock:
            running = list(self._running.items())
        for job_id, ex in running:
            with contextlib.suppress(ExecutorError):
                ex.cancel(job_id)
        deadline = time.monotonic() + grace_s
        while self._running and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        with contextlib.suppress(Exception):
            self.redis.delete(wire.NODE_KEY + self.name)
        self._out.put(None)
        deadline = time.monotonic() + grace_s
        while not self._out.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        for closing in (self.local, self.docker):
            close = getattr(closing, "close", None)
            if callable(close):
                close()

    # --- messages -----------------------------------------------------------------------

    def handle(self, envelope: object) -> None:
        """One message from the queue (the Celery task's body): a signed envelope, or a
        list of them (the control plane's outbox coalesces what it releases together)."""
        if isinstance(envelope, list):
            self.handle_many(envelope)
            return
        try:
            body = self._check(envelope)
        except ForgedMessage as e:
            self._refuse(envelope, e)
            return
        self._dispatch(body)

    def handle_many(self, envelopes: list[object]) -> None:
        """A list of envelopes: each is verified on its own (a forged one is refused and
        reported, the others run), their nonces are spent in one Redis round trip, and
        the jobs among them are journalled before any starts (a node killed halfway
        reports the rest interrupted when it restarts; their redelivery is refused)."""
        if not 1 <= len(envelopes) <= wire.MAX_BODIES:
            self._refuse(None, ForgedMessage(f"{len(envelopes)} bodies in one message"))
            return
        good: list[tuple[object, dict[str, Any]]] = []
        for envelope in envelopes:
            try:
                good.append((envelope, self._verified(envelope)))
            except ForgedMessage as e:
                self._refuse(envelope, e)
        try:
            fresh = self._spend([body for _e, body in good])
        except ForgedMessage as e:
            for envelope, _body in good:
                self._refuse(envelope, e)
            return
        bodies = []
        for (envelope, body), new in zip(good, fresh, strict=True):
            if new:
                bodies.append(body)
            else:
                self._refuse(envelope, ForgedMessage(_REPLAYED))
        for body in bodies:
            job_id = str(body.get("id", ""))
            if body.get("kind") == "run" and JOB_ID.fullmatch(job_id):
                with contextlib.suppress(OSError):
                    (self.journal / job_id).touch()
        for body in bodies:
            try:
                self._dispatch(body)
            except Exception as e:  # one body must not keep the others of its message from running
                log.exception("node %s: cannot handle %s", self.name, body.get("id"))
                job_id = str(body.get("id", ""))
                if body.get("kind") == "run" and JOB_ID.fullmatch(job_id):
                    self._done(job_id, ExecutorError(f"node {self.name}: {e}", retryable=False))

    def _refuse(self, envelope: object, e: ForgedMessage) -> None:
        job = envelope.get("id") if isinstance(envelope, dict) else None
        log.warning("node %s refused a message: %s", self.name, e)
        self._emit({"t": "refused", "reason": str(e), "job": job if isinstance(job, str) else ""})

    def _dispatch(self, body: dict[str, Any]) -> None:
        """One verified body, whatever message it came in, by its kind."""
        kind = body.get("kind")
        if kind == "run":
            self._start(body)
        elif kind == "cancel":
            self._cancel(str(body.get("id", "")))
        elif kind == "kill":
            ids = {str(i) for i in body.get("ids", []) if JOB_ID.fullmatch(str(i))}
            with self._lock:
                self._ended |= ids
            for job_id in ids:
                self._cancel(job_id)
            kill_jobs(ids)
        elif kind == "close_batch":  # the batch ended: its container goes now
            batch = str(body.get("batch", ""))
            if JOB_ID.fullmatch(batch):
                for ex in (self.local, self.docker):
                    if isinstance(ex, BatchAware):
                        self._pool.submit(close_batch_quietly, ex, batch)
        elif kind == "files":  # workspace files through the broker (node_files.py)
            from sandbox.cluster.node_files import serve_files

            self._pool.submit(serve_files, self, body)

    def _check(self, envelope: object) -> dict[str, Any]:
        body = self._verified(envelope)
        if not self._spend([body])[0]:
            raise ForgedMessage(_REPLAYED)
        return body

    def _verified(self, envelope: object) -> dict[str, Any]:
        """The body of a well-signed, fresh envelope meant for this node (its nonce not
        checked yet)."""
        body = verify(self.key, envelope)
        if body.get("node") != self.name:
            raise ForgedMessage(f"meant for node {body.get('node')!r}, not {self.name!r}")
        return body

    def _spend(self, bodies: list[dict[str, Any]]) -> list[bool]:
        """Spend the bodies' nonces in one round trip: True for each seen for the first
        time (a nonce twice in the list is fresh once)."""
        if not bodies:
            return []
        try:
            pipe = self.redis.pipeline(transaction=False)
            for body in bodies:
                pipe.set(wire.NONCE_KEY + str(body["nonce"]), 1, nx=True, ex=int(2 * MAX_AGE_S))
            return [bool(r) for r in pipe.execute()]
        except Exception as e:  # no Redis, no way to tell a replay: refuse, safely
            raise ForgedMessage(f"cannot check the nonce ({e})") from e

    def _start(self, body: dict[str, Any]) -> None:
        job_id = str(body.get("id", ""))
        if not JOB_ID.fullmatch(job_id):
            self._emit({"t": "refused", "reason": "bad job id", "job": ""})
            return
        try:
            job = wire.job_from(wire.open_env(self.key, body), self.root)
            job.workspace.mkdir(parents=True, exist_ok=True)
            _own_workspace(job.workspace)
        except (BashfleetError, KeyError, TypeError, ValueError, OSError) as e:
            self._done(job_id, ExecutorError(f"node {self.name}: bad job ({e})", retryable=False))
            return
        ex, why = self._executor(str(body.get("executor", "")))
        if ex is None:
            self._done(job_id, Outcome(status=Status.REFUSED, error=why))
            return
        (self.journal / job_id).touch()
        with self._lock:
            self._running[job_id] = ex
        sink = self._sink(job_id)
        done = partial(self._done, job_id)
        if isinstance(ex, LocalExecutor) and ex.start(job, sink, done):
            return
        self._pool.submit(self._run, ex, job, sink)

    def _executor(self, wanted: str) -> tuple[Executor | None, str]:
        if wanted == "local" and self.local.usable:
            return self.local, ""
        if self.docker is not None:
            return self.docker, ""
        if wanted == "local":
            return (
                None,
                f"node {self.name}: the local sandbox cannot run commands ({self.local.problem})",
            )
        return None, f"node {self.name} runs no containers: {self.docker_why}"

    def _run(self, ex: Executor, job: Job, sink: Any) -> None:
        try:
            result: Outcome | ExecutorError = ex.run(job, sink)
        except ExecutorError as e:
            result = e
        except Exception as e:  # an executor bug must not leave the command running forever
            log.exception("node %s: executor crashed on %s", self.name, job.id)
            result = ExecutorError(f"internal error on node {self.name}: {e}", retryable=False)
        self._done(job.id, result)

    def _cancel(self, job_id: str) -> None:
        with self._lock:
            ex = self._running.get(job_id)
        if ex is not None:
            with contextlib.suppress(ExecutorError):
                ex.cancel(job_id)

    def _sink(self, job_id: str) -> Any:
        offsets = {"stdout": 0, "stderr": 0}

        def sink(stream: str, data: bytes) -> None:
            offset = offsets.get(stream, 0)
            offsets[stream] = offset + len(data)
            self._emit({"t": "out", "job": job_id, "s": stream, "o": offset, "d": data})

        return sink

    def _done(self, job_id: str, result: Outcome | ExecutorError) -> None:
        with self._lock:
            self._running.pop(job_id, None)
            self._ended.discard(job_id)
        entry: dict[str, Any] = {"t": "done", "job": job_id}
        if isinstance(result, ExecutorError):
            entry["error"] = json.dumps(
                {"message": str(result), "retryable": result.retryable, "started": result.started}
            )
        else:
            if self._stopping and result.status is Status.CANCELLED:
                result = Outcome(
                    status=Status.INTERRUPTED,
                    started_at=result.started_at,
                    ended_at=result.ended_at,
                    error=f"node {self.name} stopped while it ran",
                )
            entry["outcome"] = json.dumps(wire.outcome_body(result))
        self._emit(entry, journal=job_id)

    # --- reporting ----------------------------------------------------------------------

    def _emit(self, entry: dict[str, Any], journal: str | None = None) -> None:
        entry["node"] = self.name
        if journal:
            entry["_journal"] = journal
        self._out.put(entry)

    def _send_loop(self) -> None:
        """One sender, so entries reach the stream in the order they were made; on a broker
        failure the same entries are sent again (the control plane drops repeated offsets)."""
        while True:
            item = self._out.get()
            if item is None:
                return
            items = [item]
            while len(items) < 500:
                try:
                    more = self._out.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._out.put(None)
                    break
                items.append(more)
            while True:
                try:
                    pipe = self.redis.pipeline(transaction=False)
                    for e in items:
                        fields = {k: field_bytes(v) for k, v in e.items() if not k.startswith("_")}
                        if e.get("t") == "out":  # output stays between the node and the portal
                            where = wire.out_context(e["job"], e["s"], e["o"])
                            fields["d"] = seal(self.key, fields["d"], where)
                        fields["m"] = entry_mac(self.key, fields)  # who reports, unforgeable
                        pipe.xadd(
                            wire.RESULTS, fields, maxlen=wire.RESULTS_MAXLEN, approximate=True
                        )
                    pipe.execute()
                    break
                except Exception as err:
                    log.warning(
                        "node %s: cannot report to the broker (%s); retrying", self.name, err
                    )
                    time.sleep(0.5)
            for sent in items:
                if "_journal" in sent:
                    with contextlib.suppress(OSError):
                        (self.journal / sent["_journal"]).unlink()

    def load(self) -> dict[str, Any]:
        with self._lock:
            running = len(self._running)
        return {
            "name": self.name,
            "instance": self.instance,
            "slots": self.slots,
            "limits": self.limits,
            "running": running,
            "free_memory": psutil.virtual_memory().available,
            "at": time.time(),
        }

    def _beat(self) -> None:
        ttl = max(5, int(self.timeout_s * 4))
        pipe = self.redis.pipeline(transaction=False)
        beat = json.dumps(sign(self.key, self.load()))  # a heartbeat nobody else can fake
        pipe.set(wire.NODE_KEY + self.name, beat, ex=ttl)
        pipe.sadd(wire.NODES, self.name)
        pipe.execute()

    def _beat_loop(self) -> None:
        every = max(0.2, min(2.0, self.timeout_s / 5))
        while not self._stop.wait(every):
            try:
                self._beat()
            except Exception as e:
                log.warning("node %s: heartbeat failed: %s", self.name, e)


_REPLAYED = "replayed message (its nonce was used before)"


def _interrupted(why: str) -> str:
    now = time.time()
    return json.dumps(
        wire.outcome_body(
            Outcome(status=Status.INTERRUPTED, error=why, started_at=now, ended_at=now)
        )
    )


def _own_workspace(path: Path) -> None:
    """Containers never run as root: give a root-owned workspace to the sandbox user."""
    with contextlib.suppress(OSError):
        if os.geteuid() == 0 and path.stat().st_uid == 0:
            os.chown(path, SANDBOX_UID, SANDBOX_UID)


def serve(name: str, broker: str, data_dir: Path, *, isolation: str = "auto") -> int:
    """Run a node until SIGTERM/SIGINT: the Celery worker in this thread (solo pool: a
    message is only checked and handed over; jobs run on the executors' threads)."""
    from celery import signals

    from sandbox.procenv import hide_secrets

    node = NodeWorker(name, broker, data_dir, isolation=isolation)
    hide_secrets()  # its key and the broker's password, out of /proc/PID/environ
    node.start()
    app = wire.celery_app(broker)
    app.task(name=wire.TASK_RUN, acks_late=True)(node.handle)
    signals.worker_shutdown.connect(lambda **_: node.stop(), weak=False)
    log.warning("node %s (%s) takes jobs from %s", name, node.instance, wire.queue_of(name))
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "-Q",
            wire.queue_of(name),
            "-n",
            f"{name}@bashfleet",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=WARNING",
        ]
    )
    return 0
