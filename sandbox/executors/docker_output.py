"""Turn a container's demultiplexed output frames into capped, line-sized chunks. No I/O here.

Frames arrive in arbitrary pieces; ``OutputSplitter`` forwards whole lines where possible,
never more than ``CHUNK_LIMIT`` bytes at a time, and enforces the per-stream cap with one
``truncation_marker`` line, after which that stream is drained without forwarding.
"""

from __future__ import annotations

from sandbox.executors.base import CHUNK_LIMIT, OutputSink, truncation_marker


class OutputSplitter:
    def __init__(self, sink: OutputSink, cap: int) -> None:
        self._sink = sink
        self._cap = cap
        self._pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self._sent: dict[str, int] = {"stdout": 0, "stderr": 0}
        self.truncated = False

    def feed(self, stream: str, data: bytes) -> None:
        buf = self._pending[stream] + data
        cut = buf.rfind(b"\n") + 1
        if cut == 0 and len(buf) >= CHUNK_LIMIT:
            cut = len(buf)
        self._pending[stream] = buf[cut:]
        self._forward(stream, buf[:cut])

    def flush(self) -> None:
        for stream, rest in self._pending.items():
            self._pending[stream] = b""
            self._forward(stream, rest)

    def _forward(self, stream: str, data: bytes) -> None:
        room = self._cap - self._sent[stream]
        if not data or room < 0:
            return
        if len(data) > room:
            data = data[:room]
            self._sent[stream] = self._cap + 1  # past the cap: drain from now on
            self.truncated = True
            self._chunks(stream, data)
            self._sink(stream, truncation_marker(self._cap))
            return
        self._sent[stream] += len(data)
        self._chunks(stream, data)

    def _chunks(self, stream: str, data: bytes) -> None:
        while data:
            cut = len(data) if len(data) <= CHUNK_LIMIT else data.rfind(b"\n", 0, CHUNK_LIMIT) + 1
            if cut <= 0:
                cut = CHUNK_LIMIT
            self._sink(stream, data[:cut])
            data = data[cut:]
