"""An agent's burst through MCP: 16 independent read-only commands in one run_batch.

Each command is `sleep 0.5 && echo N` (safe: the local pool). The SDK's own client
spawns `bashfleet mcp --workspace TMP` (isolation auto) over stdio, makes one warm-up
call, then times REPEAT calls of run_batch from the request to the structured result.
The bound is the slowest command (its measured duration_s) + 100 ms; the target is
under 1.5x the bound.

Run: .venv/bin/python benchmarks/bench_mcp.py [--jobs N]

Without --jobs the local pool has the default safe slots (8 per core, at most 16): on
2 cores, 16, one wave. (With 4 per core, as before, it was 8: two waves, 1.67x.)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import anyio
from _util import BASHFLEET, machine
from mcp import ClientSession, StdioServerParameters, stdio_client

N = 16
SLEEP_S = 0.5
REPEAT = 5
SCRIPT = "\n".join(f"sleep {SLEEP_S} && echo {i}" for i in range(N))


async def measure(jobs: int | None) -> list[tuple[float, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as ws:
        args = ["mcp", "--workspace", ws]
        if jobs is not None:
            args += ["--jobs", str(jobs)]
        params = StdioServerParameters(command=BASHFLEET, args=args)
        async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            await s.call_tool("run_batch", {"script": "echo warm"})
            runs = []
            for _ in range(REPEAT):
                started = time.perf_counter()
                result = await s.call_tool("run_batch", {"script": SCRIPT})
                took = time.perf_counter() - started
                data: dict[str, Any] = result.structured_content or {}
                commands = data.get("commands", [])
                assert not result.is_error and len(commands) == N, result.content
                assert [c["stdout"] for c in commands] == [f"{i}\n" for i in range(N)]
                slowest = max(c["duration_s"] for c in commands)
                runs.append((took, slowest))
            return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=None)
    jobs = parser.parse_args().jobs
    runs = anyio.run(measure, jobs)
    ratios = [took / (slowest + 0.1) for took, slowest in runs]
    print(f"bench_mcp: {machine()}, {N} x `sleep {SLEEP_S} && echo N`, jobs={jobs or 'default'}")
    for took, slowest in runs:
        print(f"  run_batch {took * 1000:.0f} ms, slowest command {slowest * 1000:.0f} ms")
    print(
        f"  median {statistics.median(t for t, _ in runs) * 1000:.0f} ms; "
        f"ratio to slowest + 100 ms: median {statistics.median(ratios):.2f}x, "
        f"worst {max(ratios):.2f}x (target < 1.5x)"
    )


if __name__ == "__main__":
    main()
