"""The load test's measuring client, in a process of its own (so that the attackers'
threads in the test process do not delay the measurements): probes /healthz every 50 ms
and follows one batch live, then prints the latencies as JSON.

    python -m tests.hardening.load_probe URL TOKEN BATCH_ID SECONDS
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import urllib.request
from typing import Any

import socketio


def main(url: str, token: str, batch_id: str, seconds: float) -> None:
    latencies: list[float] = []

    def on_output(m: dict[str, Any]) -> None:
        now = time.time()
        for line in (m.get("data") or "").split():
            with contextlib.suppress(ValueError):
                latencies.append((now - float(line)) * 1000)

    live = socketio.Client(reconnection=False)
    live.on("command_output", on_output)
    live.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    ack = live.call("subscribe", {"batch_id": batch_id}, timeout=10)
    healthz: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
            r.read()
        healthz.append((time.monotonic() - t0) * 1000)
        time.sleep(0.05)
    live.disconnect()
    print(json.dumps({"ack": ack, "healthz": healthz, "live": latencies}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
