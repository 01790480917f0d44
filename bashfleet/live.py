"""A batch's live events over the portal's Socket.IO, with resume.

``Client.stream(batch_id)`` returns a LiveStream: iterate it for ``(name, payload)``
pairs (``command_status``, ``command_output``, and last ``batch_status``). It keeps
each stream's byte offset; after a dropped connection it reconnects and subscribes
from those offsets, and when the batch ends it reads whatever the socket did not
bring (the portal sends at most the last 256 KiB of a stream on subscribe, and thins
floods) from the REST API, so every byte arrives exactly once, in order per stream.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from bashfleet.client import ACTIVE, ApiError

if TYPE_CHECKING:
    from bashfleet.client import Client

Key = tuple[str, str]  # (command id, stream)
LiveEvent = tuple[str, dict[str, Any]]
_DROPPED = "\x00dropped"


class LiveStream:
    def __init__(
        self,
        client: Client,
        token: str,
        batch_id: str,
        offsets: dict[Key, int] | None = None,
        *,
        reconnects: int = 5,
    ) -> None:
        self.client = client
        self.token = token
        self.batch_id = batch_id
        self.offsets: dict[Key, int] = dict(offsets or {})
        self.reconnects = reconnects
        self._events: queue.Queue[LiveEvent] = queue.Queue()
        self._sio: Any = None
        self.connections = 0  # how many times it connected (1 + reconnects)

    def __iter__(self) -> Iterator[LiveEvent]:
        tries = 0
        try:
            while True:
                try:
                    ended = yield from self._session()
                except ApiError as e:
                    if e.code != "unreachable" or tries >= self.reconnects:
                        raise
                    ended = False
                if ended:
                    yield from self._rest_tail()
                    return
                tries += 1
                if tries > self.reconnects:
                    raise ApiError("unreachable", "the live stream kept dropping; gave up")
                time.sleep(min(2.0, 0.1 * 2**tries))
        finally:
            self.close()

    def close(self) -> None:
        if self._sio is not None and self._sio.connected:
            self._sio.disconnect()
        self._sio = None

    def _session(self) -> Generator[LiveEvent, None, bool]:
        """One connection; returns True when the batch ended, False when it dropped."""
        ack = self._connect()
        for status in ack.get("statuses", []):
            yield "command_status", status
        if ack.get("status") not in ACTIVE:
            self._drain_quietly()
            return True
        while True:
            try:
                name, payload = self._events.get(timeout=1.0)
            except queue.Empty:
                if self.client.batch(self.batch_id)["status"] not in ACTIVE:
                    return True  # an end we missed: the REST tail completes it
                continue
            if name == _DROPPED:
                return False
            if name == "batch_status":
                if payload.get("status") not in ACTIVE:
                    return True  # the REST tail gives the last word, after any output
                continue
            if name == "command_output":
                yield from self._output(payload)
            else:
                yield name, payload

    def _connect(self) -> dict[str, Any]:
        import socketio

        self.close()
        events: queue.Queue[LiveEvent] = queue.Queue()  # this connection's own
        self._events = events
        sio = socketio.Client(reconnection=False)
        for name in ("command_output", "command_status", "batch_status"):
            sio.on(name, lambda payload, name=name: events.put((name, payload)))
        sio.on("disconnect", lambda *_a: events.put((_DROPPED, {})))
        try:
            sio.connect(
                self.client.url,
                auth={"token": self.token},
                transports=["websocket"],
                wait_timeout=10,
            )
            self._sio = sio
            self.connections += 1
            offsets: dict[str, dict[str, int]] = {}
            for (command_id, stream), at in self.offsets.items():
                offsets.setdefault(command_id, {})[stream] = at
            ack = sio.call("subscribe", {"batch_id": self.batch_id, "offsets": offsets}, timeout=10)
        except (socketio.exceptions.SocketIOError, OSError) as e:
            raise ApiError("unreachable", f"live stream of {self.client.url}: {e}") from e
        if not isinstance(ack, dict) or "error" in ack:
            ack = ack if isinstance(ack, dict) else {}
            raise ApiError(str(ack.get("error", "bad_response")), str(ack.get("message", "")))
        return ack

    def _output(self, payload: dict[str, Any]) -> Iterator[LiveEvent]:
        """A chunk, once: one already seen (after a resume) is dropped, and a gap before it
        (a thinned flood) is read from the REST API first."""
        key = (payload["command_id"], payload["stream"])
        at = self.offsets.get(key, 0)
        if payload["offset"] < at:
            return
        if payload["offset"] > at:
            yield from self._fill(
                payload["command_id"], payload["index"], payload["stream"], payload["offset"]
            )
            if payload["offset"] != self.offsets.get(key, 0):
                return  # the stored output lags: the REST tail at the end brings it
        self.offsets[key] = payload["offset"] + payload["nbytes"]
        yield "command_output", payload

    def _fill(
        self, command_id: str, index: int, stream: str, upto: int | None = None
    ) -> Iterator[LiveEvent]:
        key = (command_id, stream)
        while upto is None or self.offsets.get(key, 0) < upto:
            at = self.offsets.get(key, 0)
            limit = 1 << 20 if upto is None else upto - at
            chunk = self.client.output(self.batch_id, command_id, stream, at, limit)  # type: ignore[arg-type]
            if chunk["next_offset"] <= at:
                return
            self.offsets[key] = chunk["next_offset"]
            yield (
                "command_output",
                {
                    "batch_id": self.batch_id,
                    "command_id": command_id,
                    "index": index,
                    "stream": stream,
                    "data": chunk["data"],
                    "offset": at,
                    "nbytes": chunk["next_offset"] - at,
                },
            )

    def _drain_quietly(self, quiet_s: float = 0.3) -> None:
        """After a subscribe to an ended batch: the backlog came before the ack; let it in."""
        time.sleep(quiet_s)

    def _rest_tail(self) -> Iterator[LiveEvent]:
        """Output the socket did not bring (older than the backlog, thinned, or in flight)."""
        while True:
            try:
                name, payload = self._events.get_nowait()
            except queue.Empty:
                break
            if name == "command_output":
                yield from self._output(payload)
            elif name == "command_status":
                yield name, payload
        # the database lags the live events by a write: read it once it has the end too
        batch = self.client.batch(self.batch_id)
        deadline = time.monotonic() + 10
        while batch["status"] in ACTIVE and time.monotonic() < deadline:
            time.sleep(0.05)
            batch = self.client.batch(self.batch_id)
        for command in batch.get("commands", []):
            for stream in ("stdout", "stderr"):
                yield from self._fill(command["id"], command["index"], stream)
        yield "batch_status", {"batch_id": self.batch_id, "status": batch["status"]}
