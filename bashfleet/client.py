"""A typed client of the portal's REST API (`/api/v1`, bearer token).

BashfleetError          (sandbox.errors) base of everything bashfleet raises
 +-- ApiError           the portal said no, or could not be reached: ``code`` is the
                        API's ``error`` (``forbidden``, ``invalid_input``, ``rate_limited``,
                        ``not_found``...) or ``unreachable`` / ``bad_response``; ``status``
                        is the HTTP status (0 when nothing answered)

with Client("http://127.0.0.1:8080", token) as c:
    batch = c.run("ls\\nmake test")            # waits; the batch object
    c.output(batch["id"], batch["commands"][0]["id"])["data"]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

import httpx

from sandbox.errors import BashfleetError

if TYPE_CHECKING:
    from bashfleet.live import LiveStream

ACTIVE = ("pending", "queued", "running", "awaiting_approval")
Stream = Literal["stdout", "stderr"]


class ApiError(BashfleetError):
    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class Command(TypedDict, total=False):
    id: str
    index: int
    command: str
    # `class` is a keyword: read it as command["class"]
    reasons: list[str]
    executor: str
    needs: list[int]
    reads: list[str]
    writes: list[str]
    status: str
    exit_code: int | None
    duration_s: float | None
    reason: str | None
    truncated: bool
    stdout_bytes: int
    stderr_bytes: int


class Batch(TypedDict, total=False):
    id: str
    status: str
    source: str
    user: str
    workspace: str
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    command_count: int
    counts: dict[str, int]
    summary: str
    commands: list[Command]


class Page(TypedDict):
    items: list[Batch]
    total: int
    next_cursor: str | None


class Chunk(TypedDict):
    """One stream of one command's output, from ``offset`` (bytes) on."""

    stream: str
    data: str
    offset: int
    next_offset: int
    truncated: bool  # the API's flag: more follows (from next_offset), or the output was capped


class Client:
    """Every call raises ApiError on a refusal; nothing is retried behind your back."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._http = httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {token}", "User-Agent": "bashfleet-client"},
            timeout=timeout_s,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- batches --------------------------------------------------------------------------

    def submit(
        self,
        script: str | None = None,
        *,
        commands: list[str] | None = None,
        workspace: str | None = None,
        timeout_s: float | None = None,
        on_failure: str | None = None,
        priority: int | None = None,
        retries: int | None = None,
    ) -> Batch:
        """Submit and return at once (201: the batch as planned)."""
        body: dict[str, Any] = {
            "script": script,
            "commands": commands,
            "workspace": workspace,
            "timeout_s": timeout_s,
            "on_failure": on_failure,
            "priority": priority,
            "retries": retries,
        }
        # the API refuses nulls: a field left out takes the portal's default
        return cast(Batch, self._call("POST", "/batches", json=_present(body)))

    def run(
        self,
        script: str | None = None,
        wait: bool = True,
        *,
        commands: list[str] | None = None,
        workspace: str | None = None,
        timeout_s: float | None = None,
        on_failure: str | None = None,
        on_progress: Callable[[Batch], None] | None = None,
    ) -> Batch:
        """Submit; with ``wait`` poll (with backoff) until the batch has ended."""
        batch = self.submit(
            script,
            commands=commands,
            workspace=workspace,
            timeout_s=timeout_s,
            on_failure=on_failure,
        )
        return self.wait(batch["id"], on_progress=on_progress) if wait else batch

    def wait(
        self,
        batch_id: str,
        *,
        on_progress: Callable[[Batch], None] | None = None,
        timeout_s: float | None = None,
        poll_s: tuple[float, float] = (0.05, 1.0),
    ) -> Batch:
        """Poll GET /batches/ID from every ``poll_s[0]`` up to every ``poll_s[1]`` seconds
        (x1.5 while nothing changes) until the batch ends; ``on_progress`` sees each poll."""
        delay, longest = poll_s
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        seen: tuple[str, ...] = ()
        while True:
            batch = self.batch(batch_id)
            if on_progress is not None:
                on_progress(batch)
            if batch["status"] not in ACTIVE:
                return batch
            if deadline is not None and time.monotonic() > deadline:
                raise ApiError("timeout", f"batch {batch_id} still {batch['status']}")
            now = tuple(c.get("status", "") for c in batch.get("commands", []))
            delay = poll_s[0] if now != seen else min(longest, delay * 1.5)
            seen = now
            time.sleep(delay)

    def batch(self, batch_id: str) -> Batch:
        return cast(Batch, self._call("GET", f"/batches/{batch_id}"))

    def list_batches(
        self,
        *,
        status: str | None = None,
        source: str | None = None,
        q: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        params = _present(
            {
                "status": status,
                "source": source,
                "q": q,
                "limit": limit,
                "offset": offset,
                "cursor": cursor,
            }
        )
        return cast(Page, self._call("GET", "/batches", params=params))

    def cancel(self, batch_id: str) -> Batch:
        return cast(Batch, self._call("POST", f"/batches/{batch_id}/cancel"))

    def rerun(self, batch_id: str, only: Literal["all", "failed"] = "all") -> Batch:
        """A new batch of the same commands (all, or those that did not succeed)."""
        return cast(Batch, self._call("POST", f"/batches/{batch_id}/rerun", json={"only": only}))

    def output(
        self,
        batch_id: str,
        command_id: str,
        stream: Stream = "stdout",
        offset: int = 0,
        limit: int = 1 << 20,
    ) -> Chunk:
        if stream not in ("stdout", "stderr"):
            raise ApiError("invalid_input", "`stream` is stdout or stderr")
        raw = self._call(
            "GET",
            f"/batches/{batch_id}/commands/{command_id}/output",
            params={"offset": offset, "limit": limit},
        )
        return {
            "stream": stream,
            "data": str(raw.get(stream, "")),
            "offset": offset,
            "next_offset": int(raw.get(f"{stream}_next_offset", offset)),
            "truncated": bool(raw.get("truncated")),
        }

    def outputs(
        self, batch_id: str, command_id: str, offset: int = 0, limit: int = 1 << 20
    ) -> dict[str, Any]:
        """Both streams at once, as the API answers: ``stdout``, ``stderr``,
        ``stdout_next_offset``, ``stderr_next_offset``, ``truncated``."""
        return self._call(
            "GET",
            f"/batches/{batch_id}/commands/{command_id}/output",
            params={"offset": offset, "limit": limit},
        )

    def stream(
        self, batch_id: str, offsets: dict[tuple[str, str], int] | None = None
    ) -> LiveStream:
        """The batch's live events over Socket.IO, resumed from ``offsets`` ({(command id,
        stream): bytes already had}); iterate for (name, payload) until the batch ends.
        ``.offsets`` of the returned stream says how far each stream got."""
        from bashfleet.live import LiveStream

        return LiveStream(self, self._token, batch_id, offsets)

    def classify(self, script: str) -> dict[str, Any]:
        """The dry run: statements (class, reasons, reads, writes, needs), edges, levels."""
        return self._call("POST", "/classify", json={"script": script})

    # --- plumbing -------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as e:
            raise ApiError("unreachable", f"{self.url} did not answer in time ({e})") from e
        except httpx.HTTPError as e:
            raise ApiError("unreachable", f"cannot reach {self.url}: {e}") from e
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and isinstance(body, dict):
            return body
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            raise ApiError(body["error"], str(body.get("message", "")), response.status_code)
        raise ApiError(
            "bad_response",
            f"{method} {path} answered {response.status_code} without a JSON error object",
            response.status_code,
        )


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
