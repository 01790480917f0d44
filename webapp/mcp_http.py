"""``/mcp``: the MCP tools (bashfleet/mcp_server.py) over MCP's streamable HTTP transport.

Flask is WSGI and the SDK's transport is ASGI. One event-loop thread, started by the
first request, runs the SDK's session manager in stateless mode (every POST stands
alone: no session to pin to this process, nothing kept between calls); each POST is
handed to that loop with its body, and what the SDK sends back (a JSON answer, or an SSE
stream carrying progress notifications and then the answer) is streamed to the WSGI
thread through a queue. GET and DELETE are 405: a stateless server offers no stream of
its own and has no session to end.

Who: ``Authorization: Bearer TOKEN``, the API's tokens, checked here before the SDK sees
anything (a missing or bad token is 401, bad ones rate-limited per address as for
``/api/v1``). What: every tool call goes through this app's own REST API, in process
(httpx's WSGI transport), with the caller's token and address, so roles (a viewer may
classify and list, never run or cancel), rate limits, judging, workspaces and the audit
log are exactly those of ``/api/v1``.

Limits: ``MCP_CALLS_PER_USER`` requests in flight per user (429 past it: a waiting
run_batch holds a serving thread); ``MCP_WAIT_S``, how long run_batch waits before it
answers with the batch still running (under the SDK client's 300 s read timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import select
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from webapp.errors import ApiError

log = logging.getLogger(__name__)

mcp_http = Blueprint("mcp_http", __name__)

_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
_DONE = object()


class AsgiBridge:
    """Runs one ASGI app (and the async context it needs) on a private event loop thread
    and serves WSGI requests with it, streaming the answer back."""

    def __init__(self, app: Any, context: Any) -> None:
        self._app, self._context = app, context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                threading.Thread(target=self._run, name="mcp-loop", daemon=True).start()
                self._started.wait(10)
                if self._loop is None:
                    raise RuntimeError("the MCP event loop did not start")
        return self._loop

    def _run(self) -> None:
        async def main() -> None:
            async with self._context:
                self._loop = asyncio.get_running_loop()
                self._started.set()
                await asyncio.Event().wait()  # until the process ends

        try:
            asyncio.run(main())
        except Exception:
            log.exception("the MCP event loop ended")
        finally:
            self._loop = None

    def serve(
        self, scope: dict[str, Any], body: bytes, peer: Any = None, timeout_s: float = 30.0
    ) -> tuple[int, list[tuple[str, str]], Iterator[bytes]]:
        """The answer's status, headers and body. ``peer``, the client's socket if the
        server gives it (gunicorn does), is watched while the answer is awaited: WSGI
        tells nothing of a client that leaves until a write fails, and a long call may
        write nothing for minutes."""
        loop = self._ensure()
        out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        given = False

        async def receive() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # no disconnect news: the task is cancelled instead
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            out.put(message)

        task = asyncio.run_coroutine_threadsafe(self._app(scope, receive, send), loop)
        task.add_done_callback(lambda _t: out.put(_DONE))
        try:
            start = out.get(timeout=timeout_s)
        except queue.Empty:
            task.cancel()
            raise ApiError(503, "busy", "the MCP server did not answer in time") from None
        if start is _DONE or start.get("type") != "http.response.start":
            if start is _DONE and not task.cancelled() and task.exception() is not None:
                log.error("MCP request failed", exc_info=task.exception())
            raise ApiError(503, "unavailable", "the MCP server gave no answer")
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in start.get("headers", [])
            if k.lower() not in _HOP_BY_HOP
        ]

        def chunks() -> Iterator[bytes]:
            try:
                while True:
                    try:
                        message = out.get(timeout=0.5)
                    except queue.Empty:
                        if peer is not None and _peer_closed(peer):
                            return  # the client left: cancel the call (below)
                        continue
                    if message is _DONE:
                        return
                    if message.get("type") != "http.response.body":
                        continue
                    if message.get("body"):
                        yield bytes(message["body"])
                    if not message.get("more_body"):
                        return
            finally:
                # the client went away (or the answer ended): a call still running is
                # cancelled, and run_batch cancels its batch on the way out
                task.cancel()

        return int(start["status"]), headers, chunks()


def _peer_closed(sock: socket.socket) -> bool:
    """The client closed its end (readable, and nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError, ValueError):  # ValueError: TLS socket
        return False
    except OSError:
        return True


class CallSlots:
    """At most ``limit`` MCP requests in flight per user."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()

    def take(self, user_id: int) -> bool:
        with self._lock:
            if self._held.get(user_id, 0) >= self.limit:
                return False
            self._held[user_id] = self._held.get(user_id, 0) + 1
            return True

    def give(self, user_id: int) -> None:
        with self._lock:
            left = self._held.get(user_id, 1) - 1
            if left:
                self._held[user_id] = left
            else:
                self._held.pop(user_id, None)


def _bridge(app: Flask) -> AsgiBridge:
    bridge: AsgiBridge | None = app.extensions.get("bashfleet_mcp")
    if bridge is None:
        with _BUILD_LOCK:
            bridge = app.extensions.get("bashfleet_mcp")
            if bridge is None:
                bridge = app.extensions["bashfleet_mcp"] = _build(app)
    return bridge


_BUILD_LOCK = threading.Lock()


def _build(app: Flask) -> AsgiBridge:
    from mcp.server.mcpserver import Context
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings

    from bashfleet.backends import Backend, PortalBackend
    from bashfleet.mcp_server import build_server
    from sandbox.events import BatchFinished, CommandStatusChanged, Event
    from sandbox.service import Service

    class InProcessBackend(PortalBackend):
        """The REST API in process, and the end of a batch seen on the service's bus."""

        def watch(self, batch_id: str, wake: Callable[[], None]) -> Callable[[], None]:
            def on(event: Event) -> None:
                if (
                    isinstance(event, CommandStatusChanged | BatchFinished)
                    and event.batch_id == batch_id
                ):
                    wake()

            service: Service = app.extensions["bashfleet"]
            return service.subscribe(on)

    @contextlib.contextmanager
    def as_caller(ctx: Context) -> Iterator[Backend]:
        # the view checked this token; the REST API checks it again, with its role
        headers = ctx.headers or {}
        token = headers.get("authorization", "")[7:].strip()
        scope_client = getattr(ctx.request_context.request, "client", None)
        address = scope_client.host if scope_client else "127.0.0.1"
        transport = httpx.WSGITransport(app=app, remote_addr=address)
        backend = InProcessBackend("http://bashfleet.mcp", token, transport=transport)
        try:
            yield backend
        finally:
            backend.close()

    server = build_server(
        as_caller, mode="on this portal", wait_limit_s=float(app.config["MCP_WAIT_S"])
    )
    manager = StreamableHTTPSessionManager(
        server._lowlevel_server,  # the SDK's own streamable_http_app() does the same
        stateless=True,
        # bearer tokens only, never cookies: a page that rebinds a name to this host has no
        # token to send, so the Host/Origin checks would guard nothing here
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        max_request_body_size=app.config["MAX_CONTENT_LENGTH"],
    )
    return AsgiBridge(manager.handle_request, manager.run())


def _unauthorized(message: str) -> Response:
    response = jsonify({"error": "unauthorized", "message": message})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="bashfleet"'
    return response


@mcp_http.route("/mcp", methods=["GET", "POST", "DELETE"])
def endpoint() -> Response:
    from webapp.auth import _authenticate

    if request.method != "POST":
        response = jsonify(
            {
                "error": "method_not_allowed",
                "message": "this MCP endpoint is stateless: POST JSON-RPC messages to it",
            }
        )
        response.status_code = 405
        response.headers["Allow"] = "POST"
        return response
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        return _unauthorized(
            "send `Authorization: Bearer TOKEN` (create one with `bashfleet token create USER`)"
        )
    try:
        user = _authenticate()
    except ApiError as e:
        if e.status == 401:
            return _unauthorized(e.message)
        raise
    g.user = user
    slots: CallSlots = current_app.extensions["bashfleet_mcp_slots"]
    if not slots.take(user.id):
        raise ApiError(
            429, "rate_limited", f"at most {slots.limit} MCP requests at a time per user"
        )
    try:
        status, headers, body = _bridge(current_app).serve(
            _scope(), request.get_data(), request.environ.get("gunicorn.socket")
        )
    except BaseException:
        slots.give(user.id)
        raise

    def released() -> Iterator[bytes]:
        try:
            yield from body
        finally:
            slots.give(user.id)

    return Response(released(), status=status, headers=headers, direct_passthrough=True)


def _scope() -> dict[str, Any]:
    environ = request.environ
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": request.scheme,
        "path": "/mcp",
        "raw_path": b"/mcp",
        "root_path": "",
        "query_string": environ.get("QUERY_STRING", "").encode("latin-1"),
        "headers": [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()
        ],
        "client": (request.remote_addr or "127.0.0.1", 0),
        "server": (environ.get("SERVER_NAME", "localhost"), int(environ.get("SERVER_PORT", 80))),
    }


def init_mcp_http(app: Flask) -> None:
    app.config.setdefault("MCP_WAIT_S", 240)
    app.config.setdefault("MCP_CALLS_PER_USER", 8)
    app.extensions["bashfleet_mcp_slots"] = CallSlots(int(app.config["MCP_CALLS_PER_USER"]))
    app.register_blueprint(mcp_http)
