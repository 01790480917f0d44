"""A memory and /tmp filler judged safe, in two workspaces at once, against a real portal.

    head -c 30G /dev/zero | tr '\\0' '\\n' | sort

is judged safe (it only reads), so it runs in the local pool: sort keeps what it can in
memory (bounded by the job's address-space limit) and spills the rest to /tmp (the
sandbox's size-capped tmpfs). Printed: how each ended and why, the lowest share of the
host's memory available meanwhile (target: never below 25%), and /healthz latency while
it ran. Baseline: the host's available memory before the run.
Run: .venv/bin/python benchmarks/bench_memory_guard.py   (starts its own server on SQLite)
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
from _util import machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.portal import Portal, free_port

FILLER = "head -c 30G /dev/zero | tr '\\0' '\\n' | sort"


def available_pct() -> float:
    vm = psutil.virtual_memory()
    return 100.0 * vm.available / vm.total


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASHFLEET_")}
        portal = Portal(data=data, port=free_port(), env=env)
        portal.start()
        try:
            token = portal.token("bench", "operator")
            before = available_pct()
            ids = []
            for ws in ("one", "two"):
                body = {"script": FILLER + "\n", "workspace": ws, "timeout_s": 600}
                status, batch = portal.request("POST", "/api/v1/batches", body, token=token)
                assert status == 201, batch
                ids.append(batch["id"])
            lowest, health = before, []
            started = time.monotonic()
            while True:
                lowest = min(lowest, available_pct())
                t0 = time.perf_counter()
                with urllib.request.urlopen(portal.url + "/healthz", timeout=10) as r:
                    r.read()
                health.append(time.perf_counter() - t0)
                batches = [
                    portal.request("GET", f"/api/v1/batches/{i}", token=token)[1] for i in ids
                ]
                if all(b["status"] not in ("pending", "queued", "running") for b in batches):
                    break
                time.sleep(0.2)
            took = time.monotonic() - started
        finally:
            portal.stop()
    print(f"# two `{FILLER}` judged safe at once ({machine()})")
    for b in batches:
        c = b["commands"][0]
        print(f"{c['class']:<6} {c['executor']:<7} {c['status']:<11} {c['reason']}")
    p99 = statistics.quantiles(health, n=100)[98] if len(health) > 2 else max(health)
    print(f"host memory available: before {before:.1f}%, lowest {lowest:.1f}% (target >= 25%)")
    print(f"/healthz while it ran: p99 {1000 * p99:.0f} ms, max {1000 * max(health):.0f} ms")
    print(f"both ended after {took:.1f} s")


if __name__ == "__main__":
    main()
