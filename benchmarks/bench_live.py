"""Live output latency: from a line's write to its arrival at Socket.IO clients.

10 clients subscribe to a batch of 8 commands that each print 20 lines per second
(each line carries bash's $EPOCHREALTIME at write time) for DURATION seconds.
Every client records when each line arrives; the delay is arrival - write time.
Target: p95 under 250 ms.

Baseline in the same run: a client polling the REST output endpoint once a second
(what a program without the socket would do) on the same batch.

Run: .venv/bin/python benchmarks/bench_live.py   (starts its own server on SQLite)
"""

from __future__ import annotations

import contextlib
import os
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
from tests.portal import Portal, running_portal

CLIENTS = 10
COMMANDS = 8
RATE = 20  # lines per second per command
DURATION = float(os.environ.get("BENCH_LIVE_SECONDS", "10"))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.delays: list[float] = []
        self.lines = 0
        self._partial: dict[str, str] = {}
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("command_output", self.on_output)
        self.sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)

    def on_output(self, msg: dict[str, Any]) -> None:
        now = time.time()
        text = self._partial.pop(msg["command_id"], "") + msg["data"]
        *lines, rest = text.split("\n")
        if rest:
            self._partial[msg["command_id"]] = rest
        for line in lines:
            stamp = line.split(" ", 1)[0]
            try:
                self.delays.append(now - float(stamp))
            except ValueError:
                continue
            self.lines += 1


def poller(portal: Portal, token: str, batch: dict[str, Any], out: list[float]) -> None:
    """The baseline: GET the output of every command once a second, from its last offset."""
    offsets = {c["id"]: 0 for c in batch["commands"]}
    partial = {c["id"]: "" for c in batch["commands"]}
    deadline = time.monotonic() + DURATION + 5
    while time.monotonic() < deadline:
        for cid in offsets:
            path = f"/api/v1/batches/{batch['id']}/commands/{cid}/output?offset={offsets[cid]}"
            status, body = portal.request("GET", path, token=token)
            now = time.time()
            if status != 200:
                continue
            offsets[cid] = body["stdout_next_offset"]
            text = partial[cid] + body["stdout"]
            *lines, partial[cid] = text.split("\n")
            out.extend(now - float(line.split(" ", 1)[0]) for line in lines if line)
        time.sleep(1.0)


def main() -> None:
    lines_each = int(DURATION * RATE)
    script = "\n".join(
        f'for i in $(seq 1 {lines_each}); do echo "$EPOCHREALTIME c{k} line $i"; sleep 0.05; done'
        for k in range(COMMANDS)
    )
    with tempfile.TemporaryDirectory() as tmp:
        clients: list[Client] = []
        portal_ctx = running_portal(Path(tmp), extra=["--isolation", "local"])
        with portal_ctx as portal, contextlib.ExitStack() as stack:
            stack.callback(lambda: [c.sio.disconnect() for c in clients])
            token = portal.token("bench", "operator")
            clients = [Client(portal.url, token) for _ in range(CLIENTS)]
            status, batch = portal.request(
                "POST", "/api/v1/batches", {"script": script}, token=token
            )
            assert status == 201, batch
            for c in clients:
                ack = c.sio.call("subscribe", {"batch_id": batch["id"]}, timeout=10)
                assert ack.get("ok"), ack
            polled: list[float] = []
            t = threading.Thread(target=poller, args=(portal, token, batch, polled), daemon=True)
            t.start()
            done = portal.wait_batch(batch["id"], token, timeout=DURATION * 5 + 60)
            time.sleep(0.5)
            t.join(timeout=DURATION + 10)
            assert done["status"] == "succeeded", done["counts"]
    expected = COMMANDS * lines_each
    delays = [d for c in clients for d in c.delays]
    complete = sum(c.lines == expected for c in clients)
    print(f"machine: {machine()}")
    print(
        f"{CLIENTS} clients x {COMMANDS} commands x {RATE} lines/s for {DURATION:.0f} s "
        f"({expected} lines per client; {complete}/{CLIENTS} clients got every line)"
    )
    ms = [d * 1000 for d in delays]
    print(
        f"socket delay write->client: p50 {pct(ms, 50):.0f} ms, p95 {pct(ms, 95):.0f} ms, "
        f"p99 {pct(ms, 99):.0f} ms, max {max(ms):.0f} ms (target p95 < 250 ms)"
    )
    base = [d * 1000 for d in polled]
    if base:
        print(
            f"baseline, REST polling once a second: p50 {pct(base, 50):.0f} ms, "
            f"p95 {pct(base, 95):.0f} ms ({len(base)} lines); socket p95 is "
            f"{pct(ms, 95) / max(pct(base, 95), 1e-9):.2f}x of it"
        )
    print(f"mean delay {statistics.mean(ms):.0f} ms over {len(ms)} line arrivals")


if __name__ == "__main__":
    main()
