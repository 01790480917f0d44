"""Webhooks: who is told about what, how a target is checked, and delivery off the
scheduler's threads.

Events: ``batch_finished`` (a batch ended, whatever its status), ``batch_failed`` (it
ended and did not succeed), ``awaiting_approval`` (a command waits for a person),
``schedule_failed_twice`` (a schedule's batch failed right after another of its
batches failed). A webhook belongs to a user: without a workspace it hears of that
user's own batches; with one, of every batch in that workspace.

A delivery is one JSON POST, signed: ``X-Bashfleet-Signature: sha256=HEX`` is the
HMAC-SHA256 of the raw body with the webhook's secret; ``X-Bashfleet-Timestamp`` (unix
seconds) is also the body's ``sent_at``, so the signature covers it (a receiver
refuses old ones). Targets are http(s) only, and never loopback, link-local, private,
multicast, reserved or unspecified addresses (unless ``BASHFLEET_WEBHOOK_ALLOW_PRIVATE=1``):
the host name is resolved at delivery, checked, and the connection made to exactly the
address that was checked (DNS rebinding finds nothing to rebind). Redirects are not
followed. Each attempt has a 5 s timeout; a network error, 429 or 5xx is tried again
after 1, 4, 16 s (``BASHFLEET_WEBHOOK_BACKOFF_S``); every attempt is in the delivery log.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import os
import secrets
import socket
import ssl
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sandbox.errors import InputError
from sandbox.events import BatchFinished, CommandStatusChanged, Event
from sandbox.model import Status
from sandbox.notify_queue import NotifyQueue
from sandbox.store import Store
from sandbox.store.webhooks import WebhookRecord

log = logging.getLogger(__name__)

EVENTS = ("batch_finished", "batch_failed", "awaiting_approval", "schedule_failed_twice")
ALLOW_PRIVATE_ENV = "BASHFLEET_WEBHOOK_ALLOW_PRIVATE"
BACKOFF_ENV = "BASHFLEET_WEBHOOK_BACKOFF_S"
BACKOFF_S = (1.0, 4.0, 16.0)  # after attempt 1, 2, 3; then it gives up (4 attempts)
TIMEOUT_S = 5.0
MAX_URL = 2048
USER_AGENT = "bashfleet-webhook/1"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def allow_private(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(ALLOW_PRIVATE_ENV, "") == "1"


def backoff(environ: Mapping[str, str] = os.environ) -> tuple[float, ...]:
    raw = environ.get(BACKOFF_ENV, "")
    try:
        values = tuple(float(v) for v in raw.split(",") if v.strip())
    except ValueError:
        return BACKOFF_S
    return values if values and all(v >= 0 for v in values) else BACKOFF_S


def check_events(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InputError(f"`events` is a non-empty list of: {', '.join(EVENTS)}")
    unknown = sorted(set(value) - set(EVENTS))
    if unknown:
        raise InputError(f"`events`: unknown {', '.join(unknown)}; known: {', '.join(EVENTS)}")
    return tuple(e for e in EVENTS if e in value)


def check_url(url: Any, *, private_ok: bool) -> str:
    """A webhook target: http(s), a host, no credentials; an address given as a literal
    must be public (a name is resolved and checked at every delivery)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise InputError(f"`url` is an http(s) URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InputError(f"`url` is not a valid URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError("`url` must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise InputError("`url` must not carry credentials; the signature authenticates")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InputError("`url` must not contain spaces or control characters")
    if port == 0:
        raise InputError("`url` has port 0")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None and not private_ok and blocked(literal):
        raise InputError(f"`url` points at a non-public address ({literal}); refused")
    return url


def blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_reserved
        or not ip.is_global
    )


def resolve(host: str, port: int, *, private_ok: bool) -> str:
    """The first address of ``host`` if every address it has is allowed, else an error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise DeliveryError(f"cannot resolve {host}: {e}") from None
    addresses = [str(i[4][0]) for i in infos]
    if not addresses:
        raise DeliveryError(f"{host} has no address")
    if not private_ok:
        bad = [a for a in addresses if blocked(ipaddress.ip_address(a.split("%")[0]))]
        if bad:
            raise DeliveryError(f"{host} resolves to a non-public address ({bad[0]}); refused")
    return addresses[0]


class DeliveryError(Exception):
    pass


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(url: str, body: bytes, headers: Mapping[str, str], *, private_ok: bool) -> int:
    """One POST to exactly the address that was checked; the status code (no redirects)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    address = resolve(host, port, private_ok=private_ok)
    kind = _PinnedHTTPS if https else _PinnedHTTP
    conn = kind(host, port, address, TIMEOUT_S)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers=dict(headers))
        response = conn.getresponse()
        response.read(64 << 10)
        return response.status
    except (OSError, http.client.HTTPException) as e:
        raise DeliveryError(f"{type(e).__name__}: {e}") from None
    finally:
        conn.close()


def wanted(event: Event) -> bool:
    """Whether an event of the bus may become a notification (webhook or e-mail)."""
    return isinstance(event, BatchFinished) or (
        isinstance(event, CommandStatusChanged) and event.status is Status.AWAITING_APPROVAL
    )


def describe_event(store: Store, e: Event) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """The notification names an event means (of ``EVENTS``), the batch's summary and any
    extra detail (the command waiting for approval). Shared by webhooks and e-mail."""
    batch = store.batches.get(getattr(e, "batch_id", ""))
    names: list[str] = []
    info: dict[str, Any] = {
        "id": batch.id,
        "status": batch.status.value,
        "source": batch.source.value,
        "schedule_id": batch.schedule_id,
        "workspace": batch.workspace_name,
        "user": batch.user_name,
        "commands": batch.command_count,
    }
    extra: dict[str, Any] = {}
    if isinstance(e, BatchFinished):
        info["status"] = e.status.value
        info["counts"] = dict(e.counts)
        names.append("batch_finished")
        if e.status is not Status.SUCCEEDED:
            names.append("batch_failed")
            if batch.schedule_id is not None and _failed_before(store, batch.id, batch.schedule_id):
                names.append("schedule_failed_twice")
    elif isinstance(e, CommandStatusChanged):
        command = next((c for c in batch.commands if c.id == e.command_id), None)
        names.append("awaiting_approval")
        extra["command"] = {
            "id": e.command_id,
            "index": e.index,
            "command": command.command if command else "",
            "class": e.cls,
            "reason": e.reason,
        }
    return names, info, extra


def _failed_before(store: Store, batch_id: str, schedule_id: int) -> bool:
    """Whether the schedule's batch before this one (ids sort by time) ended badly."""
    page = store.batches.list(schedule_id=schedule_id, limit=5)
    earlier = [b for b in page.items if b.id < batch_id]
    return bool(earlier) and earlier[0].status.final and not earlier[0].status.ok


@dataclass
class _Delivery:
    webhook: WebhookRecord
    event: str
    payload: dict[str, Any]
    id: str
    attempt: int = 1


class WebhookNotifier(NotifyQueue[_Delivery]):
    """Subscribe it to the event bus; it only queues there. One dispatcher thread turns
    events into deliveries and wakes retries; a few worker threads make the requests."""

    what = "webhook deliveries"

    def __init__(
        self,
        store: Store,
        *,
        private_ok: bool | None = None,
        backoff_s: Sequence[float] | None = None,
        workers: int = 4,
    ) -> None:
        self.store = store
        self.private_ok = allow_private() if private_ok is None else private_ok
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bashfleet-hook")
        super().__init__(wanted, backoff() if backoff_s is None else backoff_s, "bashfleet-hooks")

    def close(self) -> None:
        super().close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def plan(self, event: Event) -> list[_Delivery]:
        return self._deliveries(event)

    def dispatch(self, item: _Delivery) -> None:
        self._pool.submit(self._attempt, item)

    def _deliveries(self, e: Event) -> list[_Delivery]:
        batch_id = getattr(e, "batch_id", "")
        batch = self.store.batches.get(batch_id)
        hooks = self.store.webhooks.matching(batch.user_id, batch.workspace_id)
        if not hooks:
            return []
        names, info, extra = describe_event(self.store, e)
        out = []
        for hook in hooks:
            for name in names:
                if name in hook.events:
                    payload = {"event": name, "batch": info, **extra}
                    out.append(_Delivery(hook, name, payload, uuid.uuid4().hex))
        return out

    def _attempt(self, d: _Delivery) -> None:
        sent_at = int(time.time())
        body = json.dumps(
            {**d.payload, "delivery": d.id, "sent_at": sent_at}, separators=(",", ":")
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Bashfleet-Event": d.event,
            "X-Bashfleet-Delivery": d.id,
            "X-Bashfleet-Timestamp": str(sent_at),
            "X-Bashfleet-Signature": sign(d.webhook.secret, body),
        }
        code: int | None = None
        error: str | None = None
        try:
            code = post(d.webhook.url, body, headers, private_ok=self.private_ok)
            if not 200 <= code < 300:
                error = f"HTTP {code}" + (
                    " (redirects are not followed)" if 300 <= code < 400 else ""
                )
        except DeliveryError as e:
            error = str(e)
        except Exception as e:  # never lose the log line
            error = f"{type(e).__name__}: {e}"
        try:
            self.store.webhooks.log_delivery(
                d.webhook.id,
                event=d.event,
                delivery=d.id,
                attempt=d.attempt,
                status_code=code,
                error=error,
            )
        except Exception:
            log.exception("cannot log webhook delivery %s", d.id)
        retryable = error is not None and (code is None or code == 429 or code >= 500)
        if retryable:
            self.retry(d)
