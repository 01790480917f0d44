"""`bashfleet mcp`: bashfleet as a Model Context Protocol tool server (stdio).

Tools: run_batch, classify, get_output, cancel_batch, list_batches. Each has an input
and an output JSON schema; a refusal is a tool error (``is_error``) whose text is
``CODE: message`` and whose structured content is ``{"error": CODE, "message": TEXT}``,
the REST API's codes. While run_batch waits it reports progress (commands ended / all),
and a cancelled call cancels its batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Annotated, Any, Literal

import anyio
from anyio import to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from bashfleet.backends import OUTPUT_CAP, Backend
from bashfleet.client import ApiError

log = logging.getLogger(__name__)


class CommandResult(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    index: int = Field(description="0-based position in the script")
    command: str
    cls: str = Field(alias="class", description="safe | conditional | sequential | dangerous")
    reasons: list[str]
    executor: str = Field(description="local | docker | none (never ran)")
    status: str
    exit_code: int | None
    duration_s: float | None
    reason: str | None = Field(None, description="why it failed, waited, was skipped or refused")
    stdout: str = Field(description=f"the first {OUTPUT_CAP} bytes")
    stderr: str = Field(description=f"the first {OUTPUT_CAP} bytes")
    truncated: bool = Field(description="more output exists: read it with get_output")


class BatchResult(BaseModel):
    batch_id: str
    status: str
    makespan_s: float | None
    commands: list[CommandResult]
    note: str | None = None


class Statement(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    index: int
    line: int
    command: str
    cls: str = Field(alias="class")
    reasons: list[str]
    reads: list[str]
    writes: list[str]
    needs: list[int] = Field(description="indices this statement waits for")
    level: int


class Edge(BaseModel):
    before: int
    after: int
    reason: str


class Classification(BaseModel):
    statements: list[Statement]
    edges: list[Edge]


class Output(BaseModel):
    batch_id: str
    index: int
    stream: str
    offset: int
    next_offset: int
    data: str
    more: bool = Field(description="more output follows from next_offset (or the batch runs)")


class Cancelled(BaseModel):
    batch_id: str
    status: str


class BatchItem(BaseModel):
    batch_id: str
    status: str
    created_at: str | None
    command_count: int
    summary: str


class BatchList(BaseModel):
    items: list[BatchItem]
    total: int


def _error(e: ApiError) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=f"{e.code}: {e.message}")],
        structured_content={"error": e.code, "message": e.message},
        is_error=True,
    )


def _ok(data: dict[str, Any]) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(data, ensure_ascii=False))],
        structured_content=data,
    )


def _note(result: dict[str, Any]) -> str | None:
    cut = [c["index"] for c in result["commands"] if c["truncated"]]
    if not cut:
        return None
    return (
        f"output is cut at {OUTPUT_CAP} bytes per stream for commands {cut}; read the rest "
        f'with get_output(batch_id="{result["batch_id"]}", index=N, stream="stdout", '
        f"offset={OUTPUT_CAP})"
    )


async def _call(fn: Any, *args: Any) -> Any:
    return await to_thread.run_sync(fn, *args, abandon_on_cancel=True)


OpenBackend = Callable[[Context], AbstractContextManager[Backend]]


def build_server(
    open_backend: OpenBackend, *, mode: str, wait_limit_s: float | None = None
) -> MCPServer:
    """The tools, each calling the backend that ``open_backend`` gives for its call (one
    for a stdio session; the caller's own for the portal's ``/mcp``). ``wait_limit_s``
    bounds how long run_batch waits: past it, the batch as it stands, still running."""
    server: MCPServer = MCPServer(
        name="bashfleet",
        instructions=(
            "Run batches of shell commands concurrently and safely. run_batch judges every "
            "top-level statement (safe/conditional/sequential/dangerous, with reasons), runs "
            "independent ones in parallel and risky ones isolated, and returns every "
            "command's status and output in script order. classify is the dry run. "
            f"This server runs batches {mode}."
        ),
        log_level="WARNING",
    )

    @server.tool(
        annotations=ToolAnnotations(destructive_hint=True, open_world_hint=False),
        structured_output=True,
    )
    async def run_batch(
        ctx: Context,
        script: Annotated[
            str | None, Field(description="shell script; one command per top-level statement")
        ] = None,
        commands: Annotated[
            list[str] | None, Field(description="instead of script: one command per item")
        ] = None,
        workspace: Annotated[str | None, Field(description="workspace to run in")] = None,
        timeout_s: Annotated[
            float | None, Field(description="wall-clock limit per command, seconds", gt=0)
        ] = None,
        on_failure: Literal["skip_dependents", "continue", "halt"] | None = None,
        wait: Annotated[bool, Field(description="wait for the end (default)")] = True,
    ) -> Annotated[CallToolResult, BatchResult]:
        """Run shell commands as one batch: parallel where safe, isolated where risky.

        Returns batch_id, status, makespan_s and, in script order, every command's index,
        class, reasons, executor, status, exit_code, duration_s and output (cut at 64 KiB
        per stream; get_output reads the rest). With wait=false it returns at once with
        the planned commands; poll with get_output / list_batches."""
        with open_backend(ctx) as backend:
            try:
                batch_id = await _call(
                    backend.submit, script, commands, workspace, timeout_s, on_failure
                )
            except ApiError as e:
                return _error(e)
            try:
                ended = not wait or await _wait(backend, batch_id, ctx, wait_limit_s)
                result = await _call(backend.summary, batch_id)
            except ApiError as e:
                return _error(e)
        result["note"] = _note(result) if ended else _still_running(result, wait_limit_s)
        return _ok(result)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=True)
    async def classify(
        ctx: Context,
        script: Annotated[str, Field(description="the script to judge; nothing runs")],
    ) -> Annotated[CallToolResult, Classification]:
        """The dry run: each top-level statement's class, reasons, reads and writes, and the
        plan's edges (which command waits for which, and why)."""
        with open_backend(ctx) as backend:
            try:
                return _ok(await _call(backend.classify, script))
            except ApiError as e:
                return _error(e)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=True)
    async def get_output(
        ctx: Context,
        batch_id: str,
        index: Annotated[int, Field(description="the command's 0-based index", ge=0)],
        stream: Literal["stdout", "stderr"] = "stdout",
        offset: Annotated[int, Field(ge=0, description="byte offset to read from")] = 0,
        limit: Annotated[int, Field(ge=1, le=1 << 20)] = OUTPUT_CAP,
    ) -> Annotated[CallToolResult, Output]:
        """Read one command's output from a byte offset (run_batch gives the first 64 KiB)."""
        with open_backend(ctx) as backend:
            try:
                return _ok(await _call(backend.output, batch_id, index, stream, offset, limit))
            except ApiError as e:
                return _error(e)

    @server.tool(annotations=ToolAnnotations(destructive_hint=False), structured_output=True)
    async def cancel_batch(ctx: Context, batch_id: str) -> Annotated[CallToolResult, Cancelled]:
        """Cancel a batch: running commands are killed, waiting ones never start."""
        with open_backend(ctx) as backend:
            try:
                return _ok(await _call(backend.cancel, batch_id))
            except ApiError as e:
                return _error(e)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=True)
    async def list_batches(
        ctx: Context,
        status: Annotated[
            str | None, Field(description="comma-separated statuses, e.g. running,failed")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
    ) -> Annotated[CallToolResult, BatchList]:
        """Recent batches, newest first."""
        with open_backend(ctx) as backend:
            try:
                return _ok(await _call(backend.list_batches, status, limit))
            except ApiError as e:
                return _error(e)

    return server


def _still_running(result: dict[str, Any], waited_s: float | None) -> str:
    return (
        f"the batch still runs after {waited_s:g} s (this server's longest wait); call "
        f'list_batches, get_output(batch_id="{result["batch_id"]}", ...) or '
        "cancel_batch to follow it"
    )


async def _wait(
    backend: Backend, batch_id: str, ctx: Context, limit_s: float | None = None
) -> bool:
    """Until the batch ends (True) or ``limit_s`` passes (False), reporting (ended, total)
    when it changes. A cancelled call (the client's notifications/cancelled) cancels the
    batch before it lets go. A backend whose poll returns at once (REST) is waited for
    here, asleep, so that a waiting call holds no thread."""
    delay, reported = 0.02, -1
    give_up = None if limit_s is None else time.monotonic() + limit_s
    try:
        while True:
            asked = time.monotonic()
            ended, done, total = await _call(backend.poll, batch_id, delay)
            if done != reported:
                reported = done
                await ctx.report_progress(done, total, f"{done}/{total} commands finished")
                delay = 0.02
            else:
                delay = min(1.0, delay * 1.5)
            if ended:
                return True
            if give_up is not None and time.monotonic() >= give_up:
                return False
            rest = delay - (time.monotonic() - asked)
            if rest > 0.001 and await _nap(backend, batch_id, rest):
                delay = 0.02  # something changed: look again soon (the store may lag it)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            try:
                await to_thread.run_sync(backend.cancel, batch_id)
            except ApiError as e:
                log.warning("could not cancel batch %s: %s", batch_id, e)
        raise


async def _nap(backend: Backend, batch_id: str, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if the backend said the batch changed meanwhile. A
    backend may offer ``watch(batch_id, wake) -> unwatch`` (the portal's own, in process:
    its event bus), so that the end of a batch is seen at once, not at the next poll."""
    watch = getattr(backend, "watch", None)
    if watch is None:
        await anyio.sleep(seconds)
        return False
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    unwatch = watch(batch_id, lambda: loop.call_soon_threadsafe(changed.set))
    try:
        with anyio.move_on_after(seconds):
            await changed.wait()
    finally:
        unwatch()
    return changed.is_set()


def serve_stdio(backend: Backend, *, mode: str) -> None:
    @contextlib.contextmanager
    def the_one(_ctx: Context) -> Iterator[Backend]:
        yield backend

    server = build_server(the_one, mode=mode)
    try:
        server.run("stdio")
    finally:
        backend.close()
