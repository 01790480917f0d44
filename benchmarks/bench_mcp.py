"""An agent's burst through MCP: 16 independent read-only commands in one run_batch.

Each command is `sleep 0.5 && echo N` (safe: the local pool). The SDK's own client
spawns `bashfleet mcp --workspace TMP` (isolation auto) over stdio, makes one warm-up
call, then times REPEAT calls of run_batch from the request to the structured result.
The bound is the slowest command (its measured duration_s) + 100 ms; the target is
under 1.5x the bound.

Run: .venv/bin/python benchmarks/bench_mcp.py [--jobs N] [--http]

With --http the same burst goes to a portal (started here, `--isolation local`) at its
`/mcp` endpoint over streamable HTTP, with a bearer token: judging, the REST API in
process, the portal's scheduler and store, and the SSE answer all count.

Without --jobs the local pool has the default safe slots (8 per core, at most 16): on
2 cores, 16, one wave. (With 4 per core, as before, it was 8: two waves, 1.67x.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
from _util import BASHFLEET, machine
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.portal import Portal, free_port

N = 16
SLEEP_S = 0.5
REPEAT = 5
SCRIPT = "\n".join(f"sleep {SLEEP_S} && echo {i}" for i in range(N))


@contextlib.asynccontextmanager
async def stdio_session(jobs: int | None) -> AsyncIterator[ClientSession]:
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as ws:
        args = ["mcp", "--workspace", ws]
        if jobs is not None:
            args += ["--jobs", str(jobs)]
        params = StdioServerParameters(command=BASHFLEET, args=args)
        async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            yield s


@contextlib.asynccontextmanager
async def http_session() -> AsyncIterator[ClientSession]:
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASHFLEET_")}
        portal = Portal(data=data, port=free_port(), env=env, extra=["--isolation", "local"])
        portal.start()
        try:
            token = portal.token("agent", "operator")
            client = httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=300)
            )
            async with (
                client,
                streamable_http_client(f"{portal.url}/mcp", http_client=client) as (r, w),
                ClientSession(r, w) as s,
            ):
                await s.initialize()
                yield s
            _s, metrics = portal.request("GET", "/api/v1/metrics", token=token)
            scaling = [d.get("reason", d) for d in metrics.get("scaling", [])][-3:]
            print(f"  the portal's safe pool: {metrics['pools']['safe']}; autoscaling: {scaling}")
        finally:
            portal.stop()


async def measure(jobs: int | None, http: bool) -> list[tuple[float, float]]:
    session = http_session() if http else stdio_session(jobs)
    async with session as s:
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
    parser.add_argument("--http", action="store_true", help="a portal's /mcp, not stdio")
    args = parser.parse_args()
    jobs = args.jobs
    runs = anyio.run(measure, jobs, args.http)
    ratios = [took / (slowest + 0.1) for took, slowest in runs]
    where = "a portal's /mcp (HTTP)" if args.http else "stdio"
    print(
        f"bench_mcp: {machine()}, {N} x `sleep {SLEEP_S} && echo N` over {where}, "
        f"jobs={jobs or 'default'}"
    )
    for took, slowest in runs:
        print(f"  run_batch {took * 1000:.0f} ms, slowest command {slowest * 1000:.0f} ms")
    print(
        f"  median {statistics.median(t for t, _ in runs) * 1000:.0f} ms; "
        f"ratio to slowest + 100 ms: median {statistics.median(ratios):.2f}x, "
        f"worst {max(ratios):.2f}x (target < 1.5x)"
    )


if __name__ == "__main__":
    main()
