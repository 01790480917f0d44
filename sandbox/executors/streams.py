"""Turning a raw byte stream into capped, line-sized chunks for an ``OutputSink``.

No I/O here: the executor reads, ``LineForwarder`` decides what the sink sees.
"""

from __future__ import annotations

from sandbox.executors.base import CHUNK_LIMIT, OutputSink, truncation_marker


def _pieces(data: bytes) -> list[bytes]:
    """Split ``data`` into chunks of at most CHUNK_LIMIT, at line ends where possible."""
    out = []
    while len(data) > CHUNK_LIMIT:
        cut = data.rfind(b"\n", 0, CHUNK_LIMIT) + 1 or CHUNK_LIMIT
        out.append(data[:cut])
        data = data[cut:]
    if data:
        out.append(data)
    return out


class LineForwarder:
    """Forwards one stream whole lines at a time, under a byte cap.

    A partial line is held back until its newline arrives, unless it grows past
    CHUNK_LIMIT (then it is flushed in CHUNK_LIMIT pieces, so a huge single line
    never sits in memory) or the stream ends. After ``cap`` bytes the sink gets
    ``truncation_marker(cap)`` once and everything else is dropped.
    """

    def __init__(self, stream: str, sink: OutputSink, cap: int) -> None:
        self.stream = stream
        self._sink = sink
        self._cap = max(0, cap)
        self._pending = bytearray()
        self.forwarded = 0
        self.truncated = False

    def feed(self, data: bytes) -> None:
        if self.truncated:
            return
        self._pending += data
        cut = self._pending.rfind(b"\n") + 1
        if cut == 0:
            if len(self._pending) < CHUNK_LIMIT:
                return
            cut = len(self._pending) - len(self._pending) % CHUNK_LIMIT
        ready = bytes(self._pending[:cut])
        del self._pending[:cut]
        self._emit(ready)

    def close(self) -> None:
        """The stream ended: flush what is left of the last line."""
        if self._pending and not self.truncated:
            self._emit(bytes(self._pending))
        self._pending.clear()

    def _emit(self, data: bytes) -> None:
        room = self._cap - self.forwarded
        over = len(data) > room
        if over:
            data = data[:room]
        for piece in _pieces(data):
            self._sink(self.stream, piece)
        self.forwarded += len(data)
        if over:
            self.truncated = True
            self._pending.clear()
            self._sink(self.stream, truncation_marker(self._cap))
