"""Translate docker-py failures into bashfleet errors, feeding a circuit breaker.

    guard = EngineGuard(breaker, image, "docker")
    guard.gate()                      # EngineUnavailable at once while the breaker is open
    with guard("create container"):   # docker.errors / requests errors -> ExecutorError
        client.containers.create(...)

Connection-level failures (socket missing, refused, timeouts) and engine 5xx answers count
as breaker failures; 4xx answers (no such image/container) mean the engine is fine.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Iterator

import docker.errors
import requests

from sandbox.breaker import BreakerState, CircuitBreaker
from sandbox.errors import EngineUnavailable, ExecutorError


class EngineGuard:
    def __init__(self, breaker: CircuitBreaker, image: str, executor: str) -> None:
        self.breaker = breaker
        self.image = image
        self.executor = executor

    def gate(self) -> None:
        if self.breaker.allow():
            return
        wall = time.time() + self.breaker.remaining_s
        until = datetime.datetime.fromtimestamp(wall).strftime("%H:%M:%S")
        raise EngineUnavailable(
            f"Docker engine unavailable (breaker open until {until}: {self.breaker.reason})",
            executor=self.executor,
        )

    @contextlib.contextmanager
    def __call__(
        self, what: str, *, missing_ok: bool = False, image: str | None = None
    ) -> Iterator[None]:
        """Translate docker-py failures into bashfleet errors and feed the breaker."""
        try:
            yield
        except docker.errors.ImageNotFound as e:
            self.breaker.record_success()
            raise ExecutorError(
                f"sandbox image {image or self.image} is missing: run `bashfleet image build`",
                executor=self.executor,
                retryable=False,
            ) from e
        except docker.errors.NotFound as e:
            self.breaker.record_success()
            if not missing_ok:
                raise ExecutorError(
                    f"Docker {what} failed: {e.explanation}", executor=self.executor
                ) from e
        except docker.errors.APIError as e:
            if e.is_server_error():
                self.breaker.record_failure(f"{what}: {e.explanation}")
            raise ExecutorError(
                f"Docker {what} failed: {e.explanation}", executor=self.executor
            ) from e
        except (requests.exceptions.RequestException, docker.errors.DockerException, OSError) as e:
            reason = _short(e)
            self.breaker.record_failure(reason)
            state = self.breaker.state
            suffix = " (breaker now open)" if state is BreakerState.OPEN else ""
            raise EngineUnavailable(
                f"Docker engine unavailable ({what}): {reason}{suffix}", executor=self.executor
            ) from e
        else:
            if self.breaker.state is not BreakerState.CLOSED or self.breaker.failures:
                self.breaker.record_success()


def _short(e: BaseException) -> str:
    """The innermost, most telling part of a connection error."""
    for _ in range(10):
        inner = e.__cause__ or e.__context__
        if inner is None:
            break
        e = inner
    text = str(e) or type(e).__name__
    if "No such file" in text or "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused" if "refused" in text.lower() else "socket not found"
    return text[:200]
