"""Who is asking: bearer tokens for programs; roles; rate limits; audit helper."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import current_app, g, request

from sandbox.store import Role, UserRecord
from webapp.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])


def current_user() -> UserRecord:
    user: UserRecord | None = g.get("user")
    if user is None:
        raise ApiError(401, "unauthorized", "authentication required")
    return user


def _authenticate() -> UserRecord:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise ApiError(
            401,
            "unauthorized",
            "send `Authorization: Bearer TOKEN` (create one with `bashfleet token create USER`)",
        )
    svc = current_app.extensions["bashfleet"]
    user = svc.store.accounts.user_for_token(header[7:].strip())
    if user is None:
        audit("auth_failed", target=request.path, detail={"reason": "invalid or revoked token"})
        raise ApiError(401, "unauthorized", "the token is invalid, revoked, or its user disabled")
    return cast(UserRecord, user)


def requires(role: Role) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = _authenticate()
            g.user = user
            if not user.role.allows(role):
                audit("forbidden", target=request.path, detail={"needed": role.value})
                raise ApiError(
                    403, "forbidden", f"this needs the {role.value} role; you are {user.role.value}"
                )
            return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def audit(action: str, *, target: str | None = None, detail: dict[str, Any] | None = None) -> None:
    svc = current_app.extensions["bashfleet"]
    user: UserRecord | None = g.get("user")
    svc.store.audit.append(
        action,
        actor=user.name if user else "anonymous",
        user_id=user.id if user else None,
        address=request.remote_addr,
        target=target,
        detail=detail or {},
    )


class RateLimiter:
    """A sliding window per key (user or address). Thread-safe, bounded."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, limit: int, window_s: float = 60.0) -> bool:
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - window_s:
                hits.popleft()
            if len(hits) >= limit:
                return False
            hits.append(now)
            if len(self._hits) > 10_000:
                self._hits = {k: v for k, v in self._hits.items() if v}
            return True
