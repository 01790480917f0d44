"""The portal's own MCP endpoint, ``/mcp`` (streamable HTTP), driven by the SDK's client."""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.mcp_helpers import error, ok, run_async
from tests.portal import Portal, running_portal


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    with running_portal(
        tmp_path_factory.mktemp("portal"),
        env={
            "BASHFLEET_SUBMIT_RATE": "1000",
            "BASHFLEET_MCP_CALLS_PER_USER": "3",
            "BASHFLEET_MCP_WAIT_S": "4",
        },
        extra=["--isolation", "local"],
    ) as p:
        yield p


@contextlib.asynccontextmanager
async def http_session(portal: Portal, token: str) -> AsyncIterator[ClientSession]:
    client = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=300)
    )
    async with (
        client,
        streamable_http_client(f"{portal.url}/mcp", http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def _post(portal: Portal, headers: dict[str, str], method: str = "POST") -> tuple[int, str, str]:
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'
    req = urllib.request.Request(
        f"{portal.url}/mcp", data=body if method == "POST" else None, method=method
    )
    for k, v in {"Content-Type": "application/json", **headers}.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("WWW-Authenticate", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("WWW-Authenticate", ""), e.read().decode()


def test_mcp_over_http_runs_as_the_tokens_user_and_is_audited(served: Portal) -> None:
    token = served.token("agent", "operator")
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, _message: str | None) -> None:
        progress.append((done, total))

    async def main() -> dict[str, Any]:
        async with http_session(served, token) as s:
            tools = await s.list_tools()
            run = ok(
                await s.call_tool(
                    "run_batch",
                    {
                        "commands": [
                            "echo one",
                            "mkdir -p d && echo two > d/f",
                            "cat d/f",
                            "false",
                        ]
                    },
                    progress_callback=on_progress,
                )
            )
            run["tools"] = {t.name: t for t in tools.tools}
            run["plan"] = ok(await s.call_tool("classify", {"script": "ls\nrm -rf x"}))
            run["listed"] = ok(await s.call_tool("list_batches", {"limit": 3}))
            return run

    run = run_async(main)
    tools = run["tools"]
    assert set(tools) == {"run_batch", "classify", "get_output", "cancel_batch", "list_batches"}
    assert "script" in tools["run_batch"].input_schema["properties"]
    assert tools["run_batch"].output_schema is not None
    commands = run["commands"]
    assert [c["status"] for c in commands] == ["succeeded", "succeeded", "succeeded", "failed"]
    assert commands[0]["stdout"] == "one\n" and commands[2]["stdout"] == "two\n"
    assert commands[0]["class"] == "safe" and all(c["reasons"] for c in commands)
    assert progress and progress[-1] == (4, 4)  # streamed on the POST's SSE answer
    assert [s["class"] for s in run["plan"]["statements"]] == ["safe", "dangerous"]
    assert run["listed"]["items"][0]["batch_id"] == run["batch_id"]
    _s, mine = served.request("GET", f"/api/v1/batches/{run['batch_id']}", token=token)
    assert mine["user"] == "agent" and mine["source"] == "api"
    admin = served.token("boss", "admin")
    status, log = served.request("GET", "/api/v1/audit?action=batch_submitted", token=admin)
    assert status == 200
    (row,) = [e for e in log["items"] if e["target"] == run["batch_id"]]
    assert row["actor"] == "agent" and row["address"] == "127.0.0.1"


def test_a_viewers_token_lists_and_classifies_but_runs_nothing(served: Portal) -> None:
    viewer = served.token("watcher", "viewer")
    admin = served.token("boss", "admin")
    _s, before = served.request("GET", "/api/v1/batches?limit=200", token=admin)

    async def main() -> list[dict[str, Any]]:
        async with http_session(served, viewer) as s:
            return [
                error(await s.call_tool("run_batch", {"script": "touch pwned"})),
                error(await s.call_tool("cancel_batch", {"batch_id": "x" * 8})),
                ok(await s.call_tool("classify", {"script": "touch pwned"})),
                ok(await s.call_tool("list_batches", {})),
            ]

    refused, cancel, plan, _listed = run_async(main)
    assert refused["error"] == "forbidden" and "viewer" in refused["message"]
    assert cancel["error"] in ("forbidden", "not_found")
    assert plan["statements"][0]["class"] != "safe"
    _s, after = served.request("GET", "/api/v1/batches?limit=200", token=admin)
    assert after["total"] == before["total"]
    _s, log = served.request("GET", "/api/v1/audit?action=forbidden", token=admin)
    assert any(e["actor"] == "watcher" for e in log["items"])


def test_no_or_bad_token_is_401_and_only_post_is_served(served: Portal) -> None:
    status, challenge, body = _post(served, {"Accept": "application/json, text/event-stream"})
    assert status == 401 and challenge.startswith("Bearer") and '"unauthorized"' in body
    status, challenge, _ = _post(served, {"Authorization": "Bearer not-a-token"})
    assert status == 401 and challenge.startswith("Bearer")
    token = served.token("agent", "operator")
    status, _, body = _post(served, {"Authorization": f"Bearer {token}"}, method="GET")
    assert status == 405 and "POST" in body


def test_a_dropped_call_cancels_its_batch_and_calls_are_capped_per_user(served: Portal) -> None:
    token = served.token("racer", "operator")

    async def main() -> dict[str, Any]:
        async with http_session(served, token) as s:
            with anyio.move_on_after(2):
                await s.call_tool("run_batch", {"script": "sleep 30"})
            return ok(await s.call_tool("list_batches", {"limit": 1}))

    (slow,) = run_async(main)["items"]
    assert slow["summary"] == "sleep 30"
    assert served.wait_batch(slow["batch_id"], token, timeout=15)["status"] == "cancelled"

    async def crowd() -> list[str]:
        results: list[str] = []

        async def one() -> None:
            try:
                async with http_session(served, token) as s:
                    r = await s.call_tool("run_batch", {"script": "sleep 3"})
                    results.append("ok" if not r.is_error else "error")
            except Exception as e:  # the SDK raises on an HTTP 429
                results.append("429" if "429" in repr(e) else repr(e))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one)
        return results

    results = run_async(crowd)
    assert results.count("ok") == 3, results  # BASHFLEET_MCP_CALLS_PER_USER=3


def test_run_batch_answers_after_the_longest_wait_with_the_batch_still_running(
    served: Portal,
) -> None:
    token = served.token("patient", "operator")

    async def main() -> tuple[float, dict[str, Any], dict[str, Any]]:
        async with http_session(served, token) as s:
            started = anyio.current_time()
            run = ok(await s.call_tool("run_batch", {"script": "sleep 20"}))
            took = anyio.current_time() - started
            cancelled = ok(await s.call_tool("cancel_batch", {"batch_id": run["batch_id"]}))
            return took, run, cancelled

    took, run, cancelled = run_async(main)
    assert 4 <= took < 10, took  # BASHFLEET_MCP_WAIT_S=4
    assert run["status"] == "running" and "still runs after 4 s" in run["note"]
    assert cancelled["status"] in ("cancelled", "running")
    assert served.wait_batch(run["batch_id"], token, timeout=15)["status"] == "cancelled"


def test_hostile_json_rpc_never_gives_a_5xx_and_runs_nothing(served: Portal) -> None:
    # attack: malformed, oversized and wrongly typed JSON-RPC at /mcp (the SDK parses it,
    # behind the token check): no 5xx, no traceback, and no batch from a rejected call
    token = served.token("fuzzy", "operator")
    call = '{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":"run_batch",'
    call += '"arguments":%s}}'
    bodies = [
        b"",
        b"{",
        b"\xff\xfe\x00",
        b"[]",
        b"[" * 5000 + b"]" * 5000,
        b'{"jsonrpc":"2.0","id":1,"method":"' + b"x" * 100_000 + b'"}',
        b'{"jsonrpc":"2.0","id":99999999999999999999999999,"method":"tools/list"}',
        b'{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}',
        b'{"jsonrpc":"1.0","id":1,"method":"tools/list"}',
        b'{"jsonrpc":"2.0","id":1,"method":"no/such"}',
        b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2}]',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}',
    ] + [
        (call % ("1", args)).encode("utf-8", "surrogatepass")
        for args in (
            '{"script": 5}',
            '{"script": "touch x", "timeout_s": NaN}',
            '{"script": "touch x", "timeout_s": 1e999}',
            '{"script": "touch x", "timeout_s": -1}',
            '{"script": "touch x", "timeout_s": "ten"}',
            '{"script": "touch x", "on_failure": "explode"}',
            '{"commands": "touch x"}',
            '{"commands": [1, 2]}',
            '{"script": "touch x", "wait": "maybe"}',
            '{"script": "\\ud800touch x"}',
            '{"script": "touch x", "workspace": "../../etc"}',
            '{"script": ""}',
            "[]",
            '"run"',
        )
    ]
    admin = served.token("boss", "admin")
    before = served.request("GET", "/api/v1/batches?limit=1", token=admin)[1]["total"]
    statuses = []
    for body in bodies:
        req = urllib.request.Request(f"{served.url}/mcp", data=body, method="POST")
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json, text/event-stream")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, text = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        assert status < 500 and b"Traceback" not in text, (body[:100], status, text[:300])
        statuses.append(status)
    after = served.request("GET", "/api/v1/batches?limit=1", token=admin)[1]["total"]
    assert after == before, "a rejected call ran something"
    assert "Traceback" not in served.log()
    assert 200 in statuses and any(400 <= s < 500 for s in statuses), statuses
