"""Pools that size themselves to the machine, and say why.

Once a second psutil is sampled (CPU per core, load, available memory, disk
I/O). CPU is smoothed (an exponential moving average over a few seconds) so a
single busy second does not move anything. For each elastic pool (``safe``,
``conditional``; ``sequential`` and ``dangerous`` stay at 1):

- memory pressure (less than 10% available) shrinks to the floor;
- CPU above 85% shrinks by a step (a quarter of the limit, at least 1);
- ready commands waiting while CPU is under 60% grow by a step, up to the
  DESIGN.md maximum;
- otherwise nothing changes.

Hysteresis: a pool changes at most once per ``hold_s`` seconds, and a change
in the opposite direction of the previous one needs twice that, so the limit
never flaps. Every change goes through ``Scheduler.set_limit`` and is published
as a ``PoolResized`` event with a reason such as
"conditional 4 -> 6: queue 12, CPU 41%".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import psutil

from sandbox.model import CommandClass
from sandbox.scheduler import MAX_LIMITS

log = logging.getLogger(__name__)

ELASTIC = (CommandClass.SAFE, CommandClass.CONDITIONAL)
FLOORS = {CommandClass.SAFE: 2, CommandClass.CONDITIONAL: 1}
CPU_HIGH = 85.0
CPU_LOW = 60.0
MEM_LOW = 10.0  # percent available


@dataclass(frozen=True, slots=True)
class Sample:
    cpu: float  # percent, all cores
    per_core: tuple[float, ...] = ()
    load1: float = 0.0
    mem_available: float = 100.0  # percent
    io_mb_s: float = 0.0


class Pools(Protocol):
    def snapshot(self) -> dict[str, dict[str, int]]: ...

    def set_limit(self, cls: CommandClass, limit: int, reason: str) -> None: ...


class PsutilSampler:
    """Real samples; the first call primes psutil's CPU counters."""

    def __init__(self) -> None:
        psutil.cpu_percent(percpu=True)
        self._io = psutil.disk_io_counters()
        self._at = time.monotonic()

    def __call__(self) -> Sample:
        per_core = tuple(psutil.cpu_percent(percpu=True))
        now = time.monotonic()
        io = psutil.disk_io_counters()
        mb = 0.0
        if io is not None and self._io is not None and now > self._at:
            moved = (io.read_bytes - self._io.read_bytes) + (io.write_bytes - self._io.write_bytes)
            mb = moved / (1 << 20) / (now - self._at)
        self._io, self._at = io, now
        return Sample(
            cpu=sum(per_core) / max(1, len(per_core)),
            per_core=per_core,
            load1=psutil.getloadavg()[0],
            mem_available=psutil.virtual_memory().available * 100 / psutil.virtual_memory().total,
            io_mb_s=mb,
        )


@dataclass
class _PoolState:
    changed_at: float = float("-inf")
    direction: int = 0


@dataclass
class Autoscaler:
    pools: Pools
    sampler: Callable[[], Sample] = field(default_factory=PsutilSampler)
    interval_s: float = 1.0
    hold_s: float = 10.0
    smoothing: float = 0.4  # weight of the newest CPU sample
    maxima: Mapping[CommandClass, int] = field(default_factory=lambda: dict(MAX_LIMITS))
    floors: Mapping[CommandClass, int] = field(default_factory=lambda: dict(FLOORS))
    clock: Callable[[], float] = time.monotonic
    cpu: float | None = None
    last: Sample | None = None
    _state: dict[CommandClass, _PoolState] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="bashfleet-autoscale", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.step()
            except Exception:  # sampling must never take the server down
                log.exception("autoscaler step failed")

    def step(self) -> list[tuple[CommandClass, int, int, str]]:
        """Take one sample and apply the decisions; returns what changed."""
        sample = self.sampler()
        self.last = sample
        self.cpu = (
            sample.cpu
            if self.cpu is None
            else (self.smoothing * sample.cpu + (1 - self.smoothing) * self.cpu)
        )
        snapshot = self.pools.snapshot()
        changes = []
        for cls in ELASTIC:
            pool = snapshot.get(cls.value)
            if pool is None:
                continue
            decision = self._decide(cls, pool, sample)
            if decision is not None:
                after, reason = decision
                self.pools.set_limit(cls, after, reason)
                log.info("autoscale: %s", reason)
                changes.append((cls, pool["limit"], after, reason))
        return changes

    def _decide(
        self, cls: CommandClass, pool: Mapping[str, int], sample: Sample
    ) -> tuple[int, str] | None:
        limit, queued = pool["limit"], pool["queued"]
        floor, ceiling = self.floors[cls], self.maxima[cls]
        cpu = self.cpu if self.cpu is not None else sample.cpu
        step = max(1, limit // 4)
        target, why = limit, ""
        if sample.mem_available < MEM_LOW:
            target, why = floor, f"memory {sample.mem_available:.0f}% free"
        elif cpu > CPU_HIGH:
            target, why = max(floor, limit - step), f"CPU {cpu:.0f}%"
        elif queued > 0 and cpu < CPU_LOW:
            target, why = min(ceiling, limit + step), f"queue {queued}, CPU {cpu:.0f}%"
        if target == limit:
            return None
        direction = 1 if target > limit else -1
        state = self._state.setdefault(cls, _PoolState())
        hold = self.hold_s * (2 if direction != state.direction and state.direction else 1)
        now = self.clock()
        pressure = sample.mem_available < MEM_LOW
        if now - state.changed_at < hold and not pressure:
            return None
        state.changed_at, state.direction = now, direction
        if "queue" not in why:
            why = f"queue {queued}, {why}"
        return target, f"{cls.value} {limit} -> {target}: {why}"
