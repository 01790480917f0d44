"""The portal under a 1,000-command batch, and API submit latency.

- a 1,000 x `echo N` batch submitted over the API: time until every result is
  stored (the batch reads back `succeeded`), against the same batch through
  `bashfleet run` (whole process);
- 200 sequential submissions of a 2-command batch: submit latency p50/p99.
Run: .venv/bin/python benchmarks/bench_api.py   (starts its own server on SQLite)
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _util import BASHFLEET, machine, timed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.portal import Portal, free_port

N = 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASHFLEET_")}
        env["BASHFLEET_SUBMIT_RATE"] = "100000"
        portal = Portal(data=data, port=free_port(), env=env, extra=["--isolation", "local"])
        portal.start()
        try:
            token = portal.token("bench", "operator")
            script = "".join(f"echo {i}\n" for i in range(N))
            started = time.perf_counter()
            status, batch = portal.request(
                "POST", "/api/v1/batches", {"script": script}, token=token
            )
            assert status == 201, batch
            submitted = time.perf_counter() - started
            done = portal.wait_batch(batch["id"], token, timeout=600)
            stored = time.perf_counter() - started
            assert done["status"] == "succeeded", done["counts"]
            latencies = []
            for i in range(200):
                t0 = time.perf_counter()
                status, _ = portal.request(
                    "POST", "/api/v1/batches", {"commands": [f"echo {i}", "true"]}, token=token
                )
                latencies.append(time.perf_counter() - t0)
                assert status == 201
        finally:
            portal.stop()
        ws = Path(tmp) / "ws"
        ws.mkdir()
        (Path(tmp) / "b.sh").write_text(script)
        cli = timed([BASHFLEET, "run", str(Path(tmp) / "b.sh"), "--workspace", str(ws)])
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"# portal benchmark ({machine()}, SQLite, local isolation)")
    print(
        f"{N}-command batch over the API: accepted in {submitted:.2f} s, "
        f"all results stored in {stored:.2f} s ({N / stored:.0f} commands/s)"
    )
    print(f"same batch through `bashfleet run`: {cli:.2f} s")
    print(f"submit latency (2-command batch, 200 requests): p50 {p50:.1f} ms, p99 {p99:.1f} ms")


if __name__ == "__main__":
    main()
