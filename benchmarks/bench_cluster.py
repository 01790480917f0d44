"""The broker path against the embedded mode, in the same run (issue 18).

- 1,000 x `echo N` in one batch: time from submission until the batch reads back
  `succeeded`, through a portal that runs it itself (embedded) and through a portal with
  `--broker` and one worker node on this machine; the difference per command is the broker
  path's throughput overhead;
- 30 one-command batches one after the other: submit-to-done latency (median), both ways;
  the difference is the broker path's added latency per command.
Run: .venv/bin/python benchmarks/bench_cluster.py   (needs redis-server; starts its own)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from _util import machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.cluster_fixtures import RedisServer, WorkerNode, cluster_env
from tests.portal import Portal, free_port

N = 1000
SINGLES = 30


def measure(portal: Portal) -> tuple[float, float]:
    token = portal.token("bench", "operator")
    warm = portal.request("POST", "/api/v1/batches", {"script": "true\n"}, token=token)[1]
    portal.wait_batch(warm["id"], token, timeout=120)
    script = "".join(f"echo {i}\n" for i in range(N))
    started = time.perf_counter()
    status, batch = portal.request("POST", "/api/v1/batches", {"script": script}, token=token)
    assert status == 201, batch
    done = portal.wait_batch(batch["id"], token, timeout=600)
    total = time.perf_counter() - started
    assert done["status"] == "succeeded", done.get("counts")
    singles = []
    for i in range(SINGLES):
        t0 = time.perf_counter()
        _s, one = portal.request("POST", "/api/v1/batches", {"script": f"echo {i}\n"}, token=token)
        while portal.request("GET", f"/api/v1/batches/{one['id']}", token=token)[1]["status"] in (
            "pending",
            "queued",
            "running",
        ):
            time.sleep(0.002)
        singles.append(time.perf_counter() - t0)
    return total, statistics.median(singles)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = cluster_env(BASHFLEET_SUBMIT_RATE="100000")
        (root / "embedded").mkdir()
        embedded = Portal(root / "embedded", free_port(), env, extra=["--isolation", "local"])
        embedded.start()
        try:
            emb_total, emb_single = measure(embedded)
        finally:
            embedded.stop()
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
            cl_total, cl_single = measure(cluster)
        finally:
            cluster.stop()
            node.stop()
            redis.stop()
    per_cmd_ms = (cl_total - emb_total) / N * 1000
    print(f"bench_cluster ({machine()}; portal, Redis and one worker on this machine)")
    print(f"  {N} x echo, one batch: embedded {emb_total:.2f} s, broker {cl_total:.2f} s")
    print(f"  throughput overhead of the broker path: {per_cmd_ms:.2f} ms per command")
    print(
        f"  one-command batch, submit to done (median of {SINGLES}): "
        f"embedded {emb_single * 1000:.1f} ms, broker {cl_single * 1000:.1f} ms "
        f"(+{(cl_single - emb_single) * 1000:.1f} ms)"
    )


if __name__ == "__main__":
    main()
