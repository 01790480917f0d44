"""The portal survives its own users: a bounded load test on loopback.

All at once, for ``ATTACK_S`` seconds: 40 slow-header clients, 200 idle sockets that never
authenticate (each reconnects when closed), a viewer hammering ``/classify`` with hostile
scripts, and one subscriber to a flooding batch that never reads. Meanwhile ``/healthz``
is probed every 50 ms and an operator follows a live batch that prints a timestamp every
100 ms. The attackers come from other loopback addresses (127.0.0.2-7) so that the
per-address connection cap does not simply refuse them all; the probes from 127.0.0.1.
The attackers' threads run at nice 10: on a real network they would not share the
server's two cores, here they do (the server and the measuring process keep nice 0).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import websocket

from tests.hardening.conftest import HPortal, hportal

ATTACK_S = 20.0
ATTACKER_NICE = 10
HEALTHZ_P99_MS = 200.0  # the targets, reported in the figures (README, Reliability)
LIVE_P95_MS = 250.0
# What the test asserts: no starvation (before the guard, /healthz waited 30 s). The
# targets above are met on a quiet machine (p99 147-183 ms) with a thin margin, so a
# timing assertion at them would fail a loaded CI machine for no fault of the portal.
STARVED_MS = 1000.0
HOSTILE = [
    "echo " + "$(" * 3000 + "x" + ")" * 3000,
    "a=" + '"' + "$(b " * 4000 + '"',
    "x" * 32000,
    "echo {" + "a," * 10000 + "b}",
    ";".join(f"f{i}() {{ f{i + 1} | f{i} & }}" for i in range(1500)),
    "cat <<E\n" + "$(ls)\n" * 5000 + "E",
]


def _connect(port: int, source: str) -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(15)
    s.connect(("127.0.0.1", port))
    return s


def _loop(stop: threading.Event, fn: Callable[[], None]) -> None:
    while not stop.is_set():
        try:
            fn()
        except (OSError, websocket.WebSocketException):
            time.sleep(0.05)


def _judges_rss(worker: psutil.Process) -> int:
    """Memory of the judging processes (the forkserver and its children)."""
    total = 0
    for child in worker.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "multiprocessing" in " ".join(child.cmdline()):
                total += child.memory_info().rss
    return total


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@pytest.fixture
def load_portal(tmp_path: Any) -> Iterator[HPortal]:
    # a reader is cut past 1 MiB unsent (4 MiB by default): the flood below reaches it sooner
    env = {"BASHFLEET_SUBMIT_RATE": "1000", "BASHFLEET_SOCKET_QUEUE_KB": "1024"}
    with hportal(tmp_path, isolation="local", env=env) as p:
        yield p


# attack: slow and idle connections, CPU-heavy judging and a deaf reader, all at once
@pytest.mark.slow
def test_slow_idle_and_hostile_clients_do_not_starve_the_portal(
    load_portal: HPortal, figures: dict[str, Any]
) -> None:
    """Attack: a low-privilege user (and anyone who can reach the port) tries to take the
    portal down with slow requests, idle sockets, CPU-heavy judging and a reader that
    never reads: /healthz and an operator's live batch keep answering (measured against
    the targets p99 < 200 ms and p95 < 250 ms, asserted against starvation), memory
    bounded."""
    p = load_portal
    viewer = p.token("peeker", "viewer")
    operator = p.token("oper", "operator")
    flooder = p.token("flood", "operator")
    stop = threading.Event()
    threads: list[threading.Thread] = []
    counts: dict[str, int] = {"slow_408": 0, "idle_closed": 0, "classify": 0}
    classify_status: dict[int, int] = {}

    def start(fn: Callable[[], None], n: int = 1) -> None:
        for _ in range(n):
            t = threading.Thread(target=_loop, args=(stop, fn), daemon=True)
            t.start()
            threads.append(t)

    # 40 slow-header clients: a header line a second, never the end of the headers
    def slow_header() -> None:
        with contextlib.closing(_connect(p.port, "127.0.0.2")) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            while not stop.is_set():
                s.sendall(b"X-Slow: 1\r\n")
                s.settimeout(1.0)
                try:
                    if s.recv(100).startswith(b"HTTP/1.1 408"):
                        counts["slow_408"] += 1
                    return  # answered or closed: connect again
                except TimeoutError:
                    continue

    # 200 idle engine.io sockets that never send the Socket.IO CONNECT
    url = p.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    idle_sources = iter(f"127.0.0.{3 + i // 50}" for i in range(200))

    def idle_socket(source: str) -> Callable[[], None]:
        def run() -> None:
            sock = _connect(p.port, source)
            ws = websocket.create_connection(url, socket=sock, origin=p.url, timeout=15)
            with contextlib.closing(ws):
                ws.recv()  # the open packet
                try:
                    while not stop.is_set() and ws.recv():
                        pass
                except websocket.WebSocketConnectionClosedException:
                    pass
                if not stop.is_set():  # closed by the server (the auth deadline)
                    counts["idle_closed"] += 1

        return run

    # a viewer hammering /classify with hostile scripts (two at once: one gets 429)
    def hammer() -> None:
        for script in HOSTILE:
            if stop.is_set():
                return
            req = urllib.request.Request(
                p.url + "/api/v1/classify",
                data=json.dumps({"script": script}).encode(),
                headers={"Authorization": f"Bearer {viewer}", "Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            classify_status[status] = classify_status.get(status, 0) + 1
            counts["classify"] += 1

    # a subscriber to a flood that never reads
    # (one command, ~3 MB/s of lines: a flood that takes one slot, not the CPU)
    gush = "for i in $(seq 400); do head -c 150000 /dev/zero | tr '\\0' x; echo; sleep 0.05; done"
    flood = p.submit(flooder, gush, timeout_s=ATTACK_S, workspace="flood")
    small = socket.socket()
    small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    small.settimeout(15)
    small.connect(("127.0.0.1", p.port))
    deaf = websocket.create_connection(url, socket=small, origin=p.url, timeout=15)
    deaf.recv()
    deaf.send("40" + json.dumps({"token": flooder}))
    assert deaf.recv().startswith("40")
    deaf.send("421" + json.dumps(["subscribe", {"batch_id": flood["id"]}]))
    # ...and from here on it never calls recv()

    os.nice(ATTACKER_NICE)  # threads started from here on inherit it (Linux: per thread)
    start(slow_header, 40)
    for _ in range(200):
        start(idle_socket(next(idle_sources)))
    start(hammer, 2)
    time.sleep(2)  # the attack is on
    # the operator's live batch (a timestamp every 100 ms) and the /healthz probe, measured
    # from a process of their own
    script = f"for i in $(seq 1 {int((ATTACK_S - 3) * 10)}); do date +%s.%N; sleep 0.1; done"
    batch = p.submit(operator, script, timeout_s=60)
    probe = subprocess.Popen(
        [sys.executable, "-m", "tests.hardening.load_probe", p.url, operator, batch["id"], "16"],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
        preexec_fn=lambda: os.nice(-ATTACKER_NICE),  # the measurement is not an attacker
    )
    peak_rss, peak_judges = 0, 0
    worker = p.worker()
    while probe.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak_rss = max(peak_rss, worker.memory_info().rss)
        peak_judges = max(peak_judges, _judges_rss(worker))
        time.sleep(0.2)
    measured = json.loads(probe.communicate()[0])
    assert measured["ack"].get("ok"), measured["ack"]
    healthz, latencies = measured["healthz"], measured["live"]
    stop.set()
    with contextlib.suppress(OSError):
        os.nice(-ATTACKER_NICE)
    _s, metrics = p.request("GET", "/api/v1/metrics", token=operator)
    deaf.close()
    for t in threads:
        t.join(15)

    h99, l95 = _percentile(healthz, 99), _percentile(latencies, 95)
    figures["load"] = {
        "attack_s": ATTACK_S,
        "slow_header_clients": 40,
        "idle_unauthenticated_sockets": 200,
        "slow_408": counts["slow_408"],
        "idle_closed": counts["idle_closed"],
        "classify_requests": counts["classify"],
        "classify_statuses": classify_status,
        "cuts": metrics["live"]["cut"],
        "healthz_probes": len(healthz),
        "healthz_p50_ms": round(statistics.median(healthz), 1),
        "healthz_p99_ms": round(h99, 1),
        "live_lines": len(latencies),
        "live_p50_ms": round(statistics.median(latencies), 1),
        "live_p95_ms": round(l95, 1),
        "server_peak_rss_mb": round(peak_rss / 2**20, 1),
        "judges_peak_rss_mb": round(peak_judges / 2**20, 1),
    }
    print(figures["load"])
    assert counts["slow_408"] >= 40, counts  # every slow client was answered 408 at least once
    assert counts["idle_closed"] >= 200, counts  # every idle socket was closed by the deadline
    assert metrics["live"]["cut"].get("too_slow", 0) >= 1, metrics["live"]  # the deaf reader
    assert counts["classify"] >= 4, (counts, classify_status)
    assert len(latencies) >= 50, (len(latencies), p.batch(batch["id"], operator))
    figures["load"]["targets_met"] = h99 < HEALTHZ_P99_MS and l95 < LIVE_P95_MS
    assert h99 < STARVED_MS, figures["load"]
    assert l95 < STARVED_MS, figures["load"]
    assert peak_rss < 600 << 20, figures["load"]
