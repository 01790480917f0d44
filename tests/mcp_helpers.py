"""Driving `bashfleet mcp` with the MCP SDK's own client over stdio."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult

from tests.portal import BASHFLEET


@contextlib.asynccontextmanager
async def mcp_session(
    *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[ClientSession]:
    """A started session with `bashfleet mcp ARGS...` (its stderr goes to the test's)."""
    params = StdioServerParameters(
        command=BASHFLEET, args=["mcp", *args], env={**os.environ, **(env or {})}
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


T = TypeVar("T")


def run_async(main: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run(main)`` on a thread of its own: the main thread may hold an event loop
    already (Playwright's sync API keeps one there for the browser tests' session)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, main).result()  # type: ignore[arg-type]


def structured(result: CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None, result.content
    return dict(result.structured_content)


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    return structured(result)


def error(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error, result.structured_content
    data = structured(result)
    text = result.content[0].text  # type: ignore[union-attr]
    assert text == f"{data['error']}: {data['message']}"
    return data
