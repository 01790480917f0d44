"""Numbers a monitoring system can scrape, from the scheduler's events.

``Metrics`` subscribes to the bus and keeps Prometheus series in its own
registry (one per service, so tests can run several), plus bounded samples
of recent durations and queue waits for percentiles in the JSON view.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sandbox.events import CommandStatusChanged, Event, PoolResized
from sandbox.model import Status

BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, float("inf"))
SAMPLES = 10_000
PERCENTILES = (50, 90, 95, 99)
DECISIONS = 50  # recent autoscaling decisions kept for the dashboard


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {f"p{p}": None for p in PERCENTILES}
    ordered = sorted(values)
    n = len(ordered)
    return {
        f"p{p}": round(ordered[min(n - 1, max(0, round(p / 100 * n) - 1))], 4) for p in PERCENTILES
    }


class _PoolCollector(Collector):
    def __init__(
        self,
        pools: Callable[[], Mapping[str, Mapping[str, int]]],
        extra: Callable[[], Mapping[str, float]],
    ) -> None:
        self.pools = pools
        self.extra = extra

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.pools()
        for field, help_text in (
            ("limit", "Current slot limit of each pool"),
            ("running", "Commands running in each pool"),
            ("queued", "Ready commands waiting for a slot in each pool"),
        ):
            family = GaugeMetricFamily(f"bashfleet_pool_{field}", help_text, labels=["pool"])
            for pool, values in snapshot.items():
                family.add_metric([pool], values.get(field, 0))
            yield family
        for name, value in self.extra().items():
            yield GaugeMetricFamily(f"bashfleet_{name}", name.replace("_", " "), value=value)


def host_usage() -> dict[str, float]:
    """The machine now: CPU since the previous call, memory."""
    memory = psutil.virtual_memory()
    return {
        "cpu_percent": psutil.cpu_percent(None),
        "memory_percent": memory.percent,
        "memory_available": memory.available,
        "at": time.time(),
    }


class Metrics:
    def __init__(
        self,
        pools: Callable[[], Mapping[str, Mapping[str, int]]],
        extra: Callable[[], Mapping[str, float]] = dict,
    ) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "bashfleet_commands",
            "Commands that reached a final status",
            ["cls", "executor", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "bashfleet_command_duration_seconds",
            "Run time of finished commands",
            ["cls"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "bashfleet_queue_wait_seconds",
            "Time from ready to running",
            ["cls"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter("bashfleet_retries", "Retried attempts", registry=self.registry)
        self.resizes = Counter(
            "bashfleet_pool_resizes", "Autoscaling decisions", ["pool"], registry=self.registry
        )
        self.registry.register(_PoolCollector(pools, extra))
        self._lock = threading.Lock()
        self._queued_at: dict[str, float] = {}
        self._durations: deque[float] = deque(maxlen=SAMPLES)
        self._waits: deque[float] = deque(maxlen=SAMPLES)
        self._finished: deque[float] = deque(maxlen=SAMPLES)  # wall times, for throughput
        self._decisions: deque[dict[str, Any]] = deque(maxlen=DECISIONS)  # newest last
        self.started = time.time()

    def __call__(self, event: Event) -> None:
        if isinstance(event, PoolResized):
            self.resizes.labels(event.pool).inc()
            with self._lock:
                self._decisions.append(
                    {
                        "pool": event.pool,
                        "before": event.before,
                        "after": event.after,
                        "reason": event.reason,
                        "at": event.at,
                    }
                )
            return
        if not isinstance(event, CommandStatusChanged):
            return
        with self._lock:
            cls = event.cls or "unknown"
            if event.status is Status.QUEUED:
                self._queued_at[event.command_id] = event.at
                if event.attempt > 1 and event.reason.startswith("retry"):
                    self.retries.inc()
            elif event.status is Status.RUNNING:
                since = self._queued_at.pop(event.command_id, None)
                if since is not None:
                    wait = max(0.0, event.at - since)
                    self.queue_wait.labels(cls).observe(wait)
                    self._waits.append(wait)
            elif event.status.final:
                self._queued_at.pop(event.command_id, None)
                self.commands.labels(cls, event.executor or "none", event.status.value).inc()
                if event.duration_s is not None:
                    self.duration.labels(cls).observe(event.duration_s)
                    self._durations.append(event.duration_s)
                self._finished.append(event.at)

    def prometheus(self) -> bytes:
        return generate_latest(self.registry)

    def summary(self, pools: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            durations = list(self._durations)
            waits = list(self._waits)
            last_minute = sum(1 for t in self._finished if t > now - 60)
            decisions = list(self._decisions)
        totals: dict[str, float] = {}
        for metric in self.commands.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    key = sample.labels["status"]
                    totals[key] = totals.get(key, 0) + sample.value
        return {
            "uptime_s": round(now - self.started, 1),
            "commands_by_status": totals,
            "throughput_per_min": last_minute,
            "duration_s": percentiles(durations),
            "queue_wait_s": percentiles(waits),
            "pools": pools,
            "retries": self.retries._value.get(),
            "scaling": decisions,
        }
