"""Signed messages between the control plane and its nodes: HMAC-SHA256 over canonical
JSON, with a timestamp and a nonce, so that a client with access to Redis alone can
neither forge a job nor replay one.

The cluster key (at least 32 bytes) comes from ``BASHFLEET_CLUSTER_KEY`` or the file
named by ``BASHFLEET_CLUSTER_KEY_FILE``; the portal processes hold it. Each node signs and
accepts with its own key, derived from the cluster key and its name (``node_key``): the
control plane signs a job for node n1 with n1's key, and n1 signs what it reports with it.
A node given only its own key (``BASHFLEET_NODE_KEY`` / ``BASHFLEET_NODE_KEY_FILE``, as
``bashfleet worker --name n1 --print-key`` prints it) can neither sign a job for another
node nor pass its reports off as another's; a node given the cluster key derives its own.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sandbox.errors import BashfleetError

KEY_ENV = "BASHFLEET_CLUSTER_KEY"
KEY_FILE_ENV = "BASHFLEET_CLUSTER_KEY_FILE"
NODE_KEY_ENV = "BASHFLEET_NODE_KEY"
NODE_KEY_FILE_ENV = "BASHFLEET_NODE_KEY_FILE"
MIN_KEY_BYTES = 32
MAX_AGE_S = 600.0  # a message older than this (or this far in the future) is refused


class ForgedMessage(BashfleetError):
    """A message whose signature, age or nonce does not hold up."""


def _read(env: str, file_env: str) -> str:
    raw = os.environ.get(env, "").strip()
    path = os.environ.get(file_env, "").strip()
    if not raw and path:
        try:
            raw = Path(path).read_text().strip()
        except OSError as e:
            raise BashfleetError(f"cannot read the key file {path}: {e}") from e
    return raw


def load_key() -> bytes:
    """The cluster key (the portal's, or a node's that derives its own from it)."""
    raw = _read(KEY_ENV, KEY_FILE_ENV)
    if len(raw.encode()) < MIN_KEY_BYTES:
        raise BashfleetError(
            f"a cluster needs a shared key of at least {MIN_KEY_BYTES} characters in "
            f"${KEY_ENV} or a file named by ${KEY_FILE_ENV} (the same on every portal "
            "process; a worker takes it or its own key from `bashfleet worker --print-key` "
            f"in ${NODE_KEY_ENV}), e.g. `python3 -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    return raw.encode()


def node_key(cluster_key: bytes, node: str) -> bytes:
    """The key node ``node`` signs and accepts with (64 hex characters)."""
    return (
        hmac.new(cluster_key, b"bashfleet-node\0" + node.encode(), hashlib.sha256)
        .hexdigest()
        .encode()
    )


def load_node_key(node: str) -> bytes:
    """A node's own key: ``$BASHFLEET_NODE_KEY`` (or its file), else derived from the
    cluster key."""
    own = _read(NODE_KEY_ENV, NODE_KEY_FILE_ENV)
    if not own:
        return node_key(load_key(), node)
    if len(own.encode()) < MIN_KEY_BYTES:
        raise BashfleetError(
            f"${NODE_KEY_ENV} is too short: give the node the key that "
            f"`bashfleet worker --name {node} --print-key` prints where the cluster key is"
        )
    return own.encode()


def entry_mac(key: bytes, fields: Mapping[str, bytes]) -> bytes:
    """The MAC of one reported entry (a Redis stream entry: names and byte values), over
    every field but ``m``, where it travels."""
    h = hmac.new(key, digestmod=hashlib.sha256)
    for name in sorted(fields):
        if name == "m":
            continue
        raw, value = name.encode(), fields[name]
        h.update(len(raw).to_bytes(4, "big") + raw + len(value).to_bytes(8, "big") + value)
    return h.hexdigest().encode()


def field_bytes(value: object) -> bytes:
    """A field value as Redis stores it (what ``entry_mac`` is taken over)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value).encode()
    raise TypeError(f"a reported field cannot hold {type(value).__name__}")


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(key: bytes, body: dict[str, Any], *, now: float | None = None) -> dict[str, Any]:
    """The envelope: the body plus ``ts``, ``nonce`` and ``sig``."""
    signed = {**body, "ts": time.time() if now is None else now, "nonce": secrets.token_hex(16)}
    return {**signed, "sig": hmac.new(key, canonical(signed), hashlib.sha256).hexdigest()}


def verify(key: bytes, envelope: object, *, now: float | None = None) -> dict[str, Any]:
    """The body of a well-signed, fresh envelope, else ForgedMessage (the nonce is checked
    by the caller, who keeps the seen ones)."""
    if not isinstance(envelope, dict):
        raise ForgedMessage("not a signed message")
    sig = envelope.get("sig")
    body = {k: v for k, v in envelope.items() if k != "sig"}
    if not isinstance(sig, str) or not isinstance(body.get("nonce"), str):
        raise ForgedMessage("unsigned message")
    want = hmac.new(key, canonical(body), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, sig):
        raise ForgedMessage("bad signature")
    ts = body.get("ts")
    age = (time.time() if now is None else now) - (ts if isinstance(ts, int | float) else 0.0)
    if not -MAX_AGE_S < age < MAX_AGE_S:
        raise ForgedMessage(f"stale message ({age:.0f} s old)")
    return body


# --- sealing: what a node and the control plane say to each other stays between them -------
# (a job's variables and secrets, a command's output: Redis keeps both, in memory and in its
# dump on disk; AES-256-GCM under a key derived from the node's, bound to where it belongs)


@functools.lru_cache(maxsize=256)
def _aead(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(hmac.new(key, b"bashfleet-seal\0", hashlib.sha256).digest())


def seal(key: bytes, data: bytes, context: bytes) -> bytes:
    """``data`` encrypted and authenticated under the node key ``key``; ``context`` (the
    job, stream and offset it belongs to) must be given again to open it."""
    nonce = os.urandom(12)
    return nonce + bytes(_aead(key).encrypt(nonce, data, context))


def unseal(key: bytes, blob: bytes, context: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag

    try:
        return bytes(_aead(key).decrypt(blob[:12], blob[12:], context))
    except (InvalidTag, ValueError) as e:
        raise ForgedMessage("a sealed field that does not open under its node's key") from e
