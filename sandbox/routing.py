"""Where each class of command runs, and which bashfleet process owns which containers.

Shared by `bashfleet run` (runner.py) and the portal (service.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import psutil

from sandbox.breaker import CircuitBreaker
from sandbox.errors import EngineUnavailable, ExecutorError
from sandbox.executors.base import Executor
from sandbox.executors.proctree import running_since
from sandbox.model import CommandClass
from sandbox.scheduler import Router

log = logging.getLogger(__name__)

BREAKER_COOLDOWN_ENV = "BASHFLEET_BREAKER_COOLDOWN_S"
DEFAULT_BREAKER_COOLDOWN_S = 15.0


def make_router(
    isolation: str,
    docker_ready: bool | Callable[[], bool],
    docker_why: str | Callable[[], str] = "",
    local_ready: Callable[[], bool] | None = None,
    local_why: Callable[[], str | None] | None = None,
) -> Router:
    """Safe commands (and everything with isolation `local`) run locally, the rest in Docker.
    ``docker_ready`` and ``docker_why`` may be callables, for a server whose engine comes
    and goes. ``local_ready`` (the server): when the local pool cannot sandbox a command
    now (no bubblewrap, a failed self-test, no image tree), safe commands go to a container
    instead, and with neither they are refused; a command never runs unsandboxed."""
    ready = docker_ready if callable(docker_ready) else (lambda: docker_ready)
    why_now = docker_why if callable(docker_why) else (lambda: docker_why)

    def route(cls: CommandClass) -> tuple[str | None, str | None]:
        if local_ready is not None and not local_ready():
            local_problem = (local_why() if local_why else None) or "it is unavailable"
            if isolation != "local" and ready():
                return "docker", None
            return None, (
                f"the local sandbox cannot run commands ({local_problem}), "
                f"and {why_now() or 'no Docker engine answers'}; see `bashfleet doctor`"
            )
        if cls is CommandClass.SAFE or isolation == "local":
            return "local", None
        if ready():
            return "docker", None
        why = why_now()
        return None, (
            f"{cls.value} commands run in Docker, and {why or 'no Docker engine answers'}. "
            "Start the engine (see `bashfleet doctor`), or pass --isolation local "
            "to run them on this host without a container"
        )

    return route


def breaker_cooldown_s() -> float:
    """Seconds the Docker engine's circuit breaker stays open before a trial call:
    ``BASHFLEET_BREAKER_COOLDOWN_S`` (a positive number), else 15 s. A value that is not a
    positive number is ignored with a warning."""
    raw = os.environ.get(BREAKER_COOLDOWN_ENV, "").strip()
    if not raw:
        return DEFAULT_BREAKER_COOLDOWN_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        log.warning(
            "%s=%r is not a positive number of seconds; using %g s",
            BREAKER_COOLDOWN_ENV,
            raw,
            DEFAULT_BREAKER_COOLDOWN_S,
        )
        return DEFAULT_BREAKER_COOLDOWN_S
    return value


def open_docker(instance_id: str) -> tuple[Executor | None, str]:
    """A DockerExecutor when an engine answers, else (None, why).

    Its circuit breaker opens after 3 engine failures in a row and lets a trial call through
    after a cooldown: 15 s, or ``BASHFLEET_BREAKER_COOLDOWN_S`` seconds when that is set
    (tests that restart an engine use a short one)."""
    try:
        from sandbox.executors.docker import DockerExecutor
    except ImportError as e:  # pragma: no cover - packaging problem
        return None, f"the Docker executor is unavailable ({e})"
    try:
        ex = DockerExecutor(
            instance_id=instance_id, breaker=CircuitBreaker(cooldown_s=breaker_cooldown_s())
        )
        ex.ping()
    except (EngineUnavailable, ExecutorError) as e:
        return None, str(e)
    return ex, ""


def new_instance_id(kind: str) -> str:
    """`KIND-PID-START`: another process can tell whether this one is still alive."""
    me = psutil.Process()
    return f"{kind}-{me.pid}-{int(me.create_time())}"


def instance_alive(instance_id: str) -> bool:
    """True when the instance is a `bashfleet run`/`serve` process that still runs, or a
    worker node's (``node.NAME.PID.START``): a node cleans up its own containers when it
    starts (it may live in another PID namespace, so its process is not looked for here)."""
    if instance_id.startswith("node."):
        return True
    parts = instance_id.split("-")
    if (
        len(parts) != 3
        or parts[0] not in ("cli", "server")
        or not (parts[1].isascii() and parts[1].isdigit())
        or not (parts[2].isascii() and parts[2].isdigit())
    ):
        return False
    return running_since(int(parts[1]), int(parts[2]))
