"""What travels through Redis: job and outcome shapes, key and queue names, the Celery app,
and the outbox that coalesces the bodies released together into one message per node.

No I/O here except making clients (which connect lazily); the outbox publishes through
the function it is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from sandbox.errors import BashfleetError
from sandbox.model import CommandClass, Job, Limits, Outcome, Status

log = logging.getLogger(__name__)

NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
TASK_RUN = "bashfleet.node.run"  # a signed job, or a signed cancel
RESULTS = "bashfleet:results"  # stream: output, outcomes, refusals from every node
RESULTS_MAXLEN = 200_000  # entries kept (approximately); the consumer is seconds behind
NODES = "bashfleet:nodes"  # set: every node ever heard of
NODE_KEY = "bashfleet:node:"  # + name: the heartbeat (JSON), with a TTL
NONCE_KEY = "bashfleet:nonce:"  # + nonce: seen by a node (replay refused)
MAX_BODIES = 256  # signed bodies in one Celery message at most (a node refuses more)
VISIBILITY_S = 3600  # an unacknowledged job is delivered again after this (then refused)
TIMEOUT_ENV = "BASHFLEET_NODE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 15.0


def queue_of(node: str) -> str:
    return f"bashfleet.node.{node}"


def node_timeout_s() -> float:
    """Seconds without a heartbeat after which a node is lost (``BASHFLEET_NODE_TIMEOUT_S``)."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise BashfleetError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not 0.5 <= value <= 3600:
        raise BashfleetError(f"{TIMEOUT_ENV} must be from 0.5 to 3600 seconds")
    return value


def job_body(job: Job, node: str, executor: str) -> dict[str, Any]:
    return {
        "kind": "run",
        "node": node,
        "id": job.id,
        "command": job.command,
        "cls": job.cls.value,
        "workspace": job.workspace.name,  # the node has the folder under its own data dir
        "batch_id": job.batch_id,
        "index": job.index,
        "timeout_s": job.timeout_s,
        "limits": dataclasses.asdict(job.limits),
        "env": [list(p) for p in job.env],
        "read_only": job.read_only,
        "network": job.network,
        "output_cap": job.output_cap,
        "image": job.image,  # the workspace's image: the node runs it in both pools
        "sized": job.sized,
        "executor": executor,
    }


def seal_env(key: bytes, body: dict[str, Any]) -> dict[str, Any]:
    """A job's variables and secrets leave sealed under its node's key (``env_sealed``,
    base64): whoever reads Redis, or its dump on disk, does not read them."""
    import base64
    import json

    from sandbox.cluster.signing import seal

    if body.get("kind") != "run" or not body.get("env"):
        return body
    out = {k: v for k, v in body.items() if k != "env"}
    blob = seal(key, json.dumps(body["env"]).encode(), f"env:{body.get('id')}".encode())
    out["env_sealed"] = base64.b64encode(blob).decode()
    return out


def open_env(key: bytes, body: dict[str, Any]) -> dict[str, Any]:
    """The body with its sealed variables open again (ForgedMessage if they do not open)."""
    import base64
    import binascii
    import json

    from sandbox.cluster.signing import ForgedMessage, unseal

    sealed = body.get("env_sealed")
    if sealed is None:
        return body
    try:
        blob = base64.b64decode(str(sealed), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ForgedMessage("sealed variables that are not base64") from e
    env = json.loads(unseal(key, blob, f"env:{body.get('id')}".encode()))
    return {**{k: v for k, v in body.items() if k != "env_sealed"}, "env": env}


def out_context(job: str, stream: str, offset: int | str | bytes) -> bytes:
    """What a sealed output chunk is bound to: its job, stream and byte offset."""
    raw = offset.decode() if isinstance(offset, bytes) else str(offset)
    return f"out:{job}:{stream}:{raw}".encode()


def job_from(body: dict[str, Any], workspace_root: Any) -> Job:
    from sandbox.store.workspaces import check_workspace_name

    name = check_workspace_name(str(body["workspace"]))
    return Job(
        id=str(body["id"]),
        command=str(body["command"]),
        cls=CommandClass(body["cls"]),
        workspace=workspace_root / name,
        batch_id=str(body["batch_id"]),
        index=int(body["index"]),
        timeout_s=body["timeout_s"],
        limits=Limits(**body["limits"]),
        env=tuple((str(k), str(v)) for k, v in body["env"]),
        read_only=bool(body["read_only"]),
        network=bool(body["network"]),
        output_cap=int(body["output_cap"]),
        image=str(body.get("image") or ""),
        sized=bool(body.get("sized", False)),
    )


def outcome_body(o: Outcome) -> dict[str, Any]:
    d = dataclasses.asdict(o)
    d["status"] = o.status.value
    return d


def outcome_from(d: dict[str, Any]) -> Outcome:
    return Outcome(**{**d, "status": Status(d["status"])})


def fresh_part(expected: int, offset: int, data: bytes) -> bytes:
    """What of a chunk at ``offset`` is new to a reader that has ``expected`` bytes: all of
    it, its tail (a chunk sent again overlaps), or nothing (sent again, delivered already).
    A gap (offset past expected) cannot be filled: the chunk is delivered as it is."""
    if offset + len(data) <= expected:
        return b""
    if offset < expected:
        return data[expected - offset :]
    return data


def celery_app(url: str) -> Any:
    """The Celery app both sides use; JSON only (never pickle), late acknowledgement."""
    from celery import Celery

    app = Celery("bashfleet", broker=url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=16,
        broker_transport_options={"visibility_timeout": VISIBILITY_S},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_default_queue="bashfleet.unrouted",
    )
    return app


def redis_client(url: str, timeout_s: float = 3.0) -> Any:
    import redis

    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=10
    )


class BrokerUnavailable(BashfleetError):
    """The broker (Redis) does not answer, or no worker node is live: nothing was stored.
    The portal answers 503."""


def beat_of(raw: bytes | None, key: bytes, name: str) -> dict[str, Any] | None:
    """A node's heartbeat as its key signed it (without the envelope's ts, nonce and sig),
    None when there is none; ForgedMessage when its node did not sign it."""
    import json

    from sandbox.cluster.signing import ForgedMessage, verify

    if not raw:
        return None
    try:
        envelope = json.loads(raw)
    except ValueError as e:
        raise ForgedMessage("a heartbeat that is not JSON") from e
    body = verify(key, envelope)
    if body.get("name") != name:
        raise ForgedMessage(f"the heartbeat of {body.get('name')!r} under {name!r}")
    return {k: v for k, v in body.items() if k not in ("ts", "nonce")}


def live_nodes(client: Any, cluster_key: bytes) -> dict[str, dict[str, Any]]:
    """name -> heartbeat of every node whose heartbeat is there and signed by its key."""
    from sandbox.cluster.signing import ForgedMessage, node_key

    names = sorted(m.decode(errors="replace") for m in client.smembers(NODES))
    beats = client.mget([NODE_KEY + n for n in names]) if names else []
    live = {}
    for n, raw in zip(names, beats, strict=True):
        with contextlib.suppress(ForgedMessage):
            beat = beat_of(raw, node_key(cluster_key, n), n)
            if beat is not None:
                live[n] = beat
    return live


Failed = Callable[[Exception], None]


class Outbox:
    """Bodies waiting to be published, per node, sent by one thread: whatever piles up
    while a message is on its way leaves in the next one (at most ``max_bodies`` each), so
    a burst of releases costs a few broker messages, not one each, and nobody who puts a
    body waits for the broker. A node's bodies leave in the order they were put.

    ``send(node, bodies)`` publishes one message; when it raises, ``on_error`` of each of
    its bodies is called with the exception (from the outbox's thread)."""

    def __init__(
        self,
        send: Callable[[str, list[dict[str, Any]]], None],
        *,
        max_bodies: int = MAX_BODIES,
        name: str = "cluster-publish",
    ) -> None:
        self._send = send
        self._max = max_bodies
        self._pending: dict[str, list[tuple[dict[str, Any], Failed | None]]] = {}
        self._busy = False
        self._held = 0
        self._closed = False
        self._cond = threading.Condition()
        self.messages = 0  # messages sent (a figure for tests and benchmarks)
        self.bodies = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def put(self, node: str, body: dict[str, Any], on_error: Failed | None = None) -> None:
        with self._cond:
            if self._closed:
                raise BrokerUnavailable("the control plane is shutting down")
            self._pending.setdefault(node, []).append((body, on_error))
            self._cond.notify_all()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Nothing leaves while held: what is put meanwhile goes together when the last
        holder lets go (the results reader holds it while it hands one read's outcomes to
        the scheduler, whose releases then travel in one message per node)."""
        with self._cond:
            self._held += 1
        try:
            yield
        finally:
            with self._cond:
                self._held -= 1
                self._cond.notify_all()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything put so far has been sent (or failed)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._pending and not self._busy, timeout=timeout_s
            )

    def close(self) -> None:
        """Stop taking bodies; what is pending is still sent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: (self._pending and not self._held) or self._closed)
                if not self._pending:
                    return  # closed, and nothing left
                taken, self._pending = self._pending, {}
                self._busy = True
            try:
                for node, items in taken.items():
                    for i in range(0, len(items), self._max):
                        self._deliver(node, items[i : i + self._max])
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, node: str, items: list[tuple[dict[str, Any], Failed | None]]) -> None:
        try:
            self._send(node, [body for body, _ in items])
        except Exception as e:
            for _body, on_error in items:
                if on_error is not None:
                    try:
                        on_error(e)
                    except Exception:  # one failing callback must not strand the others
                        log.exception("cluster: a publish callback failed")
            return
        self.messages += 1
        self.bodies += len(items)
