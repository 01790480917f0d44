"""Live streams over Socket.IO (DESIGN.md, "Contracts").

A client authenticates on connect (the session cookie, or ``auth={"token": T}``),
emits ``subscribe`` with ``{"batch_id": ID}`` (and, to resume, the ``offsets`` it
already has per command and stream) and then receives, for that batch:
``command_output`` (``batch_id``, ``command_id``, ``index``, ``stream``, ``data``,
``offset``), ``command_status`` and ``batch_status``. Everyone connected receives
``scaling`` (each autoscaling decision) and ``metrics`` (once a second).

Exactly-once output: the store writer appends each chunk to its output file before
this hub sees the event, so the file always holds at least what the hub has been
told. On ``subscribe`` the hub, under its lock, sends the stored bytes from the
client's offsets to the end of the file and records that end as the client's cursor;
live chunks are then cut against the cursor, so nothing is lost or repeated, whether
the client subscribes early, late, or again after a reconnect.

Output is coalesced: events are buffered and flushed every ``FLUSH_S`` (50 ms), at
most ``MAX_EMIT`` bytes per command and stream per flush, so a flood of tiny lines
becomes a few messages per second that a browser can keep up with. Output that is not
valid UTF-8 is sent once as base64 (``data_b64``) instead of ``data``.

Bounds (``LiveLimits``): a socket that has not authenticated within ``auth_s`` is closed;
a user has at most ``sockets_per_user`` sockets and a socket ``subscriptions`` batches; a
subscribe replays at most ``BACKLOG_TOTAL`` bytes; a socket whose unsent messages pass
``queued_bytes`` (a reader that does not read) is cut with a ``cut`` event saying why.
Credentials are checked on every subscribe, every ``RECHECK_S``, and at once when an
admin disables a user or a token is revoked.

Several portal processes (webapp/replica.py): every process's hub serves only its own
sockets (``_emit`` never goes through the message queue); a replica's hub is fed the
control plane's relayed events (sandbox/cluster/events.py) instead of a local bus, and
does what the control plane relays of its cuts. Socket.IO's Redis queue carries only
what goes to everyone: ``metrics`` (from the control plane alone) and ``scaling``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import random
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, request
from flask_socketio import SocketIO, join_room, leave_room
from socketio.exceptions import ConnectionRefusedError as Refused

from sandbox.cluster.events import SocketsCut
from sandbox.events import BatchFinished, CommandStatusChanged, Event, OutputReceived, PoolResized
from sandbox.service import Service
from sandbox.store import NotFound, UserRecord

log = logging.getLogger(__name__)

FLUSH_S = 0.05
METRICS_S = 1.0
BACKLOG_BYTES = 256 << 10  # per stream, on subscribe: older output is offered as a download
BACKLOG_TOTAL = 1 << 20  # per subscribe; past it, streams start at their end
RECHECK_S = 10.0  # every open socket's credentials are checked again this often
MAX_EMIT = 64 << 10  # per command and stream per flush; a flood skips ahead (see _cut)
RECENT_BATCHES = 64
Key = tuple[str, str]  # (command_id, stream)


@dataclass(frozen=True)
class LiveLimits:
    auth_s: float = 5.0  # a socket must authenticate within this
    sockets_per_user: int = 8
    subscriptions: int = 16  # batches one socket may follow at once
    queued_bytes: int = 4 << 20  # unsent messages of one socket; past it, it is cut


@dataclass
class _Client:
    user_id: int
    nonce: str | None  # the browser session it came from; None for tokens
    token: str | None = None  # the API token it came with, re-checked on every subscribe
    epoch: str | None = None  # its browser session's (auth.session_epoch); None for tokens
    batches: dict[str, dict[Key, int]] = field(default_factory=dict)  # cursors
    eio_sid: str | None = None


@dataclass
class _Recent:
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch: dict[str, Any] | None = None


@dataclass
class _Chunk:
    command_id: str
    index: int
    stream: str
    offset: int
    data: bytearray


class LiveHub:
    def __init__(
        self,
        socketio: SocketIO,
        service: Service,
        limits: LiveLimits | None = None,
        *,
        role: str = "embedded",
        relay: Any = None,
    ) -> None:
        self.io = socketio
        self.service = service
        self.limits = limits or LiveLimits()
        # scale-out (webapp/replica.py): "control" relays its cuts to the replicas and sends
        # `metrics` to every process's sockets; a "replica" follows the relayed events
        self.role = role
        self.relay = relay
        self._unauthenticated: dict[str, float] = {}  # engine.io sid -> when it must be in
        self.cuts: dict[str, int] = defaultdict(int)  # why sockets were cut -> how many
        self._lock = threading.Lock()
        self._clients: dict[str, _Client] = {}
        self._rooms: dict[str, set[str]] = defaultdict(set)  # batch id -> sids
        self._output: dict[str, dict[Key, list[_Chunk]]] = {}  # batch id -> pending chunks
        self._statuses: dict[str, dict[str, dict[str, Any]]] = {}  # batch -> command -> last
        self._batch_status: list[dict[str, Any]] = []
        # the latest status of every command of recent batches, for the subscribe answer:
        # the database lags the engine by a flush, this does not
        self._recent: OrderedDict[str, _Recent] = OrderedDict()
        self._scaling: list[dict[str, Any]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._threads: list[threading.Thread] = []

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._unsubscribe = self.service.subscribe(self.on_event)
        loops = (
            (self._flush_loop, "flush"),
            (self._metrics_loop, "metrics"),
            (self._guard_loop, "guard"),
        )
        for target, name in loops:
            t = threading.Thread(target=target, name=f"bashfleet-live-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._unsubscribe:
            self._unsubscribe()
        for t in self._threads:
            t.join(timeout=2)

    # --- events from the engine (on scheduler threads: be quick) -----------------------------

    def on_event(self, event: Event) -> None:
        if isinstance(event, OutputReceived):
            self._on_output(event)
        elif isinstance(event, CommandStatusChanged):
            payload = _status_json(event)
            with self._lock:
                self._remember(event.batch_id).commands[event.command_id] = payload
                if event.batch_id in self._rooms:
                    self._statuses.setdefault(event.batch_id, {})[event.command_id] = payload
        elif isinstance(event, BatchFinished):
            payload = {
                "batch_id": event.batch_id,
                "status": event.status.value,
                "counts": dict(event.counts),
                "makespan_s": round(event.makespan_s, 3),
            }
            with self._lock:
                self._remember(event.batch_id).batch = payload
                self._batch_status.append(payload)
        elif isinstance(event, PoolResized):
            with self._lock:
                self._scaling.append(
                    {
                        "pool": event.pool,
                        "before": event.before,
                        "after": event.after,
                        "reason": event.reason,
                        "at": event.at,
                    }
                )
            self._wake.set()
        elif isinstance(event, SocketsCut) and self.role == "replica":
            threading.Thread(target=self._relayed_cut, args=(event,), daemon=True).start()

    def _emit(self, name: str, payload: Any, to: str) -> None:
        """To this process's sockets only: every process's hub serves its own (with a
        message queue, a room emit would otherwise reach the other processes' too)."""
        self.io.emit(name, payload, to=to, ignore_queue=True)

    def _relayed_cut(self, e: SocketsCut) -> None:
        """A replica does to its own sockets what the control plane did to its."""
        if e.kind == "user" and e.user_id is not None:
            self.cut_user(e.user_id, e.reason)
        elif e.kind == "recheck":
            self._recheck_now()
        elif e.kind == "password" and e.user_id is not None and e.nonce and e.epoch:
            self.password_changed(e.user_id, e.keep, e.nonce, e.epoch)
        elif e.kind == "session" and e.nonce:
            self.end_session(e.nonce)

    def _remember(self, batch_id: str) -> _Recent:
        recent = self._recent.get(batch_id)
        if recent is None:
            recent = self._recent[batch_id] = _Recent()
            while len(self._recent) > RECENT_BATCHES:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(batch_id)
        return recent

    def _on_output(self, e: OutputReceived) -> None:
        with self._lock:
            if e.batch_id not in self._rooms:
                return  # nobody watches; a later subscriber reads the file
            chunks = self._output.setdefault(e.batch_id, {}).setdefault(
                (e.command_id, e.stream), []
            )
            last = chunks[-1] if chunks else None
            if last is not None and last.offset + len(last.data) == e.offset:
                last.data += e.data
            else:
                chunks.append(_Chunk(e.command_id, e.index, e.stream, e.offset, bytearray(e.data)))

    # --- clients ------------------------------------------------------------------------------

    def opened(self, eio_sid: str) -> None:
        """A transport opened; it must authenticate within ``limits.auth_s`` (up to half as
        long again, at random: transports opened in a burst are not closed in one, and do
        not all come back at once)."""
        with self._lock:
            self._unauthenticated[eio_sid] = time.monotonic() + self.limits.auth_s * (
                1 + random.random() / 2
            )

    def closed(self, eio_sid: str) -> None:
        with self._lock:
            self._unauthenticated.pop(eio_sid, None)

    def connected(
        self,
        sid: str,
        user: UserRecord,
        nonce: str | None,
        token: str | None = None,
        eio_sid: str | None = None,
        epoch: str | None = None,
    ) -> str | None:
        """Register an authenticated socket; the refusal's reason if the user has too many."""
        with self._lock:
            mine = sum(c.user_id == user.id for c in self._clients.values())
            if mine >= self.limits.sockets_per_user:
                return (
                    f"too many live connections for {user.name} (at most "
                    f"{self.limits.sockets_per_user}); close a tab"
                )
            self._clients[sid] = _Client(user.id, nonce, token, eio_sid=eio_sid, epoch=epoch)
            if eio_sid is not None:
                self._unauthenticated.pop(eio_sid, None)
        return None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "sockets": len(self._clients),
                "unauthenticated": len(self._unauthenticated),
                "cut": dict(self.cuts),
            }

    def cut(self, sid: str, reason: str, *, deaf: bool = False) -> None:
        """Close a socket and its transport, telling the client why (never under the hub's
        lock). A ``deaf`` client (it does not read) loses what was queued for it at once."""
        self.cuts[reason.split(":")[0]] += 1
        log.info("live socket %s cut: %s", sid, reason)
        with self._lock:
            client = self._clients.get(sid)
        try:
            if not deaf:
                self._emit("cut", {"reason": reason}, sid)
                self.io.server.disconnect(sid, namespace="/")
        except Exception:  # already gone
            log.debug("cutting %s", sid, exc_info=True)
        self.disconnected(sid)
        if client is not None and client.eio_sid is not None:
            self._close_transport(client.eio_sid, drop_queued=deaf)

    def _close_transport(self, eio_sid: str, *, drop_queued: bool = False) -> None:
        """Close an engine.io transport without waiting for its queue to drain."""
        eio = self.io.server.eio
        sock = eio.sockets.get(eio_sid)
        if sock is None:
            return
        if drop_queued:
            with contextlib.suppress(Exception):
                while True:
                    sock.queue.get_nowait()
                    sock.queue.task_done()
        try:
            sock.close(wait=False, abort=drop_queued)
        except Exception:
            log.debug("closing %s", eio_sid, exc_info=True)
        eio.sockets.pop(eio_sid, None)

    def cut_user(self, user_id: int, reason: str) -> int:
        """An admin disabled the user (or changed their role): cut their sockets now."""
        if self.relay is not None:
            self.relay.cut("user", user_id=user_id, reason=reason)
        with self._lock:
            sids = [sid for sid, c in self._clients.items() if c.user_id == user_id]
        for sid in sids:
            self.cut(sid, reason)
        return len(sids)

    def recheck(self) -> int:
        """Check every open socket's credentials now (a token was revoked); cut the rest.
        Here and, on a control plane, on every replica."""
        if self.relay is not None:
            self.relay.cut("recheck")
        return self._recheck_now()

    def _recheck_now(self) -> int:
        with self._lock:
            sids = list(self._clients)
        gone = [sid for sid in sids if not self._allowed(sid)]
        for sid in gone:
            self.cut(sid, "unauthorized: the session, token or user is no longer valid")
        return len(gone)

    def password_changed(self, user_id: int, keep: str | None, nonce: str, epoch: str) -> int:
        """The user changed their password from the browser session ``keep`` (now renamed
        ``nonce``, at ``epoch``): that session's sockets go on, every other browser
        session's are cut now. (API tokens stay valid: revoke them to cut theirs.)"""
        if self.relay is not None:
            self.relay.cut("password", user_id=user_id, keep=keep, nonce=nonce, epoch=epoch)
        with self._lock:
            mine = [(sid, c) for sid, c in self._clients.items() if c.user_id == user_id]
            for _sid, c in mine:
                if keep is not None and c.nonce == keep:
                    c.nonce, c.epoch = nonce, epoch
        gone = [sid for sid, _c in mine if not self._allowed(sid)]
        for sid in gone:
            self.cut(sid, "unauthorized: the password was changed in another session")
        return len(gone)

    def disconnected(self, sid: str) -> None:
        with self._lock:
            client = self._clients.pop(sid, None)
            for batch_id in client.batches if client else ():
                self._leave(sid, batch_id)

    def end_session(self, nonce: str) -> None:
        """Logout: cut every socket opened by that browser session."""
        if self.relay is not None:
            self.relay.cut("session", nonce=nonce)
        with self._lock:
            sids = [sid for sid, c in self._clients.items() if c.nonce == nonce]
        for sid in sids:
            self.io.server.disconnect(sid, namespace="/")
            self.disconnected(sid)

    def subscribe(self, sid: str, batch_id: str, offsets: dict[Key, int]) -> dict[str, Any]:
        batch = self.service.get_batch(batch_id)  # NotFound for the caller to report
        commands = [(c.id, c.index) for c in batch.commands]
        with self._lock:
            client = self._clients.get(sid)
            if client is None:
                return {"error": "unauthorized", "message": "not connected"}
            if batch_id not in client.batches and len(client.batches) >= self.limits.subscriptions:
                return {
                    "error": "too_many",
                    "message": f"a socket may follow at most {self.limits.subscriptions} "
                    "batches; unsubscribe from one first",
                }
            join_room(_room(batch_id), sid=sid, namespace="/")
            self._rooms[batch_id].add(sid)
            cursors: dict[Key, int] = {}
            backlog: list[dict[str, Any]] = []
            budget = BACKLOG_TOTAL
            for command_id, index in commands:
                for stream in ("stdout", "stderr"):
                    start = max(0, offsets.get((command_id, stream), 0))
                    cursor = self._backlog(
                        batch_id,
                        command_id,
                        index,
                        stream,
                        start,
                        min(budget, BACKLOG_BYTES),
                        backlog,
                    )
                    budget -= cursor - start if cursor > start else 0
                    cursors[(command_id, stream)] = cursor
            client.batches[batch_id] = cursors
            recent = self._recent.get(batch_id)
            statuses = list(recent.commands.values()) if recent else []
            finished = recent.batch if recent else None
            # queued while holding the lock, so no live chunk (collected by the flusher under
            # this lock) can overtake the stored output on its way to this client
            for payload in backlog:
                self._emit("command_output", payload, sid)
        return {
            "ok": True,
            "batch_id": batch_id,
            "status": finished["status"] if finished else batch.status.value,
            "commands": len(commands),
            "statuses": statuses,  # newer than the database; apply over GET /batches/ID
        }

    def _backlog(
        self,
        batch_id: str,
        command_id: str,
        index: int,
        stream: str,
        start: int,
        most: int,
        out: list[dict[str, Any]],
    ) -> int:
        """Append the stored output from ``start`` (at most the last ``most`` bytes) to
        ``out``; return the new cursor."""
        store = self.service.store.output
        size = store.size(batch_id, command_id, stream)
        start = min(max(start, size - most), size)
        cursor = start
        while cursor < size:
            data, cursor, _ = store.read(batch_id, command_id, stream, cursor, MAX_EMIT)
            if not data:
                break
            out.append(_output_json(batch_id, command_id, index, stream, cursor - len(data), data))
        return cursor

    def may_follow(self, sid: str, batch_id: str) -> bool:
        """Only batches of workspaces the user may see (webapp/access.py); a refusal
        answers as for a missing batch and is audited. NotFound for a missing batch."""
        from webapp.access import may_see_batch

        with self._lock:
            client = self._clients.get(sid)
        if client is None:
            return False
        store = self.service.store
        user = store.accounts.get_user(client.user_id)
        if may_see_batch(store, user, store.batches.get(batch_id)):
            return True
        store.audit.append(
            "batch_refused",
            actor=user.name,
            user_id=user.id,
            address=None,
            target=batch_id,
            detail={"via": "socket.io subscribe"},
        )
        return False

    def still_allowed(self, sid: str) -> bool:
        """Re-checked on every subscribe: a logged-out session, a revoked token or a disabled
        user is cut. (Which batches a user may follow: ``may_follow``.)"""
        if self._allowed(sid):
            return True
        # cut the socket just after the refusal is answered (the answer goes out on return)
        cut = threading.Timer(0.2, self.io.server.disconnect, (sid,), {"namespace": "/"})
        cut.daemon = True
        cut.start()
        return False

    def _allowed(self, sid: str) -> bool:
        from webapp.auth import session_epoch

        with self._lock:
            client = self._clients.get(sid)
        if client is None:
            return False
        accounts = self.service.store.accounts
        try:
            user: UserRecord | None = accounts.get_user(client.user_id)
        except NotFound:
            user = None
        return not (
            user is None
            or user.disabled
            or (client.epoch is not None and client.epoch != session_epoch(accounts, user))
            or (client.nonce is not None and accounts.session_ended(client.nonce))
            or (client.token is not None and accounts.user_for_token(client.token) is None)
        )

    def unsubscribe(self, sid: str, batch_id: str) -> None:
        with self._lock:
            client = self._clients.get(sid)
            if client is not None:
                client.batches.pop(batch_id, None)
            self._leave(sid, batch_id)

    def _leave(self, sid: str, batch_id: str) -> None:
        leave_room(_room(batch_id), sid=sid, namespace="/")
        room = self._rooms.get(batch_id)
        if room is not None:
            room.discard(sid)
            if not room:
                del self._rooms[batch_id]
                self._output.pop(batch_id, None)
                self._statuses.pop(batch_id, None)

    # --- the flusher ---------------------------------------------------------------------------

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_S)  # every 50 ms, or at once for a scaling decision
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # a broken client must not stop the stream for others
                log.exception("live flush failed")

    def flush(self) -> None:
        with self._lock:
            output, self._output = self._output, {}
            statuses, self._statuses = self._statuses, {}
            finished, self._batch_status = self._batch_status, []
            scaling, self._scaling = self._scaling, []
            sends: list[tuple[str, str, Any]] = []
            slow = {sid for sid in self._clients if self._backed_up(sid)}
            for batch_id, streams in output.items():
                for sid in self._rooms.get(batch_id, ()):
                    if sid in slow:
                        continue
                    client = self._clients.get(sid)
                    cursors = client.batches.get(batch_id) if client else None
                    if cursors is None:
                        continue
                    for key, chunks in streams.items():
                        for chunk in chunks:
                            self._cut(batch_id, chunk, cursors, key, sid, sends)
            for batch_id, commands in statuses.items():
                for payload in commands.values():
                    sends.append(("command_status", _room(batch_id), payload))
            for payload in finished:
                sends.append(("batch_status", _room(payload["batch_id"]), payload))
        for sid in slow:
            self.cut(sid, "too_slow: this client does not read its messages", deaf=True)
        for name, to, payload in sends:
            self._emit(name, payload, to)
        for payload in scaling:  # to every process's sockets (Socket.IO's message queue)
            self.io.emit("scaling", payload)

    def _backed_up(self, sid: str) -> bool:
        """Whether the socket's unsent messages pass the budget (under the hub's lock)."""
        client = self._clients.get(sid)
        eio = getattr(self.io.server, "eio", None)
        if client is None or client.eio_sid is None or eio is None:
            return False
        sock = eio.sockets.get(client.eio_sid)
        pending = getattr(getattr(sock, "queue", None), "queue", None)
        if not pending:
            return False
        queued = 0
        for packet in list(pending):
            data = getattr(packet, "data", None)
            queued += len(data) if isinstance(data, str | bytes) else 64
            if queued > self.limits.queued_bytes:
                return True
        return False

    # --- the guard: unauthenticated sockets, credentials -------------------------------------

    def _guard_loop(self) -> None:
        last_check = time.monotonic()
        while not self._stop.wait(0.25):
            try:
                self.sweep()
                if time.monotonic() - last_check >= RECHECK_S:
                    last_check = time.monotonic()
                    self._recheck_now()
            except Exception:
                log.exception("live guard failed")

    def sweep(self) -> int:
        """Close the transports that did not authenticate in time."""
        now = time.monotonic()
        with self._lock:
            late = [eio_sid for eio_sid, due in self._unauthenticated.items() if now > due]
            for eio_sid in late:
                del self._unauthenticated[eio_sid]
        for eio_sid in late:
            self.cuts["unauthenticated"] += 1
            self._close_transport(eio_sid)
        return len(late)

    def _cut(
        self,
        batch_id: str,
        chunk: _Chunk,
        cursors: dict[Key, int],
        key: Key,
        sid: str,
        sends: list[tuple[str, str, Any]],
    ) -> None:
        cursor = cursors.get(key, 0)
        end = chunk.offset + len(chunk.data)
        if end <= cursor:
            return  # already sent from the file on subscribe
        if 0 < chunk.offset - cursor <= MAX_EMIT:  # a chunk the hub never saw: from the file
            data, _, _ = self.service.store.output.read(
                batch_id, chunk.command_id, chunk.stream, cursor, chunk.offset - cursor
            )
            if len(data) == chunk.offset - cursor:
                payload = _output_json(
                    batch_id, chunk.command_id, chunk.index, chunk.stream, cursor, data
                )
                sends.append(("command_output", sid, payload))
                cursor = chunk.offset
        start = max(cursor, chunk.offset)
        view = bytes(chunk.data[start - chunk.offset :])
        if len(view) > MAX_EMIT:
            # more than a browser should take in one flush: skip ahead to a line start; the
            # client sees the jump in `offset` and offers the full log as a download
            cut = len(view) - MAX_EMIT
            newline = view.find(b"\n", cut, cut + 4096)
            cut = newline + 1 if newline >= 0 else cut
            view, start = view[cut:], start + cut
        payload = _output_json(batch_id, chunk.command_id, chunk.index, chunk.stream, start, view)
        sends.append(("command_output", sid, payload))
        cursors[key] = end

    # --- metrics -------------------------------------------------------------------------------

    def _metrics_loop(self) -> None:
        if self.role == "replica":
            return  # the control plane sends them to every process's sockets
        while not self._stop.wait(METRICS_S):
            with self._lock:
                anyone = bool(self._clients) or self.role == "control"
            if not anyone:
                continue
            try:
                self.io.emit("metrics", self.metrics())
            except Exception:
                log.exception("cannot publish metrics")

    def metrics(self) -> dict[str, Any]:
        return self.service.metrics_summary()


def _room(batch_id: str) -> str:
    return f"batch:{batch_id}"


def _output_json(
    batch_id: str, command_id: str, index: int, stream: str, offset: int, data: bytes
) -> dict[str, Any]:
    # valid UTF-8 is sent as text, anything else once as base64 (not as U+FFFD escapes,
    # six bytes each). Offsets stay in bytes: ``offset + nbytes`` is where the next starts.
    out: dict[str, Any] = {
        "batch_id": batch_id,
        "command_id": command_id,
        "index": index,
        "stream": stream,
        "offset": offset,
        "nbytes": len(data),
    }
    try:
        out["data"] = data.decode("utf-8")
    except UnicodeDecodeError:
        out["data_b64"] = base64.b64encode(data).decode("ascii")
    return out


def _status_json(e: CommandStatusChanged) -> dict[str, Any]:
    return {
        "batch_id": e.batch_id,
        "command_id": e.command_id,
        "index": e.index,
        "status": e.status.value,
        "class": e.cls,
        "executor": e.executor,
        "reason": e.reason,
        "exit_code": e.exit_code,
        "signal": e.signal,
        "duration_s": e.duration_s,
        "attempt": e.attempt,
        "truncated": e.truncated,
        "at": e.at,
        "final": e.status.final,
    }


# --- wiring ------------------------------------------------------------------------------------


class _CompactJson:
    """JSON for Socket.IO packets: UTF-8 as it is (not \\u escapes), no spaces."""

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("separators", (",", ":"))
        return json.dumps(obj, ensure_ascii=False, **kwargs)

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        return json.loads(text, **kwargs)


def _signed_queue(broker: str) -> Any:
    """Socket.IO's Redis message queue, its messages signed with the cluster key (see
    SignedJson; python-socketio would otherwise put the server's JSON module back)."""
    import socketio as python_socketio

    from sandbox.cluster.events import SignedJson
    from sandbox.cluster.signing import load_key

    signed = SignedJson(load_key())

    class SignedRedisManager(python_socketio.RedisManager):  # type: ignore[misc]
        def set_server(self, server: Any) -> None:
            super().set_server(server)
            self.json = signed

    return SignedRedisManager(
        broker,
        channel="bashfleet-socketio",
        json=signed,
        redis_options={"socket_connect_timeout": 5},  # an unreachable Redis stalls no emit long
    )


def init_live(app: Flask, service: Service) -> SocketIO:
    """Attach Socket.IO to ``app`` (threading mode, simple-websocket, same origin only)."""
    from webapp.auth import auth_failed, session_user

    broker = app.config.get("BROKER") or None
    role = "replica" if app.config.get("REPLICA") else "control" if broker else "embedded"
    queue: dict[str, Any] = {}
    if broker:  # scale-out: broadcasts (metrics, scaling) reach every portal process's sockets
        queue["client_manager"] = _signed_queue(broker)
    socketio = SocketIO(
        app,
        async_mode="threading",
        **queue,
        json=_CompactJson,
        cors_allowed_origins=app.config.get("SOCKET_ORIGINS"),  # None: same origin only
        manage_session=False,  # read the cookie session; logout lives in the database
        max_http_buffer_size=64 << 10,
        ping_interval=10,
        ping_timeout=20,
    )
    limits = LiveLimits(
        auth_s=float(app.config.get("SOCKET_AUTH_S", LiveLimits.auth_s)),
        sockets_per_user=int(app.config.get("SOCKETS_PER_USER", LiveLimits.sockets_per_user)),
        subscriptions=int(app.config.get("SUBSCRIPTIONS_PER_SOCKET", LiveLimits.subscriptions)),
        queued_bytes=int(app.config.get("SOCKET_QUEUE_KB", LiveLimits.queued_bytes >> 10)) << 10,
    )
    relay = app.extensions.get("bashfleet_relay")
    hub = LiveHub(socketio, service, limits, role=role, relay=relay)
    app.extensions["bashfleet_live"] = hub
    app.extensions["bashfleet_end_session"] = hub.end_session
    eio = socketio.server.eio
    on_open, on_close = eio.handlers["connect"], eio.handlers["disconnect"]

    def _opened(eio_sid: str, environ: Any) -> Any:
        hub.opened(eio_sid)
        return on_open(eio_sid, environ)

    def _closed(eio_sid: str, reason: Any = None) -> Any:
        hub.closed(eio_sid)
        return on_close(eio_sid, reason)

    eio.on("connect", _opened)
    eio.on("disconnect", _closed)

    def _connect(auth: Any = None) -> None:
        user, nonce, epoch = None, None, None
        token = auth.get("token") if isinstance(auth, dict) else None
        if isinstance(token, str) and token:
            user = service.store.accounts.user_for_token(token[:200])
            if user is None and not auth_failed.allowed(request.remote_addr):
                raise Refused("rate_limited: too many failed authentications")
            if user is None:
                auth_failed.note(request.remote_addr, "socket", "invalid or revoked token")
        else:
            from flask import session

            user = session_user()
            nonce = session.get("nonce") if user else None
            epoch = session.get("epoch") if user else None
        if user is None:
            raise Refused("unauthorized: log in, or connect with auth.token")
        eio_sid = socketio.server.manager.eio_sid_from_sid(_sid(), "/")
        refused = hub.connected(
            _sid(), user, nonce, token if nonce is None else None, eio_sid, epoch
        )
        if refused:
            raise Refused(refused)

    def _disconnect(*_args: Any) -> None:
        hub.disconnected(_sid())

    def _subscribe(message: Any = None) -> dict[str, Any]:
        batch_id = message.get("batch_id") if isinstance(message, dict) else None
        if not isinstance(batch_id, str) or not batch_id or len(batch_id) > 64:
            return {"error": "invalid_input", "message": 'send {"batch_id": ID}'}
        if not hub.still_allowed(_sid()):
            return {"error": "unauthorized", "message": "the session has ended; log in again"}
        try:
            if not hub.may_follow(_sid(), batch_id):
                raise NotFound(batch_id)
            return hub.subscribe(_sid(), batch_id, _offsets(message.get("offsets")))
        except NotFound:
            return {"error": "not_found", "message": f"no batch {batch_id}"}

    def _unsubscribe(message: Any = None) -> dict[str, Any]:
        batch_id = message.get("batch_id") if isinstance(message, dict) else None
        if isinstance(batch_id, str):
            hub.unsubscribe(_sid(), batch_id)
        return {"ok": True}

    socketio.on_event("connect", _connect)
    socketio.on_event("disconnect", _disconnect)
    socketio.on_event("subscribe", _subscribe)
    socketio.on_event("unsubscribe", _unsubscribe)
    hub.start()
    return socketio


def _sid() -> str:
    sid: str = request.sid  # type: ignore[attr-defined]
    return sid


def _offsets(raw: Any) -> dict[Key, int]:
    """``{"CID": {"stdout": 120, "stderr": 0}}`` -> ``{(CID, "stdout"): 120, ...}``."""
    out: dict[Key, int] = {}
    if not isinstance(raw, dict):
        return out
    for command_id, streams in list(raw.items())[:100_000]:
        if not isinstance(command_id, str) or not isinstance(streams, dict):
            continue
        for stream in ("stdout", "stderr"):
            value = streams.get(stream)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                out[(command_id, stream)] = value
    return out


__all__ = ["LiveHub", "init_live"]
