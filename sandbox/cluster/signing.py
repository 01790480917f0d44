"""Signed messages between the control plane and its nodes: HMAC-SHA256 over canonical
JSON, with a timestamp and a nonce, so that a client with access to Redis alone can
neither forge a job nor replay one.

The key (at least 32 bytes) comes from ``BASHFLEET_CLUSTER_KEY`` or the file named by
``BASHFLEET_CLUSTER_KEY_FILE``; both sides need the same one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from sandbox.errors import BashfleetError

KEY_ENV = "BASHFLEET_CLUSTER_KEY"
KEY_FILE_ENV = "BASHFLEET_CLUSTER_KEY_FILE"
MIN_KEY_BYTES = 32
MAX_AGE_S = 600.0  # a message older than this (or this far in the future) is refused


class ForgedMessage(BashfleetError):
    """A message whose signature, age or nonce does not hold up."""


def load_key() -> bytes:
    raw = os.environ.get(KEY_ENV, "").strip()
    path = os.environ.get(KEY_FILE_ENV, "").strip()
    if not raw and path:
        try:
            raw = Path(path).read_text().strip()
        except OSError as e:
            raise BashfleetError(f"cannot read the cluster key file {path}: {e}") from e
    if len(raw.encode()) < MIN_KEY_BYTES:
        raise BashfleetError(
            f"a cluster needs a shared key of at least {MIN_KEY_BYTES} characters in "
            f"${KEY_ENV} or a file named by ${KEY_FILE_ENV} (the same on the portal and "
            "every worker), e.g. `python3 -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    return raw.encode()


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
