"""Sortable string ids for batches and commands, and the rules for ids used in paths.

A new id is a ULID: 26 Crockford base-32 characters, 48 bits of milliseconds then
80 random bits, so ids sort by creation time (within one process, strictly: ids
made in the same millisecond increment the random part).
"""

from __future__ import annotations

import re
import secrets
import threading
import time

from sandbox.errors import InputError

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = (0, 0)  # (milliseconds, random part) of the previous id

# Ids that may appear in a file path: letters, digits, "_" and "-", starting with
# a letter or digit. No ".", so never "." / ".." nor a hidden file.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def new_id() -> str:
    global _last
    with _lock:
        ms = time.time_ns() // 1_000_000
        last_ms, last_rand = _last
        if ms <= last_ms:
            ms, rand = last_ms, last_rand + 1
            if rand >> _RANDOM_BITS:  # 2**80 ids in one millisecond: borrow the next one
                ms, rand = ms + 1, secrets.randbits(_RANDOM_BITS - 1)
        else:
            rand = secrets.randbits(_RANDOM_BITS - 1)  # headroom for increments
        _last = (ms, rand)
    value = (ms << _RANDOM_BITS) | rand
    return "".join(_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is safe to use as a file or directory name, else raise."""
    if not isinstance(value, str) or not SAFE_ID.fullmatch(value):
        raise InputError(f"invalid {what} {value!r}: use letters, digits, '_' and '-' (max 64)")
    return value
