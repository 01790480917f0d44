"""A circuit breaker for calls to an unreliable service (the Docker engine). No I/O here.

closed     calls go through; ``failure_threshold`` failures in a row open it
open       calls are refused until ``retry_at`` (``cooldown_s`` after the last failure)
half_open  one trial call goes through: success closes it, failure opens it again
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._reason = ""
        self._retry_at = 0.0
        self._trial_out = False  # half-open: the one trial call has been let through

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._advance()
            return self._state

    @property
    def reason(self) -> str:
        """Why the last failure happened ("" once a success closed the breaker)."""
        with self._lock:
            return self._reason

    @property
    def retry_at(self) -> float:
        """Clock time at which an open breaker lets a trial call through."""
        with self._lock:
            return self._retry_at

    @property
    def remaining_s(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 when not open)."""
        with self._lock:
            self._advance()
            if self._state is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self._retry_at - self._clock())

    @property
    def failures(self) -> int:
        with self._lock:
            return self._failures

    def allow(self) -> bool:
        """May a call go through now? In half-open state, only one caller gets True."""
        with self._lock:
            self._advance()
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.HALF_OPEN and not self._trial_out:
                self._trial_out = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._reason = ""
            self._trial_out = False

    def record_failure(self, reason: str) -> None:
        with self._lock:
            self._advance()
            self._failures += 1
            self._reason = reason
            if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._state = BreakerState.OPEN
                self._retry_at = self._clock() + self.cooldown_s
                self._trial_out = False

    def _advance(self) -> None:
        if self._state is BreakerState.OPEN and self._clock() >= self._retry_at:
            self._state = BreakerState.HALF_OPEN
            self._trial_out = False
