"""The control plane's side of a cluster (`bashfleet serve --broker URL`).

``ControlPlane`` gives the scheduler two ``RemoteExecutor``s (named "local" and "docker",
as in the embedded mode: the node runs each job with the executor of that name), places
each workspace on a node, sends signed jobs to the node's Celery queue (through an
outbox: the jobs released together leave in one message per node, each body signed on its
own), and runs two threads: the results reader (output chunks, de-duplicated by byte
offset, and outcomes, handed to the scheduler's callbacks in stream order) and the node
monitor (heartbeats; a node silent for ``BASHFLEET_NODE_TIMEOUT_S`` is lost and its
running commands end ``interrupted``; when it comes back it is told to kill them).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sandbox.cluster import wire
from sandbox.cluster.signing import (
    ForgedMessage,
    entry_mac,
    load_key,
    node_key,
    sign,
    unseal,
)
from sandbox.errors import ExecutorError
from sandbox.executors.base import DoneCallback, OutputSink
from sandbox.model import CommandClass, Job, Outcome, Status
from sandbox.scheduler import Scheduler
from sandbox.store import Store
from sandbox.store.nodes import NodeRecord, NodeRepository

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 0.5
DB_EVERY_S = 2.0  # a live node's row is refreshed this often
CLOSE_FLUSH_S = 2.0  # what the outbox holds at shutdown is sent within this
HOLD_ENTRIES = 64  # result entries handled while the outbox is held (releases wait that long)
FORGED_AUDIT_EVERY_S = 10.0  # forged result entries are audited at most this often (a flood)


@dataclass
class _Flight:
    node: str
    on_output: OutputSink
    on_done: DoneCallback
    offsets: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})


@dataclass
class _Node:
    name: str
    beat: dict[str, Any]
    seen_at: float  # time.monotonic() when its heartbeat last changed
    lost: bool = False
    saved_at: float = 0.0


class ControlPlane:
    def __init__(self, broker: str, store: Store) -> None:
        self.broker = broker
        self.key = load_key()
        self.timeout_s = wire.node_timeout_s()
        self.redis = wire.redis_client(broker)
        self._ping = wire.redis_client(broker, timeout_s=PING_TIMEOUT_S)
        self.app = wire.celery_app(broker)
        self.audit = store.audit
        self.db = NodeRepository(store.audit._sessions)  # the store's own sessions
        self.placement = self.db.placements()
        self._flights: dict[str, _Flight] = {}
        self._batch_nodes: dict[str, set[str]] = {}  # batch -> nodes sent its jobs
        self._nodes: dict[str, _Node] = {}
        self._lost_jobs: dict[str, set[str]] = {}  # node -> jobs ended by its loss
        self.scheduler: Scheduler | None = None
        self._capacity: dict[str, int] = {}
        self._files: Any = None  # transfer.FileChannel, made on first use
        self._node_keys: dict[str, bytes] = {}
        self.forged: dict[str, int] = {}  # what -> entries dropped (result, heartbeat)
        self._forged_audited_at = 0.0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.outbox = wire.Outbox(self._send_bodies)
        self._threads = [
            threading.Thread(target=self._read_loop, name="cluster-results", daemon=True),
            threading.Thread(target=self._monitor_loop, name="cluster-monitor", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def node_key(self, node: str) -> bytes:
        """The key node ``node`` accepts jobs signed with and signs its reports with."""
        key = self._node_keys.get(node)
        if key is None:
            key = self._node_keys[node] = node_key(self.key, node)
        return key

    def executors(self) -> dict[str, Any]:
        return {"local": RemoteExecutor(self, "local"), "docker": RemoteExecutor(self, "docker")}

    def close(self) -> None:
        self._closed.set()
        self.outbox.close()
        self.outbox.flush(CLOSE_FLUSH_S)  # the last cancels and kills still leave

    def attach(self, scheduler: Scheduler) -> None:
        """The scheduler's safe and conditional slots follow the live nodes' (their sum,
        within DESIGN.md's maxima); sequential and dangerous stay one at a time."""
        self.scheduler = scheduler

    def _follow_capacity(self) -> None:
        with self._lock:
            live = [n for n in self._nodes.values() if not n.lost]
        if self.scheduler is None or not live:
            return
        totals: dict[str, int] = {}
        for n in live:
            for cls, slots in (n.beat.get("limits") or {}).items():
                totals[cls] = totals.get(cls, 0) + int(slots)
        if totals == self._capacity:
            return
        self._capacity = totals
        for cls in (CommandClass.SAFE, CommandClass.CONDITIONAL):
            if totals.get(cls.value):
                self.scheduler.set_limit(
                    cls, totals[cls.value], f"cluster: {len(live)} live node(s)"
                )

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Prometheus gauges per node (registered on the portal's /metrics registry), and
        the outbox's counters (bodies sent, in how many broker messages)."""
        with self._lock:
            nodes = list(self._nodes.values())
            sent: dict[str, int] = {}
            for f in self._flights.values():
                sent[f.node] = sent.get(f.node, 0) + 1
        for metric, help_text, value in (
            ("up", "1 while the node heartbeats, 0 once it is lost", lambda n: 0 if n.lost else 1),
            (
                "running",
                "Commands running on the node (its heartbeat)",
                lambda n: n.beat.get("running", 0),
            ),
            ("slots", "The node's slots (its heartbeat)", lambda n: n.beat.get("slots", 0)),
            (
                "free_memory_bytes",
                "Free memory on the node",
                lambda n: n.beat.get("free_memory", 0),
            ),
            ("sent", "Commands sent to the node and not ended", lambda n: sent.get(n.name, 0)),
        ):
            family = GaugeMetricFamily(f"bashfleet_node_{metric}", help_text, labels=["node"])
            for n in nodes:
                family.add_metric([n.name], float(value(n)))
            yield family
        for what, help_text, count in (
            ("messages", "Broker messages published to the nodes", self.outbox.messages),
            ("bodies", "Signed bodies (jobs, cancels, kills) in them", self.outbox.bodies),
        ):
            yield CounterMetricFamily(f"bashfleet_cluster_published_{what}", help_text, value=count)
        forged = CounterMetricFamily(
            "bashfleet_cluster_forged",
            "Entries in the broker (results, heartbeats) that their node did not sign (dropped)",
            labels=["kind"],
        )
        for what in ("result", "heartbeat"):
            forged.add_metric([what], self.forged.get(what, 0))
        yield forged

    # --- admission and placement (Service.submit) ----------------------------------------

    def check(self) -> None:
        """A cheap ping: a batch submitted while Redis is down is refused (503), not lost."""
        try:
            self._ping.ping()
        except Exception as e:
            raise wire.BrokerUnavailable(
                f"the broker does not answer ({type(e).__name__}); nothing was stored: "
                "submit again once Redis is back"
            ) from e

    def place(self, workspace: str) -> str:
        """The node the workspace lives on; a new one goes to the least-loaded live node."""
        with self._lock:
            node = self.placement.get(workspace)
            if node is not None:
                return node
            known = any(not n.lost for n in self._nodes.values())
        if not known:  # just started: the monitor may not have read the heartbeats yet
            self._look_now()
        with self._lock:
            live = [n for n in self._nodes.values() if not n.lost]
            if not live:
                raise wire.BrokerUnavailable(
                    "no worker node is live: start one with "
                    "`bashfleet worker --broker URL --name NAME`"
                )
            homes = list(self.placement.values())
            best = min(live, key=lambda n: self._score(n, homes))
        node = self.db.place(workspace, best.name)
        with self._lock:
            self.placement[workspace] = node
        return node

    def _look_now(self) -> None:
        """Read the heartbeats of nodes not heard of yet, now (not at the monitor's pace)."""
        with contextlib.suppress(Exception):
            every = self._known_nodes()
            with self._lock:
                names = [n for n in every if n not in self._nodes]
            beats = self.redis.mget([wire.NODE_KEY + n for n in names]) if names else []
            now = time.monotonic()
            for name, raw in zip(names, beats, strict=True):
                beat = self._beat(name, raw)
                if beat is not None:
                    self._heard(name, beat, now)

    def _score(self, n: _Node, homes: list[str]) -> tuple[float, int, float]:
        sent = sum(1 for f in self._flights.values() if f.node == n.name)
        slots = max(1, int(n.beat.get("slots", 1)))
        busy = max(int(n.beat.get("running", 0)), sent) / slots
        return (busy, homes.count(n.name), -float(n.beat.get("free_memory", 0)))

    def is_live(self, node: str) -> bool:
        with self._lock:
            state = self._nodes.get(node)
            return state is not None and not state.lost

    def files(self) -> Any:
        """The channel to the nodes' workspace files (transfer.py), made on first use."""
        from sandbox.cluster.transfer import FileChannel

        with self._lock:
            if self._files is None:
                self._files = FileChannel(self)
            return self._files

    def move_placement(self, workspace: str, source: str, target: str) -> None:
        """A moved workspace (move.py): its queued commands go to ``target`` from now on."""
        self.db.move(workspace, source, target)
        with self._lock:
            self.placement[workspace] = target

    def mark_batch(self, batch_id: str, node: str) -> None:
        self.db.mark_batch(batch_id, node)

    def nodes(self) -> list[NodeRecord]:
        return self.db.list()

    # --- sending ---------------------------------------------------------------------------

    def send(self, job: Job, executor: str, on_output: OutputSink, on_done: DoneCallback) -> None:
        node = self.placement.get(job.workspace.name) or self.place(job.workspace.name)
        with self._lock:
            state = self._nodes.get(node)
            if state is None or state.lost:
                raise ExecutorError(f"node {node} is not live", executor=executor)
            self._flights[job.id] = _Flight(node, on_output, on_done)
            self._batch_nodes.setdefault(job.batch_id, set()).add(node)
        try:
            self._publish(
                node,
                wire.job_body(job, node, executor),
                on_error=partial(self._unsent, job.id, executor),
            )
        except Exception as e:
            with self._lock:
                self._flights.pop(job.id, None)
            raise ExecutorError(f"cannot reach the broker: {e}", executor=executor) from e

    def _unsent(self, job_id: str, executor: str, e: Exception) -> None:
        """The outbox could not publish the job: it ends as if the executor failed to
        start it (nothing ran; the scheduler may try again)."""
        with self._lock:
            flight = self._flights.pop(job_id, None)
        if flight is not None:
            flight.on_done(ExecutorError(f"cannot reach the broker: {e}", executor=executor))

    def cancel(self, job_id: str) -> None:
        flight = self._flights.get(job_id)
        if flight is not None:
            with contextlib.suppress(Exception):
                self._publish(flight.node, {"kind": "cancel", "node": flight.node, "id": job_id})

    def close_batch(self, batch_id: str) -> None:
        """The batch has ended: the nodes that ran its jobs remove its resources (the
        Docker executor's batch container) now, not when they stop."""
        with self._lock:
            nodes = self._batch_nodes.pop(batch_id, set())
        for node in sorted(nodes):
            with contextlib.suppress(Exception):
                self._publish(node, {"kind": "close_batch", "node": node, "batch": batch_id})

    def kill_everywhere(self, job_ids: set[str]) -> None:
        """Commands this control plane's predecessor left running: stop them on every node."""
        if not job_ids:
            return
        for node in self._known_nodes():
            with contextlib.suppress(Exception):
                self._publish(node, {"kind": "kill", "node": node, "ids": sorted(job_ids)})

    def _publish(
        self, node: str, body: dict[str, Any], on_error: wire.Failed | None = None
    ) -> None:
        """Queue one body for the node; it is signed and sent from the outbox's thread, in
        one message with whatever else is waiting for that node (``on_error`` is called if
        that message cannot be published)."""
        self.outbox.put(node, body, on_error)

    def _send_bodies(self, node: str, bodies: list[dict[str, Any]]) -> None:
        """One Celery message: a signed envelope, or a list of them (each with its own
        nonce, so the node refuses a forged or replayed one and runs the rest)."""
        key = self.node_key(node)
        signed = [sign(key, wire.seal_env(key, body)) for body in bodies]
        self.app.send_task(
            wire.TASK_RUN,
            args=[signed[0] if len(signed) == 1 else signed],
            queue=wire.queue_of(node),
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
        )

    # --- results ---------------------------------------------------------------------------

    def _read_loop(self) -> None:
        last = "$"
        while not self._closed.is_set():
            try:
                if last == "$":
                    info = (
                        self.redis.xinfo_stream(wire.RESULTS)
                        if self.redis.exists(wire.RESULTS)
                        else None
                    )
                    last = info["last-generated-id"].decode() if info else "0-0"
                got = self.redis.xread({wire.RESULTS: last}, count=1000, block=1000)
            except Exception as e:
                log.warning("cluster: cannot read results (%s); retrying", e)
                self._closed.wait(0.5)
                continue
            entries = [e for _stream, es in got or [] for e in es]
            for i in range(0, len(entries), HOLD_ENTRIES):
                # the jobs these outcomes release leave together, in one message per node
                with self.outbox.hold():
                    for entry_id, fields in entries[i : i + HOLD_ENTRIES]:
                        last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                        try:
                            self._result({k.decode(): v for k, v in fields.items()})
                        except Exception:
                            log.exception("cluster: bad result entry %s", last)

    def _result(self, f: dict[str, bytes]) -> None:
        node = f.get("node", b"").decode(errors="replace")
        if not (
            wire.NODE_NAME.fullmatch(node)
            and hmac.compare_digest(entry_mac(self.node_key(node), f), f.get("m", b""))
        ):
            self._forged_result(node, f)
            return
        kind = f.get("t", b"").decode()
        job = f.get("job", b"").decode()
        if kind == "refused":
            reason = f.get("reason", b"").decode(errors="replace")
            self.audit.append(
                "cluster_message_refused",
                actor=f"node:{node}"[:100],
                target=job or None,
                detail={"node": node, "reason": reason[:500]},
            )
            return
        flight = self._flights.get(job)
        if flight is None or flight.node != node:
            return  # not ours, or already ended (a lost node's, a duplicate)
        if kind == "out":
            stream = f["s"].decode()
            offset = int(f["o"])
            try:
                data = unseal(self.node_key(node), f["d"], wire.out_context(job, stream, f["o"]))
            except ForgedMessage:
                self._forged_result(node, f)
                return
            expected = flight.offsets.get(stream, 0)
            new = wire.fresh_part(expected, offset, data)
            if not new:
                return  # sent again after a broker failure: delivered already
            if offset > expected:
                log.warning("cluster: %s lost %d bytes of %s", job, offset - expected, stream)
            flight.offsets[stream] = offset + len(data)
            flight.on_output(stream, new)
        elif kind == "done":
            with self._lock:
                if self._flights.pop(job, None) is None:
                    return
            if "error" in f:
                e = json.loads(f["error"])
                flight.on_done(
                    ExecutorError(e["message"], retryable=e["retryable"], started=e["started"])
                )
            else:
                flight.on_done(wire.outcome_from(json.loads(f["outcome"])))

    def _forged_result(self, node: str, f: dict[str, bytes]) -> None:
        job = f.get("job", b"").decode(errors="replace")[:100]
        self._forged("result", node, job, "a result entry its node did not sign")

    def _forged(self, what: str, node: str, target: str, reason: str) -> None:
        """Something in the broker that its node did not sign (pushed by whoever else
        reaches Redis, or by one node in another's name): dropped, counted, audited at
        most every 10 s (a flood)."""
        with self._lock:
            self.forged[what] = self.forged.get(what, 0) + 1
            now = time.monotonic()
            if self._forged_audited_at and now - self._forged_audited_at < FORGED_AUDIT_EVERY_S:
                return
            self._forged_audited_at = now
        log.warning("cluster: dropped a %s no node signed (claims node %r)", what, node)
        self.audit.append(
            "cluster_message_refused",
            actor="broker",
            target=target or None,
            detail={
                "node": node[:100],
                "reason": reason[:500],
                "dropped_so_far": dict(self.forged),
            },
        )

    # --- nodes -----------------------------------------------------------------------------

    def _known_nodes(self) -> list[str]:
        try:
            return sorted(m.decode() for m in self.redis.smembers(wire.NODES))
        except Exception:
            return sorted(self._nodes)

    def _monitor_loop(self) -> None:
        every = max(0.1, min(1.0, self.timeout_s / 5))
        blind_since: float | None = None
        while not self._closed.wait(every):
            try:
                names = self._known_nodes()
                beats = self.redis.mget([wire.NODE_KEY + n for n in names]) if names else []
            except Exception as e:
                if blind_since is None:
                    log.warning("cluster: cannot read heartbeats (%s)", e)
                    blind_since = time.monotonic()
                continue
            now = time.monotonic()
            if blind_since is not None:  # Redis was away: no node is blamed for that time
                with self._lock:
                    for n in self._nodes.values():
                        n.seen_at += now - blind_since
                blind_since = None
            for name, raw in zip(names, beats, strict=True):
                self._heard(name, self._beat(name, raw), now)
            for n in list(self._nodes.values()):
                if not n.lost and now - n.seen_at > self.timeout_s:
                    self._lose(n)
            self._follow_capacity()

    def _beat(self, name: str, raw: bytes | None) -> dict[str, Any] | None:
        """The node's heartbeat if its key signed it; a forged one counts as silence."""
        if not wire.NODE_NAME.fullmatch(name):
            return None
        try:
            return wire.beat_of(raw, self.node_key(name), name)
        except ForgedMessage as e:
            self._forged("heartbeat", name, name, f"a heartbeat its node did not sign ({e})")
            return None

    def _heard(self, name: str, beat: dict[str, Any] | None, now: float) -> None:
        with self._lock:
            n = self._nodes.get(name)
            if beat is None:
                if n is None:
                    return
                changed = False
            elif n is None:
                n = self._nodes[name] = _Node(name, beat, now)
                changed = True
            else:  # a newer heartbeat (an older one put back in Redis keeps no node alive)
                changed = beat != n.beat and float(beat.get("at", 0)) > float(n.beat.get("at", 0))
                if changed:
                    n.beat, n.seen_at = beat, now
            back = changed and n.lost
            if back:
                n.lost = False
                doomed = self._lost_jobs.pop(name, set())
        if back:
            log.warning("cluster: node %s is back", name)
            self._audit("node_returned", name)
            if doomed:
                with contextlib.suppress(Exception):
                    self._publish(name, {"kind": "kill", "node": name, "ids": sorted(doomed)})
        if changed and (back or now - n.saved_at > DB_EVERY_S):
            n.saved_at = now
            self._save(n)

    def _lose(self, n: _Node) -> None:
        why = (
            f"node {n.name} lost: no heartbeat for {self.timeout_s:g} s; "
            "the command is not run again (it may have done part of its work)"
        )
        with self._lock:
            n.lost = True
            gone = {j: f for j, f in self._flights.items() if f.node == n.name}
            for j in gone:
                del self._flights[j]
            self._lost_jobs.setdefault(n.name, set()).update(gone)
        log.warning("cluster: %s (%d commands interrupted)", why, len(gone))
        now = time.time()
        for flight in gone.values():
            flight.on_done(
                Outcome(status=Status.INTERRUPTED, error=why, started_at=now, ended_at=now)
            )
        self._audit("node_lost", n.name, {"interrupted": sorted(gone)[:100]})
        self._save(n)

    def _save(self, n: _Node) -> None:
        try:
            self.db.seen(
                n.name,
                status="lost" if n.lost else "live",
                instance=str(n.beat.get("instance", ""))[:100] or None,
                slots=int(n.beat.get("slots", 0)),
                running=0 if n.lost else int(n.beat.get("running", 0)),
                free=int(n.beat.get("free_memory", 0)),
            )
        except Exception as e:
            log.warning("cluster: cannot record node %s: %s", n.name, e)

    def _audit(self, action: str, node: str, detail: dict[str, Any] | None = None) -> None:
        with contextlib.suppress(Exception):
            self.audit.append(action, actor="cluster", target=node, detail=detail or {})


class RemoteExecutor:
    """The scheduler's view of the cluster: ``start`` sends the job and returns at once;
    the results reader calls ``on_done`` later, from its own thread."""

    def __init__(self, plane: ControlPlane, name: str) -> None:
        self.plane = plane
        self.name = name

    def start(self, job: Job, on_output: OutputSink, on_done: DoneCallback) -> bool:
        try:
            self.plane.send(job, self.name, on_output, on_done)
        except ExecutorError:
            return False  # the scheduler calls run(), which says why
        return True

    def run(self, job: Job, on_output: OutputSink) -> Outcome:
        done = threading.Event()
        box: list[Outcome | ExecutorError] = []

        def finished(result: Outcome | ExecutorError) -> None:
            box.append(result)
            done.set()

        self.plane.send(job, self.name, on_output, finished)  # raises ExecutorError
        done.wait()
        if isinstance(box[0], ExecutorError):
            raise box[0]
        return box[0]

    def cancel(self, job_id: str) -> None:
        self.plane.cancel(job_id)

    def open_batch(self, batch_id: str, workspace: str, classes: set[str], **_: Any) -> None:
        """Nothing to prepare here: a node starts a batch's container with its first job."""

    def close_batch(self, batch_id: str) -> None:
        self.plane.close_batch(batch_id)

    def recover_orphans(self, **_: Any) -> list[str]:
        return []  # the control plane has no containers; each node cleans up its own

    def close(self) -> None:
        self.plane.close()
