"""Against a real `bashfleet serve`: `bashfleet mcp --url`, `bashfleet submit`, and
`bashfleet.client.Client`. (`Client.rerun` is not tested: `POST /batches/ID/rerun` does
not exist on this branch yet.)"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from bashfleet.client import ApiError, Client
from tests.mcp_helpers import error, mcp_session, ok, run_async
from tests.portal import BASHFLEET, Portal, free_port, running_portal


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    with running_portal(
        tmp_path_factory.mktemp("portal"),
        env={"BASHFLEET_SUBMIT_RATE": "1000"},
        extra=["--isolation", "local"],
    ) as p:
        yield p


def _batches(portal: Portal, token: str) -> list[dict[str, Any]]:
    status, page = portal.request("GET", "/api/v1/batches?limit=200", token=token)
    assert status == 200, page
    return list(page["items"])


def test_mcp_url_runs_as_the_tokens_user_and_is_audited(served: Portal) -> None:
    token = served.token("agent", "operator")

    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, _message: str | None) -> None:
        progress.append((done, total))

    async def main() -> dict[str, Any]:
        async with mcp_session("--url", served.url, env={"BASHFLEET_TOKEN": token}) as s:
            run = ok(
                await s.call_tool(
                    "run_batch",
                    {"commands": ["echo via-mcp", "false"]},
                    progress_callback=on_progress,
                )
            )
            run["listed"] = ok(await s.call_tool("list_batches", {"limit": 5}))
            run["output"] = ok(
                await s.call_tool(
                    "get_output", {"batch_id": run["batch_id"], "index": 0, "offset": 4}
                )
            )
            run["plan"] = ok(await s.call_tool("classify", {"script": "ls\nrm -rf x"}))
            return run

    run = run_async(main)
    assert [c["status"] for c in run["commands"]] == ["succeeded", "failed"]
    assert run["commands"][0]["stdout"] == "via-mcp\n" and run["status"] == "failed"
    assert run["commands"][0]["class"] == "safe" and run["commands"][0]["reasons"]
    assert run["makespan_s"] is not None and progress[-1] == (2, 2)
    assert run["output"]["data"] == "mcp\n"
    assert run["listed"]["items"][0]["batch_id"] == run["batch_id"]
    assert [s["class"] for s in run["plan"]["statements"]] == ["safe", "dangerous"]
    (mine,) = [b for b in _batches(served, token) if b["id"] == run["batch_id"]]
    assert mine["user"] == "agent" and mine["source"] == "api"
    admin = served.token("boss", "admin")
    status, log = served.request("GET", "/api/v1/audit?action=batch_submitted", token=admin)
    assert status == 200
    assert any(e["actor"] == "agent" and e["target"] == run["batch_id"] for e in log["items"])


def test_cancelling_the_call_cancels_the_portal_batch(served: Portal) -> None:
    token = served.token("agent", "operator")

    async def main() -> dict[str, Any]:
        async with mcp_session("--url", served.url, env={"BASHFLEET_TOKEN": token}) as s:
            with anyio.move_on_after(2):
                await s.call_tool("run_batch", {"script": "sleep 30"})
            return ok(await s.call_tool("list_batches", {"limit": 1}))

    (slow,) = run_async(main)["items"]
    assert slow["summary"] == "sleep 30"
    assert served.wait_batch(slow["batch_id"], token, timeout=15)["status"] == "cancelled"


def test_a_viewer_cannot_run_anything_through_mcp(served: Portal) -> None:
    viewer = served.token("watcher", "viewer")
    before = len(_batches(served, viewer))

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        async with mcp_session("--url", served.url, env={"BASHFLEET_TOKEN": viewer}) as s:
            refused = error(await s.call_tool("run_batch", {"script": "touch pwned"}))
            listed = ok(await s.call_tool("list_batches", {}))
        return refused, listed

    refused, listed = run_async(main)
    assert refused["error"] == "forbidden" and "viewer" in refused["message"]
    assert len(_batches(served, viewer)) == before == listed["total"]


def _submit(
    portal: Portal, token: str, script: Path, *flags: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASHFLEET, "submit", str(script), "--url", portal.url, *flags],
        capture_output=True,
        text=True,
        env={**os.environ, "BASHFLEET_TOKEN": token},
        timeout=60,
        check=False,
    )


def test_submit_wait_json_prints_the_run_summary(served: Portal, tmp_path: Path) -> None:
    token = served.token("agent", "operator")
    script = tmp_path / "batch.sh"
    script.write_text("echo one\necho oops >&2\nfalse\n")
    done = _submit(served, token, script, "--wait", "--json")
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert set(summary) >= {"commands", "makespan_s"}
    commands = summary["commands"]
    assert [c["index"] for c in commands] == [0, 1, 2]
    assert [c["status"] for c in commands] == ["succeeded", "succeeded", "failed"]
    assert commands[0]["stdout"] == "one\n" and commands[1]["stderr"] == "oops\n"
    assert set(commands[0]) >= {"command", "class", "executor", "exit_code", "duration_s"}
    assert "[1] one" in done.stderr and "[2!] oops" in done.stderr  # live output: stderr
    assert "[3] failed (exit 1)" in done.stderr
    assert "polling" not in done.stderr  # the output came over the live stream
    ok_run = tmp_path / "ok.sh"
    ok_run.write_text("echo a\necho b\n")
    tagged = _submit(served, token, ok_run, "--wait")
    assert tagged.returncode == 0, tagged.stderr
    assert sorted(tagged.stdout.splitlines()) == ["[1] a", "[2] b"]
    queued = _submit(served, token, ok_run)
    assert queued.returncode == 0 and len(queued.stdout.strip()) >= 8


def test_submit_refusals_are_the_apis(served: Portal, tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("ls\n")
    viewer = _submit(served, served.token("watcher", "viewer"), script, "--wait")
    assert viewer.returncode == 2 and "forbidden" in viewer.stderr, viewer.stderr
    no_token = subprocess.run(
        [BASHFLEET, "submit", str(script), "--url", served.url],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "BASHFLEET_TOKEN"},
        timeout=30,
        check=False,
    )
    assert no_token.returncode == 2 and "BASHFLEET_TOKEN" in no_token.stderr


def test_client_runs_reads_lists_and_cancels(served: Portal) -> None:
    with Client(served.url, served.token("agent", "operator")) as c:
        seen: list[str] = []
        batch = c.run("echo hello\nseq 1 5", on_progress=lambda b: seen.append(b["status"]))
        assert batch["status"] == "succeeded" and seen[-1] == "succeeded"
        first, second = batch["commands"]
        assert c.output(batch["id"], first["id"])["data"] == "hello\n"
        chunk = c.output(batch["id"], second["id"], "stdout", offset=2, limit=4)
        assert chunk["data"] == "2\n3\n" and chunk["next_offset"] == 6
        assert c.output(batch["id"], second["id"], "stderr")["data"] == ""
        plan = c.classify("ls\nmake")
        assert [s["class"] for s in plan["statements"]] == ["safe", "conditional"]
        page = c.list_batches(limit=1)
        assert page["items"][0]["id"] == batch["id"] and page["total"] >= 1
        slow = c.run("sleep 30", wait=False)
        assert slow["status"] in ("pending", "queued", "running")
        c.cancel(slow["id"])
        assert c.wait(slow["id"], timeout_s=20)["status"] == "cancelled"


def test_client_errors_carry_the_apis_code_and_message(served: Portal) -> None:
    with Client(served.url, served.token("watcher", "viewer")) as viewer:
        with pytest.raises(ApiError) as refused:
            viewer.run("ls")
        assert refused.value.code == "forbidden" and refused.value.status == 403
        assert "viewer" in refused.value.message
        with pytest.raises(ApiError) as missing:
            viewer.batch("no-such-batch")
        assert missing.value.code == "not_found" and missing.value.status == 404
    with Client(served.url, served.token("agent", "operator")) as operator:
        with pytest.raises(ApiError) as empty:
            operator.run("   ")
        assert empty.value.code == "invalid_input"
    with Client(served.url, "not-a-token") as stranger, pytest.raises(ApiError) as nobody:
        stranger.list_batches()
    assert nobody.value.status == 401
    with Client(f"http://127.0.0.1:{free_port()}", "t") as gone, pytest.raises(ApiError) as down:
        gone.list_batches()
    assert down.value.code == "unreachable" and down.value.status == 0


def _texts(events: list[tuple[str, dict[str, Any]]]) -> dict[tuple[int, str], str]:
    """Output reassembled by offset; fails on any gap or repeat."""
    out: dict[tuple[int, str], str] = {}
    at: dict[tuple[int, str], int] = {}
    for name, p in events:
        if name != "command_output":
            continue
        key = (p["index"], p["stream"])
        assert p["offset"] == at.get(key, 0), f"gap or repeat in {key} at {p['offset']}"
        at[key] = p["offset"] + p["nbytes"]
        out[key] = out.get(key, "") + p["data"]
    return out


def test_client_stream_is_live_and_resumes_from_offsets(served: Portal) -> None:
    script = 'for i in $(seq 1 20); do echo "line $i"; sleep 0.05; done\necho err >&2'
    want = "".join(f"line {i}\n" for i in range(1, 21))
    with Client(served.url, served.token("agent", "operator")) as c:
        batch = c.run(script, wait=False)
        first = c.stream(batch["id"])
        seen: list[tuple[str, dict[str, Any]]] = []
        for event in first:
            seen.append(event)
            if sum(n == "command_output" for n, _ in seen) == 3:
                break  # a dropped client: it keeps what it had
        first.close()
        assert c.batch(batch["id"])["status"] in ("running", "pending", "queued")
        resumed = list(c.stream(batch["id"], offsets=first.offsets))
        texts = _texts(seen + resumed)
        assert texts[(0, "stdout")] == want and texts[(1, "stderr")] == "err\n"
        assert resumed[-1] == ("batch_status", {"batch_id": batch["id"], "status": "succeeded"})
        assert any(n == "command_status" and p["status"] == "running" for n, p in seen + resumed)
        again = list(c.stream(batch["id"]))  # an ended batch: everything, from the start
        assert _texts(again)[(0, "stdout")] == want


def test_client_stream_reconnects_after_a_dropped_connection(served: Portal) -> None:
    script = 'for i in $(seq 1 20); do echo "line $i"; sleep 0.05; done'
    with Client(served.url, served.token("agent", "operator")) as c:
        batch = c.run(script, wait=False)
        live = c.stream(batch["id"])
        events: list[tuple[str, dict[str, Any]]] = []
        dropped = False
        for event in live:
            events.append(event)
            if not dropped and sum(n == "command_output" for n, _ in events) == 3:
                live._sio.disconnect()  # the connection goes away under the reader
                dropped = True
        assert dropped and live.connections == 2
        assert _texts(events)[(0, "stdout")] == "".join(f"line {i}\n" for i in range(1, 21))
        assert events[-1][1]["status"] == "succeeded"
