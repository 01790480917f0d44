"""What a web replica costs (issue 18: several portal processes behind a load balancer).

A control plane (`serve --broker`), a replica (`serve --broker --replica`) on its data
folder and database, one worker node and Redis, all on this machine:

- a state change forwarded by the replica against the same request sent to the control
  plane directly (`POST /api/v1/classify`, median of 60 each, interleaved);
- a read the replica answers itself (`GET /api/v1/batches/ID`) against the control plane;
- live output: for the same chunks, when a socket on the replica receives them against a
  socket on the control plane (the relay through Redis), median and 95th percentile.
Run: .venv/bin/python benchmarks/bench_replicas.py   (needs redis-server; starts its own)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import socketio
from _util import machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.cluster_fixtures import RedisServer, WorkerNode, cluster_env
from tests.portal import Portal, free_port

ROUNDS = 60
LIVE = 'for i in $(seq 1 200); do echo "line $i"; sleep 0.01; done\n'


def timed(portal: Portal, method: str, path: str, body: Any, token: str) -> float:
    t0 = time.perf_counter()
    status, answer = portal.request(method, path, body, token=token)
    assert status in (200, 201), answer
    return time.perf_counter() - t0


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[int(len(values) * 0.95) - 1]
    return f"median {statistics.median(values) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


def arrivals(url: str, token: str, batch_id: str, done: threading.Event) -> dict[int, float]:
    seen: dict[int, float] = {}
    sio = socketio.Client(reconnection=False)

    def output(m: dict[str, Any]) -> None:
        now = time.perf_counter()
        data = m["data"].encode()
        for k in range(len(data)):  # when each byte offset arrived
            seen[m["offset"] + k] = now

    sio.on("command_output", output)
    sio.on("batch_status", lambda _m: done.set())
    sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    sio.call("subscribe", {"batch_id": batch_id}, timeout=10)
    threading.Thread(target=lambda: (done.wait(60), sio.disconnect()), daemon=True).start()
    return seen


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = cluster_env(BASHFLEET_SUBMIT_RATE="100000")
        redis = RedisServer(root / "redis")
        redis.start()
        node = WorkerNode("bench1", root / "node", redis.url, env)
        (root / "data").mkdir()
        control = Portal(root / "data", free_port(), env, extra=["--broker", redis.url])
        replica = Portal(
            root / "data", free_port(), env, extra=["--broker", redis.url, "--replica"]
        )
        try:
            node.start()
            control.start()
            replica.start()
            token = control.token("bench", "operator")
            direct, forwarded = [], []
            for _ in range(ROUNDS):
                direct.append(timed(control, "POST", "/api/v1/classify", {"script": "ls"}, token))
                forwarded.append(
                    timed(replica, "POST", "/api/v1/classify", {"script": "ls"}, token)
                )
            _s, batch = control.request("POST", "/api/v1/batches", {"script": LIVE}, token=token)
            on_control = arrivals(control.url, token, batch["id"], threading.Event())
            done = threading.Event()
            on_replica = arrivals(replica.url, token, batch["id"], done)
            assert done.wait(90), "the batch did not finish"
            time.sleep(0.5)
            path = f"/api/v1/batches/{batch['id']}"
            read_c = [timed(control, "GET", path, None, token) for _ in range(ROUNDS)]
            read_r = [timed(replica, "GET", path, None, token) for _ in range(ROUNDS)]
        finally:
            replica.stop()
            control.stop()
            node.stop()
            redis.stop()
    lag = [on_replica[k] - on_control[k] for k in on_control if k in on_replica]
    print(f"bench_replicas ({machine()}; control plane, replica, Redis and a node here)")
    print(f"  POST /api/v1/classify direct:          {ms(direct)}")
    print(f"  POST /api/v1/classify via the replica: {ms(forwarded)}")
    print(f"  GET /api/v1/batches/ID control plane:  {ms(read_c)}")
    print(f"  GET /api/v1/batches/ID replica:        {ms(read_r)}")
    print(
        f"  live output on the replica after the control plane's socket: {ms(lag)} "
        f"({len(lag)} bytes compared, {len(on_replica)} received on the replica)"
    )


if __name__ == "__main__":
    main()
