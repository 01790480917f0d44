"""Hierarchical read/write locks on workspace paths and named resources.

A lock on ``a`` conflicts with one on ``a/b`` (paths overlap by prefix of
components; ``.`` is the whole workspace). Readers share, writers exclude.

Deadlock is impossible by construction: a command's whole set of locks is
taken at once, all or nothing, under one mutex (held by the scheduler), in a
single global order (sorted keys), and nothing ever waits while holding a
partial set. No I/O here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

READ = "r"
WRITE = "w"


@dataclass(frozen=True, slots=True, order=True)
class LockRequest:
    scope: str  # the workspace, or "resource" for non-file resources
    path: str  # workspace-relative path ("." = everything), or a resource name
    mode: str  # READ or WRITE


def _parts(path: str) -> tuple[str, ...]:
    if path in (".", "", "/"):
        return ()
    return tuple(p for p in path.strip("/").split("/") if p and p != ".")


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


class LockTable:
    """Not thread-safe on its own: the scheduler calls it under its lock."""

    def __init__(self) -> None:
        # scope -> list of (parts, mode, owner)
        self._held: dict[str, list[tuple[tuple[str, ...], str, str]]] = defaultdict(list)
        self._owned: dict[str, list[LockRequest]] = {}

    def blocker(self, owner: str, requests: list[LockRequest]) -> str | None:
        """The owner of a conflicting lock, or None when all can be taken."""
        for req in sorted(requests):
            parts = _parts(req.path)
            for held_parts, mode, held_owner in self._held.get(req.scope, ()):
                if held_owner == owner:
                    continue
                if (mode == WRITE or req.mode == WRITE) and _overlap(parts, held_parts):
                    return held_owner
        return None

    def try_acquire(self, owner: str, requests: list[LockRequest]) -> bool:
        if self.blocker(owner, requests) is not None:
            return False
        for req in sorted(requests):
            self._held[req.scope].append((_parts(req.path), req.mode, owner))
        self._owned[owner] = list(requests)
        return True

    def release(self, owner: str) -> None:
        requests = self._owned.pop(owner, None)
        if not requests:
            return
        for scope in {r.scope for r in requests}:
            held = [h for h in self._held[scope] if h[2] != owner]
            if held:
                self._held[scope] = held
            else:
                del self._held[scope]

    def held_by(self, owner: str) -> list[LockRequest]:
        return list(self._owned.get(owner, ()))
