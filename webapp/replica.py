"""A web replica: ``bashfleet serve --broker URL --replica``.

Several portal processes can serve one cluster behind a load balancer. Exactly one
control plane (``serve --broker URL``) owns the scheduler, schedules, retention and every
state change; a replica shares its database, data volume, secret key, cluster key and
broker, and:

- serves pages, Socket.IO and GET reads of the API itself, from the database and the
  shared output files; its live hub follows the control plane's relayed events
  (sandbox/cluster/events.py), so a browser on any process sees every byte once;
- forwards every other request of its own API and MCP paths (non-GET ``/api/v1/...``,
  ``/mcp``, and the reads that need the engine: metrics, nodes, workspace files and
  artifacts) to the advertised control plane only, with the caller's headers and body
  unchanged (it adds its peer's address to ``X-Forwarded-For``, as any proxy does, and
  never credentials of its own), streaming the answer back as it comes;
- answers 503 ``{"error": "unavailable"}`` to those when no control plane is advertised
  or it does not answer, while its pages and reads go on.

It starts no scheduler, executors, schedules, autoscaler, retention or judging pool.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis
import requests

from sandbox.cluster.events import RelayReader, control_url
from sandbox.events import Event
from sandbox.service import Service, ServiceConfig
from sandbox.store import BatchRecord, CommandRecord, Page, Store, WorkspaceRecord

log = logging.getLogger(__name__)

# reads that need the engine (its scheduler, metrics, nodes, or the workspace's node)
FORWARDED_READS = frozenset({"api.metrics_json", "api.list_nodes", "health.metrics"})
FORWARDED_BLUEPRINTS = frozenset({"files_api"})
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",  # set again from the body as it is sent
    }
)
URL_CACHE_S = 1.0
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 900.0  # MCP waits and large downloads stream within this between bytes
CHUNK = 64 << 10


class ControlPlaneOnly(Exception):
    """This read needs the control plane: the replica forwards the request."""


class ReplicaService:
    """What a replica's views and live hub use of ``Service``: the store and its reads.
    Anything else raises ControlPlaneOnly, and the request is forwarded."""

    schedules = None

    def __init__(self, config: ServiceConfig, store: Store, relay: RelayReader) -> None:
        from sandbox.notify_email import smtp_settings

        self.config = config
        self.store = store
        self.relay = relay
        self.mail = smtp_settings()  # only whether e-mail is configured is read here

    @classmethod
    def open(cls, config: ServiceConfig, key: bytes) -> ReplicaService:
        from sandbox.store import default_url, make_engine, migrate

        assert config.broker
        config.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(config.database_url or default_url(config.data_dir))
        migrate(engine)  # a no-op once the control plane has migrated (safe concurrently)
        relay = RelayReader(config.broker, key)
        relay.start()
        return cls(config, Store.open(engine, config.data_dir), relay)

    # the same reads as Service's (they touch only the store)
    def get_batch(self, batch_id: str) -> BatchRecord:
        return Service.get_batch(self, batch_id)  # type: ignore[arg-type]

    def list_batches(self, **filters: Any) -> Page[BatchRecord]:
        return Service.list_batches(self, **filters)  # type: ignore[arg-type]

    def read_output(self, *args: Any, **kwargs: Any) -> tuple[bytes, int, int]:
        return Service.read_output(self, *args, **kwargs)  # type: ignore[arg-type]

    def pending_approvals(self) -> list[tuple[CommandRecord, BatchRecord, WorkspaceRecord]]:
        return Service.pending_approvals(self)  # type: ignore[arg-type]

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        return self.relay.subscribe(fn)

    def pools(self) -> dict[str, dict[str, int]]:
        return {}  # a replica runs nothing

    def __getattr__(self, name: str) -> Any:
        raise ControlPlaneOnly(name)

    def close(self, grace_s: float = 0.0) -> None:
        self.relay.close()
        self.store.close()

    def abandon(self, timeout_s: float = 0.0) -> None:
        self.relay.close()


class Forwarder:
    """WSGI middleware: the requests a replica does not answer itself go to the control
    plane, untouched by Flask (no session, no hooks): its answer is the caller's."""

    def __init__(self, app: Any, flask_app: Any, broker: str, key: bytes) -> None:
        self.app = app
        self.flask_app = flask_app
        self._redis = redis.Redis.from_url(broker, socket_timeout=2, socket_connect_timeout=2)
        self._key = key
        self._http = requests.Session()
        # never keep a caller's cookie: it would go with the next caller's request
        self._http.cookies.set_policy(_NoCookies())
        self._http.trust_env = False  # no proxy settings, no ~/.netrc credentials of its own
        self._http.headers.clear()  # no default headers: the caller's go as they came
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=64, max_retries=0)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        self._lock = threading.Lock()
        self._url: tuple[float, str | None] = (0.0, None)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self.forwarded(environ):
            return self.app(environ, start_response)
        return self.forward(environ, start_response)

    def forwarded(self, environ: dict[str, Any]) -> bool:
        path: str = environ.get("PATH_INFO", "")
        if path == "/mcp" or path.startswith("/mcp/"):
            return True
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD", "OPTIONS"):
            return path.startswith("/api/v1/")
        adapter = self.flask_app.url_map.bind_to_environ(environ)
        try:
            endpoint, _args = adapter.match(path, method)
        except Exception:  # not found, or a redirect: Flask answers it
            return False
        blueprint = endpoint.rpartition(".")[0]
        return endpoint in FORWARDED_READS or blueprint in FORWARDED_BLUEPRINTS

    def control(self, *, fresh: bool = False) -> str | None:
        """The advertised control plane's URL (cached for a second)."""
        with self._lock:
            at, url = self._url
            if not fresh and time.monotonic() - at < URL_CACHE_S:
                return url
        url = control_url(self._redis, self._key)
        with self._lock:
            self._url = (time.monotonic(), url)
        return url

    def forward(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            base = self.control()
        except redis.RedisError as e:
            return _unavailable(start_response, f"the broker does not answer ({e})")
        if base is None:
            return _unavailable(
                start_response,
                "no control plane is advertised on the broker: state changes are refused "
                "until `bashfleet serve --broker` runs again (pages and reads still work)",
            )
        target = base.rstrip("/") + _quoted_path(environ)
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            answer = self._http.request(
                method,
                target,
                headers=_headers(environ),
                data=_body(environ),
                stream=True,
                allow_redirects=False,
                timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
            )
        except requests.ConnectionError as e:
            with self._lock:
                self._url = (0.0, None)  # look again next time
            log.warning("control plane %s does not answer: %s", base, e)
            return _unavailable(
                start_response, f"the control plane at {base} does not answer; try again"
            )
        except requests.RequestException as e:
            return _unavailable(start_response, f"the control plane did not answer: {e}")
        headers = [(k, v) for k, v in answer.raw.headers.items() if k.lower() not in HOP_BY_HOP]
        length = answer.headers.get("Content-Length")
        if length is not None and "chunked" not in answer.headers.get("Transfer-Encoding", ""):
            headers.append(("Content-Length", length))
        start_response(f"{answer.status_code} {answer.reason}", headers)
        return _Streamed(answer)


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


class _Streamed:
    """The control plane's answer as it arrives (an SSE stream stays a stream)."""

    def __init__(self, answer: requests.Response) -> None:
        self.answer = answer

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.answer.raw.stream(CHUNK, decode_content=False)
        except Exception as e:  # the control plane went away mid-answer: end it here
            log.warning("forwarded answer cut: %s", e)

    def close(self) -> None:
        self.answer.close()


class _Body:
    """The caller's body, streamed with its length (uploads are not held in memory)."""

    def __init__(self, stream: Any, length: int) -> None:
        self.stream, self.length = stream, length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        left = self.length
        while left > 0:
            data = self.stream.read(min(CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data


def _body(environ: dict[str, Any]) -> Iterable[bytes] | bytes | None:
    stream = environ.get("wsgi.input")
    raw = environ.get("CONTENT_LENGTH") or ""
    if stream is None:
        return None
    if raw.isdigit():
        return _Body(stream, int(raw)) if int(raw) else b""
    if environ.get("wsgi.input_terminated"):  # chunked: pass it on as it comes
        return iter(lambda: stream.read(CHUNK), b"")
    return None


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").title()
            if name.lower() not in HOP_BY_HOP:
                out[name] = value
    if environ.get("CONTENT_TYPE"):
        out["Content-Type"] = environ["CONTENT_TYPE"]
    peer = environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR") or environ.get(
        "REMOTE_ADDR"
    )
    if peer:
        before = out.get("X-Forwarded-For")
        out["X-Forwarded-For"] = f"{before}, {peer}" if before else peer
    out["Accept-Encoding"] = environ.get("HTTP_ACCEPT_ENCODING", "identity")
    return out


def _quoted_path(environ: dict[str, Any]) -> str:
    from urllib.parse import quote

    path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
    query = environ.get("QUERY_STRING", "")
    return quote(path, safe="/:@!$&'()*+,;=-._~") + (f"?{query}" if query else "")


def _unavailable(start_response: Callable[..., Any], message: str) -> list[bytes]:
    body = json.dumps({"error": "unavailable", "message": message}).encode()
    start_response(
        "503 Service Unavailable",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Retry-After", "2"),
        ],
    )
    return [body]


def init_replica(app: Any, key: bytes) -> None:
    """Wrap the app (inside any ProxyFix) so that a replica forwards what it must; a read
    that turns out to need the engine (ControlPlaneOnly) is forwarded from its view."""
    forwarder = Forwarder(app.wsgi_app, app, app.config["BROKER"], key)
    app.wsgi_app = forwarder
    app.extensions["bashfleet_forwarder"] = forwarder

    def _late(_e: ControlPlaneOnly) -> Any:
        from flask import Response, request

        if request.method not in ("GET", "HEAD"):
            return _json_error(503, "unavailable", "this replica cannot do that itself")
        status: list[Any] = []

        def start(line: str, headers: list[tuple[str, str]]) -> None:
            status[:] = [line, headers]

        body = forwarder.forward(request.environ, start)
        code = int(status[0].split(" ", 1)[0])
        return Response(body, status=code, headers=status[1], direct_passthrough=True)

    app.register_error_handler(ControlPlaneOnly, _late)


def _json_error(status: int, code: str, message: str) -> Any:
    from flask import jsonify

    response = jsonify({"error": code, "message": message})
    response.status_code = status
    return response
