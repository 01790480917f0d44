"""The broker path against the embedded mode, in the same run (issue 18).

- 1,000 x `echo N` in one batch: time from submission until the batch reads back
  `succeeded`, through a portal that runs it itself (embedded) and through a portal with
  `--broker` and one worker node on this machine; the difference per command is the broker
  path's throughput overhead. Each mode runs ROUNDS times, alternating (embedded, broker,
  embedded, broker, ...) on fresh processes, so that a change in the machine's load hits
  both; the CPU seconds each process used in the batch are printed beside (portal worker,
  node, Redis): the work the broker path adds, whatever the load;
- 30 one-command batches one after the other: submit-to-done latency (median), both ways;
  the difference is the broker path's added latency per command.

Completion is polled on the batch list (`GET /api/v1/batches?limit=1`, no commands) every
0.1 s: reading the 1,000-command batch itself costs the portal more CPU than the work
measured. Run: .venv/bin/python benchmarks/bench_cluster.py [ROUNDS]   (needs redis-server;
starts its own)
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from _util import machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.cluster_fixtures import RedisServer, WorkerNode, cluster_env
from tests.portal import Portal, free_port

N = 1000
SINGLES = 30
ACTIVE = ("pending", "queued", "running")
POLL_S = 0.1  # a poll costs the portal CPU too: the longer mode must not pay much more


@dataclass
class Run:
    total: float  # seconds, submit to succeeded
    single: float  # median seconds of a one-command batch
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds in the batch
    bodies_per_message: float = 0.0  # the broker path: jobs per Celery message in the batch
    safe_min: int = 0  # the fewest safe slots the batch had (the embedded autoscaler shrinks
    # them when the host's CPU is busy; a control plane's follow its nodes)


def _cpu(procs: dict[str, psutil.Process]) -> dict[str, float]:
    out = {}
    for name, p in procs.items():
        t = p.cpu_times()
        out[name] = t.user + t.system
    return out


def _wait_done(portal: Portal, token: str, batch_id: str) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        _s, page = portal.request("GET", "/api/v1/batches?limit=1", token=token)
        top = page["items"][0]
        if top["id"] == batch_id and top["status"] not in ACTIVE:
            return
        time.sleep(POLL_S)
    raise AssertionError(f"batch {batch_id} did not end in 600 s")


def measure(portal: Portal, procs: dict[str, psutil.Process]) -> Run:
    token = portal.token("bench", "operator")
    warm = portal.request("POST", "/api/v1/batches", {"script": "true\n"}, token=token)[1]
    portal.wait_batch(warm["id"], token, timeout=120)
    worker = psutil.Process(portal.proc.pid).children()  # type: ignore[union-attr]
    procs = {"portal": worker[0] if worker else psutil.Process(portal.proc.pid), **procs}  # type: ignore[union-attr]
    script = "".join(f"echo {i}\n" for i in range(N))
    sent_before = _published(portal)
    before = _cpu(procs)
    started = time.perf_counter()
    status, batch = portal.request("POST", "/api/v1/batches", {"script": script}, token=token)
    assert status == 201, batch
    _wait_done(portal, token, batch["id"])
    total = time.perf_counter() - started
    after = _cpu(procs)
    sent_after = _published(portal)
    done = portal.wait_batch(batch["id"], token, timeout=60)
    assert done["status"] == "succeeded", done.get("counts")
    singles = []
    for i in range(SINGLES):
        t0 = time.perf_counter()
        _s, one = portal.request("POST", "/api/v1/batches", {"script": f"echo {i}\n"}, token=token)
        while (
            portal.request("GET", f"/api/v1/batches/{one['id']}", token=token)[1]["status"]
            in ACTIVE
        ):
            time.sleep(0.002)
        singles.append(time.perf_counter() - t0)
    run = Run(total, statistics.median(singles), {k: after[k] - before[k] for k in after})
    _s, m = portal.request("GET", "/api/v1/metrics", token=token)
    run.safe_min = min(
        [int(m["pools"]["safe"]["limit"])]
        + [int(d["after"]) for d in m.get("scaling", []) if d["pool"] == "safe"]
    )
    if sent_after["messages"] > sent_before["messages"]:
        run.bodies_per_message = (sent_after["bodies"] - sent_before["bodies"]) / (
            sent_after["messages"] - sent_before["messages"]
        )
    return run


def _published(portal: Portal) -> dict[str, float]:
    """The outbox's counters (zero in the embedded mode, and before the outbox existed)."""
    with urllib.request.urlopen(portal.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    got = dict(re.findall(r"^bashfleet_cluster_published_(\w+)_total ([0-9.e+]+)$", text, re.M))
    return {k: float(got.get(k, 0)) for k in ("messages", "bodies")}


def embedded(root: Path, env: dict[str, str]) -> Run:
    root.mkdir()
    portal = Portal(root, free_port(), env, extra=["--isolation", "local"])
    portal.start()
    try:
        return measure(portal, {})
    finally:
        portal.stop()


def broker(root: Path, env: dict[str, str]) -> Run:
    redis = RedisServer(root / "redis")
    redis.start()
    node = WorkerNode("bench1", root / "node", redis.url, env)
    node.start()
    (root / "cluster").mkdir()
    cluster = Portal(root / "cluster", free_port(), env, extra=["--broker", redis.url])
    try:
        cluster.start()
        token = cluster.token("bench", "operator")
        deadline = time.monotonic() + 30
        while not cluster.request("GET", "/api/v1/nodes", token=token)[1]["nodes"]:
            assert time.monotonic() < deadline, node.log()
            time.sleep(0.2)
        assert node.proc is not None and redis.proc is not None
        return measure(
            cluster,
            {"node": psutil.Process(node.proc.pid), "redis": psutil.Process(redis.proc.pid)},
        )
    finally:
        cluster.stop()
        node.stop()
        redis.stop()


def _cpu_text(run: Run) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in run.cpu.items())


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    env = cluster_env(BASHFLEET_SUBMIT_RATE="100000")
    print(f"bench_cluster ({machine()}; portal, Redis and one worker on this machine)")
    print(f"  load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    runs: dict[str, list[Run]] = {"embedded": [], "broker": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for mode, fn in (("embedded", embedded), ("broker", broker)):
                run = fn(Path(tmp) / f"{mode}{r}", env)
                runs[mode].append(run)
                print(
                    f"  round {r + 1} {mode:8}: {N} x echo {run.total:6.2f} s "
                    f"(CPU s: {_cpu_text(run)}); one-command batch {run.single * 1000:.0f} ms; "
                    f"load {os.getloadavg()[0]:.1f}; safe slots >= {run.safe_min}"
                    + (
                        f"; {run.bodies_per_message:.1f} jobs per message"
                        if run.bodies_per_message
                        else ""
                    )
                )
    emb = statistics.median(r.total for r in runs["embedded"])
    cl = statistics.median(r.total for r in runs["broker"])
    pairs = [
        (b.total - e.total) / N * 1000
        for e, b in zip(runs["embedded"], runs["broker"], strict=True)
    ]
    cpu_e = statistics.median(sum(r.cpu.values()) for r in runs["embedded"])
    cpu_b = statistics.median(sum(r.cpu.values()) for r in runs["broker"])
    single_e = statistics.median(r.single for r in runs["embedded"])
    single_b = statistics.median(r.single for r in runs["broker"])
    fast_e = min(r.total for r in runs["embedded"])
    fast_b = min(r.total for r in runs["broker"])
    print(f"  {N} x echo, one batch (median of {rounds}): embedded {emb:.2f} s, broker {cl:.2f} s")
    print(
        f"  throughput overhead of the broker path: {(cl - emb) / N * 1000:.2f} ms per command "
        f"(per round: {', '.join(f'{p:.2f}' for p in pairs)})"
    )
    print(  # the least disturbed run of each: other work on the machine only adds time
        f"  fastest of {rounds}: embedded {fast_e:.2f} s, broker {fast_b:.2f} s, "
        f"{(fast_b - fast_e) / N * 1000:.2f} ms per command"
    )
    print(
        f"  CPU of portal+node+Redis: embedded {cpu_e:.1f} s, broker {cpu_b:.1f} s "
        f"(+{(cpu_b - cpu_e) / N * 1000:.2f} ms per command)"
    )
    print(
        f"  one-command batch, submit to done (median of {SINGLES}): "
        f"embedded {single_e * 1000:.1f} ms, broker {single_b * 1000:.1f} ms "
        f"(+{(single_b - single_e) * 1000:.1f} ms)"
    )
    print(f"  load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
