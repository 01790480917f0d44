"""The control plane's live events, relayed to web replicas through Redis.

One control plane (``bashfleet serve --broker URL``) owns every state change; web replicas
(``serve --broker URL --replica``) serve pages and reads and follow the live streams from
here. Three pieces:

- ``EventRelay`` (control plane): a bus subscriber, subscribed after the store writer, so
  an ``OutputReceived`` is relayed only once its bytes are in the output file (the live
  hub's exactly-once rule needs "the file holds at least what the hub was told"). Events
  go to one Redis stream (``STREAM``, capped at ``MAXLEN``) from a publisher thread, in
  order, each signed with the cluster key. ``cut`` relays "cut these sockets".
- ``RelayReader`` (replica): reads that stream from where it joined and hands each
  verified event to its subscribers, as the control plane's bus does to its own hub.
- ``Advertiser`` (control plane): the URL where replicas forward state changes, in a
  signed Redis key with a TTL (``ADVERT_TTL_S``), refreshed; ``control_url`` reads it.

A forged entry (someone with Redis access alone) is dropped and logged: it can neither
put text in a browser nor point replicas (and their callers' credentials) elsewhere.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import redis

from sandbox.cluster.signing import ForgedMessage, sign, verify
from sandbox.events import BatchFinished, CommandStatusChanged, Event, EventBus, OutputReceived
from sandbox.model import Status

log = logging.getLogger(__name__)

STREAM = "bashfleet:live"
ADVERT = "bashfleet:control-url"
MAXLEN = 5000  # entries kept (approximately): replicas read within milliseconds
ADVERT_TTL_S = 10.0  # a control plane gone for this long is no longer advertised
ADVERT_EVERY_S = 2.0
PENDING_MAX = 100_000  # events waiting for a Redis that is down; past it, the oldest go


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class SocketsCut(Event):
    """The control plane cut live sockets (a user disabled, a token revoked, a password
    changed, a logout): every replica does the same with its own. ``kind`` is ``user``
    (``user_id``, ``reason``), ``recheck``, ``password`` (``user_id``, ``keep``, ``nonce``,
    ``epoch``) or ``session`` (``nonce``)."""

    kind: str
    user_id: int | None = None
    reason: str = ""
    keep: str | None = None
    nonce: str | None = None
    epoch: str | None = None


RELAYED: dict[str, type[Event]] = {
    "output": OutputReceived,
    "status": CommandStatusChanged,
    "batch": BatchFinished,
    "cut": SocketsCut,
}
_KINDS = {cls: kind for kind, cls in RELAYED.items()}


def encode(event: Event) -> bytes:
    body: dict[str, Any] = {"k": _KINDS[type(event)]}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode("ascii")
        elif isinstance(value, Status):
            value = value.value
        body[f.name] = value
    return json.dumps(body, separators=(",", ":")).encode()


def decode(raw: bytes) -> Event:
    body = json.loads(raw)
    cls = RELAYED[body.pop("k")]
    if cls is OutputReceived:
        body["data"] = base64.b64decode(body["data"])
    for name in ("status", "previous"):
        if body.get(name) is not None and cls in (CommandStatusChanged, BatchFinished):
            body[name] = Status(body[name])
    return cls(**body)


def _mac(key: bytes, raw: bytes) -> bytes:
    return hmac.new(key, raw, hashlib.sha256).hexdigest().encode()


class EventRelay:
    """Subscribe to the control plane's bus (after the store writer); ``close()`` ends it."""

    def __init__(self, url: str, key: bytes) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._key = key
        self._pending: collections.deque[Event] = collections.deque(maxlen=PENDING_MAX)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bashfleet-relay", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        if type(event) in _KINDS:  # on a scheduler thread: only queue it (about 1 µs)
            self._pending.append(event)
            self._wake.set()

    def cut(self, kind: str, **fields: Any) -> None:
        self(SocketsCut(kind=kind, **fields))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                self.drain()
            except redis.RedisError as e:  # Redis is away: keep the events, try again
                log.warning("cannot relay live events: %s", e)
                self._stop.wait(0.5)

    def drain(self) -> int:
        """Send what is pending, in order; returns how many went."""
        sent = 0
        while self._pending:
            batch: list[Event] = []
            while self._pending and len(batch) < 500:
                batch.append(self._pending.popleft())
            pipe = self._redis.pipeline(transaction=False)
            for event in batch:
                raw = encode(event)
                pipe.xadd(STREAM, {"e": raw, "s": _mac(self._key, raw)}, maxlen=MAXLEN)
            try:
                pipe.execute()
            except redis.RedisError:
                self._pending.extendleft(reversed(batch))  # in order, for the next try
                raise
            sent += len(batch)
        return sent

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(2)
        try:
            self.drain()
        except redis.RedisError:
            log.warning("%d live events were not relayed", len(self._pending))


class RelayReader:
    """Follows the relay stream from now on; ``subscribe(fn)`` as for the service's bus."""

    def __init__(self, url: str, key: bytes) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._key = key
        self._bus = EventBus()  # the replica's hub subscribes here, as to a local bus
        self._stop = threading.Event()
        self.forged = 0  # entries dropped for a bad signature
        self.ready = threading.Event()  # set once it knows where "from now on" starts
        self._thread = threading.Thread(target=self._loop, name="bashfleet-relayed", daemon=True)

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        return self._bus.subscribe(fn)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(12)

    def _loop(self) -> None:
        last = self._tip()
        self.ready.set()
        while not self._stop.is_set():
            try:
                answer = self._redis.xread({STREAM: last}, count=500, block=1000)
            except redis.RedisError as e:
                log.warning("cannot read the relayed live events: %s", e)
                self._stop.wait(0.5)
                last = self._resumed(last)
                continue
            for _stream, entries in cast(list[Any], answer or []):
                for entry_id, fields in entries:
                    last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    self._deliver(fields)

    def _tip(self) -> str:
        """The id of the newest entry (events from now on), waiting for Redis if need be."""
        while not self._stop.is_set():
            try:
                info = self._redis.xinfo_stream(STREAM)
                tip = info["last-generated-id"]
                return tip.decode() if isinstance(tip, bytes) else str(tip)
            except redis.ResponseError:  # no stream yet
                return "0-0"
            except redis.RedisError as e:
                log.warning("waiting for the broker: %s", e)
                self._stop.wait(0.5)
        return "0-0"

    def _resumed(self, last: str) -> str:
        """After a Redis outage: a restarted Redis starts its ids again (read from 0)."""
        tip = self._tip()
        return "0-0" if _id(tip) < _id(last) else last

    def _deliver(self, fields: dict[bytes, bytes]) -> None:
        raw, mac = fields.get(b"e", b""), fields.get(b"s", b"")
        if not hmac.compare_digest(_mac(self._key, raw), mac):
            self.forged += 1
            log.warning("dropped a relayed live event with a bad signature")
            return
        try:
            event = decode(raw)
        except (ValueError, KeyError, TypeError) as e:
            log.warning("dropped a relayed live event: %s", e)
            return
        self._bus.publish(event)  # a failing subscriber is logged and never stops the stream


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


class Advertiser:
    """Keeps ``url`` advertised as the control plane's while this process lives."""

    def __init__(self, broker: str, key: bytes, url: str) -> None:
        self._redis = redis.Redis.from_url(broker, socket_timeout=5, socket_connect_timeout=5)
        self._key = key
        self.url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bashfleet-advert", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                envelope = sign(self._key, {"url": self.url})
                self._redis.set(ADVERT, json.dumps(envelope), ex=int(ADVERT_TTL_S))
            except redis.RedisError as e:
                log.warning("cannot advertise the control plane: %s", e)
            if self._stop.wait(ADVERT_EVERY_S):
                return

    def close(self) -> None:
        """No longer advertised (if the key is still ours): replicas answer 503 at once."""
        self._stop.set()
        self._thread.join(6)
        try:
            raw = self._redis.get(ADVERT)
            if raw is not None and json.loads(raw).get("url") == self.url:
                self._redis.delete(ADVERT)
        except (redis.RedisError, ValueError, AttributeError):
            pass


class SignedJson:
    """The ``json`` module of Socket.IO's Redis message queue (its broadcasts between
    portal processes): each message signed with the cluster key and dated, so that a
    client with Redis access alone cannot emit to the browsers or cut their sockets (a
    message that does not verify fails to load, and python-socketio skips it)."""

    MAX_AGE_S = 30.0

    def __init__(self, key: bytes) -> None:
        self._key = key

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        body = json.dumps({"t": time.time(), "m": obj}, separators=(",", ":"), ensure_ascii=False)
        return json.dumps({"b": body, "s": _mac(self._key, body.encode()).decode()})

    def loads(self, text: str | bytes, **kwargs: Any) -> Any:
        envelope = json.loads(text)
        body, mac = envelope.get("b"), envelope.get("s")
        if not isinstance(body, str) or not isinstance(mac, str):
            raise ValueError("unsigned message")
        if not hmac.compare_digest(_mac(self._key, body.encode()), mac.encode()):
            log.warning("dropped a Socket.IO queue message with a bad signature")
            raise ValueError("bad signature")
        inner = json.loads(body)
        if abs(time.time() - float(inner.get("t", 0))) > self.MAX_AGE_S:
            raise ValueError("stale message")
        return inner.get("m")


def control_url(client: redis.Redis, key: bytes) -> str | None:
    """The advertised control plane's URL; None when none is (or the entry is forged).
    Raises redis.RedisError when the broker does not answer."""
    raw = client.get(ADVERT)
    if raw is None:
        return None
    try:
        body = verify(key, json.loads(raw))
    except (ValueError, ForgedMessage) as e:
        log.warning("ignored the advertised control plane: %s", e)
        return None
    url = body.get("url")
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None
