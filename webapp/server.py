"""gunicorn's threaded worker with a guard in front: slow or idle clients hold no thread.

Why threads and not gevent: the engine runs in this process and is built on real threads
(the scheduler, watchers that ``select`` on pidfds and ``os.read`` raw pipes, docker-py,
SQLite calls that block in C, per-thread ``PR_SET_PDEATHSIG``). Monkey-patching would
turn those into greenlets on one OS thread, where any blocking C call stalls every
client. So the worker stays threaded and the event loop that gthread already has does
the waiting:

- a request is handed to a thread only once its headers (and its body, up to
  ``max_body``) have arrived; until then it sits in the poller with a deadline
  (``header_timeout_s``, then ``body_timeout_s``) and costs no thread;
- each address may hold at most ``per_address`` connections (a websocket counts);
- a thread's reads and writes on a connection time out after ``io_timeout_s``, so a
  client that stops reading its answer frees the thread too.

One exception: an upload into a workspace (``PUT /api/v1/workspaces/NAME/files``) goes to
a thread as soon as its headers are in, and the thread streams its body to disk (up to
``max_upload``, ``BASHFLEET_UPLOAD_MAX_BYTES``; reads still time out after
``io_timeout_s``); the endpoint authenticates before reading a byte of it.

Requests beyond the limits get a short HTTP error written from the loop (431 headers too
large, 413 body too large, 408 too slow, 503 too many connections) and are closed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import selectors
import socket
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:", re.IGNORECASE)
_HEADERS_END = b"\r\n\r\n"
_UPLOAD = re.compile(rb"PUT /api/v1/workspaces/[A-Za-z0-9_][A-Za-z0-9._-]{0,63}/files[? ]")


@dataclass(frozen=True)
class ServerLimits:
    """The guard's limits; ``from_env`` reads them from ``BASHFLEET_*`` variables."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    io_timeout_s: float = 60.0
    per_address: int = 128
    max_header_bytes: int = 64 << 10
    max_body: int = (2 << 20) + (64 << 10)
    max_upload: int = 512 << 20

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ServerLimits:
        env = dict(os.environ if env is None else env)
        return cls(
            header_timeout_s=_number(env, "BASHFLEET_HEADER_TIMEOUT_S", cls.header_timeout_s),
            body_timeout_s=_number(env, "BASHFLEET_BODY_TIMEOUT_S", cls.body_timeout_s),
            io_timeout_s=_number(env, "BASHFLEET_IO_TIMEOUT_S", cls.io_timeout_s),
            per_address=int(_number(env, "BASHFLEET_CONNECTIONS_PER_ADDRESS", cls.per_address)),
            max_upload=_bytes(env, "BASHFLEET_UPLOAD_MAX_BYTES", cls.max_upload),
        )


def _bytes(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise SystemExit(f"{name} must be a whole number of bytes, not {raw!r}")
    return int(raw)


def _number(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, not {raw!r}") from None
    if not 0 < value <= 86400:
        raise SystemExit(f"{name} must be more than 0 and at most 86400, not {raw!r}")
    return value


LIMITS = ServerLimits()  # set by `serve` before the worker is forked


class PrereadSocket:
    """A socket whose first bytes were read by the event loop: ``recv`` gives them out
    before reading the socket again; everything else is the socket's."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def recv(self, size: int, *flags: int) -> bytes:
        if self.buffer:
            data = bytes(self.buffer[:size])
            del self.buffer[:size]
            return data
        return self.sock.recv(size, *flags)

    def setblocking(self, flag: bool) -> None:
        # a thread never blocks on a client for ever: reads and writes time out
        self.sock.settimeout(LIMITS.io_timeout_s if flag else 0.0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class GuardedConn(TConn):  # type: ignore[misc]
    def __init__(self, cfg: Any, sock: Any, client: Any, server: Any, worker: GuardedWorker):
        super().__init__(cfg, PrereadSocket(sock), client, server)
        self.worker = worker
        self.address = client[0] if isinstance(client, tuple) else str(client)
        self.ready = False  # a whole request is in the buffer: a thread may take it
        self.deadline = 0.0
        self.closed = False
        self.registered = False  # in the poller, reading
        self.need: int | None = None  # bytes of the whole request, once its headers are in
        self.streamed = False  # an upload: its body is read by the thread

    def close(self, graceful: bool = False) -> None:
        if not self.closed:
            self.closed = True
            self.worker.released(self)
        super().close(graceful)


class GuardedWorker(ThreadWorker):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # hundreds of threads share the GIL: hand it over more often than every 5 ms, so that
        # the loop (accepting, reading requests) and short requests do not queue behind them
        sys.setswitchinterval(0.001)
        _few_arenas()
        self.per_address: dict[str, int] = {}
        self.reading: dict[GuardedConn, None] = {}  # insertion order ~ deadline order

    # -- connections ---------------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        address = client_addr[0] if isinstance(client_addr, tuple) else str(client_addr)
        if self.per_address.get(address, 0) >= LIMITS.per_address:
            _answer(client_sock, 503, "too many connections from your address")
            client_sock.close()
            return
        self.per_address[address] = self.per_address.get(address, 0) + 1
        self.nr_conns += 1
        conn = GuardedConn(self.cfg, client_sock, client_addr, listener.getsockname(), self)
        self.enqueue_req(conn)

    def released(self, conn: GuardedConn) -> None:
        left = self.per_address.get(conn.address, 1) - 1
        if left > 0:
            self.per_address[conn.address] = left
        else:
            self.per_address.pop(conn.address, None)

    def enqueue_req(self, conn: GuardedConn) -> None:
        """Every path to a thread comes here (new, kept-alive, read-ahead): only a whole
        request goes on; otherwise the loop reads it first."""
        if conn.ready:
            conn.ready = False
            conn.data_ready = True
            super().enqueue_req(conn)
            return
        if conn.parser is not None:  # read-ahead of a kept-alive connection
            conn.sock.buffer[:0] = conn.parser.unreader.take_buffered()
        conn.sock.sock.setblocking(False)
        conn.deadline = time.monotonic() + LIMITS.header_timeout_s
        self.reading[conn] = None
        if not self._read(conn):
            self.poller.register(conn.sock.sock, selectors.EVENT_READ, partial(self._on_data, conn))
            conn.registered = True

    def _on_data(self, conn: GuardedConn, _sock: Any) -> None:
        self._read(conn)

    def _read(self, conn: GuardedConn) -> bool:
        """Read what is there; True when the connection left the reading phase."""
        buf = conn.sock.buffer
        try:
            while len(buf) <= LIMITS.max_header_bytes + LIMITS.max_body:
                data = conn.sock.sock.recv(256 << 10)
                if not data:
                    self._drop(conn)
                    return True
                buf += data
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(conn)
            return True
        if conn.need is None:
            end = buf.find(_HEADERS_END, 0, LIMITS.max_header_bytes)
            if end < 0:
                if len(buf) >= LIMITS.max_header_bytes:
                    return self._refuse(conn, 431, "the request headers are too large")
                return False
            conn.need = _needed(bytes(buf[: end + 2]), end + 4)
            conn.streamed = _UPLOAD.match(buf) is not None
            # the headers are in: the body gets its own deadline
            conn.deadline = time.monotonic() + LIMITS.body_timeout_s
        if conn.streamed:
            if conn.need > LIMITS.max_header_bytes + LIMITS.max_upload:
                return self._refuse(conn, 413, "the upload is too large")
        elif conn.need > LIMITS.max_header_bytes + LIMITS.max_body:
            return self._refuse(conn, 413, "the request body is too large")
        if conn.streamed:
            pass  # the thread reads the body
        elif conn.need == CHUNKED:
            if not buf.endswith(b"0\r\n\r\n"):
                if len(buf) > LIMITS.max_header_bytes + LIMITS.max_body:
                    return self._refuse(conn, 413, "the request body is too large")
                return False
        elif len(buf) < conn.need:
            return False
        self._unregister(conn)
        self.reading.pop(conn, None)
        conn.need = None
        conn.streamed = False
        conn.ready = True
        self.enqueue_req(conn)
        return True

    def _unregister(self, conn: GuardedConn) -> None:
        if conn.registered:
            conn.registered = False
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock.sock)

    def _refuse(self, conn: GuardedConn, status: int, message: str) -> bool:
        _answer(conn.sock.sock, status, message)
        self._drop(conn)
        return True

    def _drop(self, conn: GuardedConn) -> None:
        self.reading.pop(conn, None)
        self._unregister(conn)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c in self.reading if c.deadline <= now]:
            self._refuse(conn, 408, "the request did not arrive in time")

    def finish_request(self, conn: GuardedConn, fs: Any) -> None:
        super().finish_request(conn, fs)
        # a pipelined request already read into the buffer does not make the socket
        # readable again: take it on now, not at the keep-alive timeout
        if conn.sock.buffer and conn in self.keepalived_conns:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
            self.keepalived_conns.remove(conn)
            self.enqueue_req(conn)

    def on_client_socket_readable(self, conn: GuardedConn, client: Any) -> None:
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.enqueue_req(conn)

    def is_parent_alive(self) -> bool:
        alive: bool = super().is_parent_alive()
        if not alive and ON_PARENT_DEATH:
            for fn in ON_PARENT_DEATH:
                fn()
        return alive


def _few_arenas() -> None:
    """glibc gives each busy thread a malloc arena of its own; with hundreds of threads the
    freed memory scattered over them is seldom returned. Two arenas keep the RSS honest."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX


# called in the worker when gunicorn's main process has died (see webapp.cli)
ON_PARENT_DEATH: list[Any] = []


CHUNKED = -1


def _needed(head: bytes, body_start: int) -> int:
    """How many bytes the whole request takes (headers and body), from its headers;
    CHUNKED for a chunked body (complete at its last, empty chunk)."""
    if _CHUNKED.search(head):
        return CHUNKED
    match = _CONTENT_LENGTH.search(head)
    raw = match.group(1).strip() if match else b""
    if not raw.isdigit():
        return body_start  # no body, or one that gunicorn refuses itself
    return body_start + int(raw) if len(raw) <= 15 else 1 << 62


def _answer(sock: socket.socket, status: int, message: str) -> None:
    reasons = {
        408: "Request Timeout",
        413: "Content Too Large",
        431: "Request Header Fields Too Large",
        503: "Service Unavailable",
    }
    code = reasons[status].lower().replace(" ", "_")
    body = ('{"error": "%s", "message": "%s"}\n' % (code, message)).encode()  # noqa: UP031
    head = (
        f"HTTP/1.1 {status} {reasons[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        sock.setblocking(False)
        sock.send(head + body)
    except OSError:
        pass
