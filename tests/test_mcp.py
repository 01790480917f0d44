"""`bashfleet mcp --workspace`: the SDK's own client over stdio, the local engine behind."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.mcp_helpers import error, mcp_session, ok, run_async

TEST_UID = 1000  # containers never run as root: a workspace they write belongs to a user
FOUR = "echo one\nmkdir -p d && echo two > d/f\ncat d/f\nfalse\n"
TOOLS = {"run_batch", "classify", "get_output", "cancel_batch", "list_batches"}


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    if os.geteuid() == 0:
        os.chown(ws, TEST_UID, TEST_UID)
    return ws


def test_tools_are_listed_with_input_and_output_schemas(tmp_path: Path) -> None:
    async def main() -> None:
        async with mcp_session("--workspace", str(tmp_path), "--isolation", "local") as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
        assert set(tools) == TOOLS
        run = tools["run_batch"]
        assert set(run.input_schema["properties"]) == {
            "script",
            "commands",
            "workspace",
            "timeout_s",
            "on_failure",
            "wait",
        }
        assert run.input_schema["properties"]["wait"]["default"] is True
        assert run.output_schema is not None
        assert set(run.output_schema["required"]) >= {"batch_id", "status", "commands"}
        command = run.output_schema["$defs"]["CommandResult"]["properties"]
        assert {"index", "class", "reasons", "executor", "stdout", "truncated"} <= set(command)
        assert tools["get_output"].input_schema["required"] == ["batch_id", "index"]
        for tool in tools.values():
            assert tool.description and tool.output_schema is not None, tool.name

    run_async(main)


@pytest.mark.docker
def test_run_batch_returns_four_results_in_script_order(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, _message: str | None) -> None:
        progress.append((done, total))

    async def main() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with mcp_session("--workspace", str(ws)) as s:
            run = ok(
                await s.call_tool("run_batch", {"script": FOUR}, progress_callback=on_progress)
            )
            rest = ok(
                await s.call_tool(
                    "get_output", {"batch_id": run["batch_id"], "index": 2, "offset": 1}
                )
            )
            listed = ok(await s.call_tool("list_batches", {}))
            plan = ok(await s.call_tool("classify", {"script": FOUR}))
        return run, rest, listed, plan

    run, rest, listed, plan = run_async(main)
    commands = run["commands"]
    assert [c["index"] for c in commands] == [0, 1, 2, 3]
    assert [c["status"] for c in commands] == ["succeeded", "succeeded", "succeeded", "failed"]
    assert [c["stdout"] for c in commands] == ["one\n", "", "two\n", ""]
    assert [c["class"] for c in commands] == ["safe", "sequential", "safe", "safe"]
    assert [c["executor"] for c in commands] == ["local", "docker", "local", "local"]
    assert commands[3]["exit_code"] == 1 and run["status"] == "failed"
    assert all(c["reasons"] for c in commands)
    assert (ws / "d" / "f").read_text() == "two\n"
    assert progress and progress[-1] == (4, 4)
    assert rest["data"] == "wo\n" and rest["next_offset"] == 4 and rest["more"] is False
    assert listed["items"][0]["batch_id"] == run["batch_id"] and listed["total"] == 1
    assert [s["class"] for s in plan["statements"]] == ["safe", "sequential", "safe", "safe"]
    assert {"before": 1, "after": 2} in [
        {k: e[k] for k in ("before", "after")} for e in plan["edges"]
    ]


@pytest.mark.docker
def test_hostile_script_is_contained_like_through_the_api(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("still here")

    async def main() -> list[dict[str, Any]]:
        async with mcp_session("--workspace", str(ws)) as s:
            return [
                ok(await s.call_tool("run_batch", {"script": script}))
                for script in (f"rm -rf {outside}", "rm -rf --no-preserve-root /")
            ]

    runs = run_async(main)
    for run in runs:
        (command,) = run["commands"]
        assert command["class"] == "dangerous" and command["executor"] == "docker", command
        assert any("rm -rf" in r or "recursive" in r for r in command["reasons"]), command
    assert runs[0]["commands"][0]["status"] == "succeeded"  # it removed a path of its own
    assert (outside / "keep").read_text() == "still here"  # the host is not the container's


def test_without_docker_risky_commands_are_refused_and_bad_input_runs_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "victim").write_text("x")
    no_engine = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}

    async def main() -> tuple[dict[str, Any], ...]:
        async with mcp_session("--workspace", str(tmp_path), env=no_engine) as s:
            refused = ok(await s.call_tool("run_batch", {"commands": ["ls", "rm -rf victim"]}))
            nul = error(await s.call_tool("run_batch", {"script": "ls\x00"}))
            both = error(await s.call_tool("run_batch", {"script": "ls", "commands": ["ls"]}))
            lines = error(await s.call_tool("run_batch", {"commands": ["echo a\necho b"]}))
            escape = error(await s.call_tool("run_batch", {"script": "ls", "workspace": "../.."}))
            unknown = error(await s.call_tool("cancel_batch", {"batch_id": "nope"}))
            listed = ok(await s.call_tool("list_batches", {}))
        return refused, nul, both, lines, escape, unknown, listed

    refused, nul, both, lines, escape, unknown, listed = run_async(main)
    assert [c["status"] for c in refused["commands"]] == ["succeeded", "refused"]
    assert "--isolation local" in (refused["commands"][1]["reason"] or "")
    assert (tmp_path / "victim").exists()
    assert nul["error"] == "invalid_input" and "NUL" in nul["message"]
    assert both["error"] == "invalid_input"
    assert lines["error"] == "invalid_input" and "several lines" in lines["message"]
    assert escape["error"] == "invalid_input"
    assert unknown["error"] == "not_found"
    assert listed["total"] == 1  # the refused inputs made no batch


def test_cancelling_the_call_cancels_the_batch(tmp_path: Path) -> None:
    async def main() -> tuple[float, dict[str, Any]]:
        async with mcp_session("--workspace", str(tmp_path), "--isolation", "local") as s:
            started = time.monotonic()
            with anyio.move_on_after(1.5):
                await s.call_tool("run_batch", {"commands": ["sleep 30", "sleep 31"]})
            for _ in range(100):
                listed = ok(await s.call_tool("list_batches", {}))
                if listed["items"] and listed["items"][0]["status"] == "cancelled":
                    break
                await anyio.sleep(0.1)
            return time.monotonic() - started, listed

    took, listed = run_async(main)
    assert listed["items"][0]["status"] == "cancelled", listed
    assert took < 10


def test_long_output_is_cut_with_a_note_and_read_on_with_get_output(tmp_path: Path) -> None:
    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        async with mcp_session("--workspace", str(tmp_path), "--isolation", "local") as s:
            run = ok(await s.call_tool("run_batch", {"script": "seq 1 30000"}))
            rest = ok(
                await s.call_tool(
                    "get_output",
                    {"batch_id": run["batch_id"], "index": 0, "offset": 65536, "limit": 1 << 20},
                )
            )
        return run, rest

    run, rest = run_async(main)
    full = "".join(f"{i}\n" for i in range(1, 30001))
    command = run["commands"][0]
    assert command["truncated"] is True and command["stdout"] == full[:65536]
    assert "get_output" in run["note"] and "offset=65536" in run["note"]
    assert command["stdout"] + rest["data"] == full and rest["more"] is False
