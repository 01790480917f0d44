"""Who is asking: bearer tokens for programs; roles; rate limits; audit helper."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request, session

from sandbox.store import NotFound, Role, UserRecord
from webapp import current_service
from webapp.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])


def current_user() -> UserRecord:
    user: UserRecord | None = g.get("user")
    if user is None:
        raise ApiError(401, "unauthorized", "authentication required")
    return user


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _authenticate() -> UserRecord:
    """A bearer token (programs), or the session cookie plus a CSRF header (browsers)."""
    svc = current_service()
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        user = svc.store.accounts.user_for_token(header[7:].strip()[:200])
        if user is None:
            # a good token still works from a limited address (the check is one indexed
            # lookup of a hash); bad ones get 429 there, and no audit row each
            if not auth_failed.allowed(request.remote_addr):
                raise ApiError(
                    429, "rate_limited", "too many failed authentications from your address"
                )
            auth_failed.note(request.remote_addr, request.path, "invalid or revoked token")
            raise ApiError(
                401, "unauthorized", "the token is invalid, revoked, or its user disabled"
            )
        return user
    if session.get("user_id") is None:
        raise ApiError(
            401,
            "unauthorized",
            "log in, or send `Authorization: Bearer TOKEN` "
            "(create one with `bashfleet token create USER`)",
        )
    user = session_user()
    if user is None:
        raise ApiError(401, "unauthorized", "the session has ended; log in again")
    if request.method not in SAFE_METHODS:
        check_csrf()
    return user


def session_user() -> UserRecord | None:
    """The user of the browser session cookie, if it is still good (not logged out, role
    unchanged, user enabled). Clears a session that is no longer good."""
    user_id, nonce = session.get("user_id"), session.get("nonce")
    if user_id is None:
        return None
    svc = current_service()
    try:
        user: UserRecord | None = svc.store.accounts.get_user(int(user_id))
    except (NotFound, ValueError):
        user = None
    if (
        user is None
        or user.disabled
        or session.get("epoch") != _epoch(user)
        or not isinstance(nonce, str)
        or svc.store.accounts.session_ended(nonce)
    ):
        session.clear()
        return None
    return user


def check_csrf() -> None:
    """State-changing requests from a browser session must echo the session's CSRF token."""
    expected = session.get("csrf")
    given = request.headers.get("X-CSRF-Token", "")
    if not expected or not hmac.compare_digest(str(expected), given):
        audit("csrf_refused", target=request.path)
        raise ApiError(403, "csrf", "missing or wrong X-CSRF-Token header for this session")


def _epoch(user: UserRecord) -> str:
    return session_epoch(current_service().store.accounts, user)


def session_epoch(accounts: Any, user: UserRecord) -> str:
    """Changes when the user's role or password changes, which ends their sessions (and
    the live sockets they opened: webapp/live.py keeps each one's epoch)."""
    return f"{user.id}:{user.role.value}:{accounts.password_stamp(user.id)}"


def start_session(user: UserRecord) -> str:
    session.clear()
    session["user_id"] = user.id
    session["epoch"] = _epoch(user)
    session["csrf"] = secrets.token_urlsafe(32)
    session["nonce"] = secrets.token_urlsafe(24)  # names this session for logout
    session.permanent = True
    return str(session["csrf"])


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
    svc = current_service()
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


class FailedAuth:
    """Failed authentications per address: past ``limit`` a minute the address is refused
    (429) until the minute is over. Audited in aggregate: one row per address and minute
    (its first failure), carrying how many failed in that address's previous minute."""

    def __init__(self, limit: int = 30, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._windows: dict[str, list[float]] = {}  # address -> [start, failures]
        self._lock = threading.Lock()

    def allowed(self, address: str | None) -> bool:
        now = time.monotonic()
        with self._lock:
            w = self._windows.get(address or "?")
            return w is None or now - w[0] >= self.window_s or w[1] < self.limit

    def note(self, address: str | None, target: str, reason: str) -> None:
        key, now = address or "?", time.monotonic()
        with self._lock:
            w = self._windows.get(key)
            first = w is None or now - w[0] >= self.window_s
            previous = int(w[1]) if w is not None and first else 0
            if first:
                w = self._windows[key] = [now, 0.0]
                if len(self._windows) > 10_000:
                    self._windows = {
                        k: v for k, v in self._windows.items() if now - v[0] < self.window_s
                    }
            assert w is not None
            w[1] += 1
        if first:
            current_service().store.audit.append(
                "auth_failed",
                actor="anonymous",
                user_id=None,
                address=address,
                target=target[:200],
                detail={
                    "reason": reason,
                    "failures_in_previous_window": previous,
                    "note": f"one row per address per {self.window_s:g} s; more are counted",
                },
            )


auth_failed = FailedAuth()
