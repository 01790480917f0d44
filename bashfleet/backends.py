"""Where `bashfleet mcp` runs batches: this process's engine, or a portal over REST.

Both answer in the same plain shapes (the MCP tools' structured results) and raise
ApiError with the API's codes, so the MCP layer does not care which one it talks to.
Every method blocks: the MCP server calls them on worker threads.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from bashfleet.client import ACTIVE, ApiError, Client
from sandbox.errors import BashfleetError, InputError, PolicyError
from sandbox.pipeline import judgement_json, script_text

OUTPUT_CAP = 64 << 10  # per stream and command in a run_batch result
ON_FAILURE = ("skip_dependents", "continue", "halt")


class Backend(Protocol):
    def submit(
        self,
        script: str | None,
        commands: list[str] | None,
        workspace: str | None,
        timeout_s: float | None,
        on_failure: str | None,
    ) -> str: ...

    def poll(self, batch_id: str, wait_s: float) -> tuple[bool, int, int]:
        """(ended, commands ended, commands in all); may block up to ``wait_s`` (and return
        at once when the batch ends)."""
        ...

    def summary(self, batch_id: str, cap: int = OUTPUT_CAP) -> dict[str, Any]: ...

    def classify(self, script: str) -> dict[str, Any]: ...

    def output(
        self, batch_id: str, index: int, stream: str, offset: int, limit: int
    ) -> dict[str, Any]: ...

    def cancel(self, batch_id: str) -> dict[str, Any]: ...

    def list_batches(self, status: str | None, limit: int) -> dict[str, Any]: ...

    def close(self) -> None: ...


def translated(e: BashfleetError) -> ApiError:
    """The engine's exceptions under the codes the REST API gives them (webapp/errors.py)."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, InputError):
        return ApiError("invalid_input", str(e), 400)
    if isinstance(e, PolicyError):
        return ApiError("not_possible", str(e), 409)
    return ApiError("rejected", str(e), 400)


def _cut(data: bytes, cap: int) -> tuple[str, bool]:
    return data[:cap].decode("utf-8", "replace"), len(data) > cap


class LocalBackend:
    """Batches run by this process (``bashfleet mcp --workspace DIR``), like `bashfleet run`."""

    def __init__(self, root: Path, isolation: str, data: Path, *, jobs: int | None = None) -> None:
        from sandbox.engine import LocalEngine
        from sandbox.executors.local import warming
        from sandbox.executors.rootfs import trees_dir

        self.root = root.resolve()
        if not self.root.is_dir():
            raise InputError(f"workspace {self.root} is not a directory")
        local = warming(self.root, None if isolation == "local" else trees_dir(data))
        self.engine = LocalEngine(
            self.root, local, isolation=isolation, jobs=jobs, warn=lambda t: sys.stderr.write(t)
        )

    def _workspace(self, name: str | None) -> Path:
        if not name or name in (".", "default"):
            return self.root
        where = (self.root / name).resolve()
        if Path(name).is_absolute() or not where.is_relative_to(self.root):
            raise ApiError("invalid_input", f"`workspace` is a folder inside {self.root}", 400)
        return where

    def submit(
        self,
        script: str | None,
        commands: list[str] | None,
        workspace: str | None,
        timeout_s: float | None,
        on_failure: str | None,
    ) -> str:
        if timeout_s is not None and not 0 < timeout_s <= 7 * 86400:
            raise ApiError("invalid_input", "timeout_s must be more than 0 and at most 604800")
        try:
            text = script_text(script, commands)
            judgement = self.engine.judge(text)
            return self.engine.submit(
                text,
                judgement,
                workspace=self._workspace(workspace),
                timeout_s=timeout_s,
                on_failure=on_failure,
            )
        except BashfleetError as e:
            raise translated(e) from e

    def _known(self, batch_id: str) -> None:
        if batch_id not in self.engine.batches:
            raise ApiError("not_found", f"no batch {batch_id} in this session", 404)

    def poll(self, batch_id: str, wait_s: float) -> tuple[bool, int, int]:
        self._known(batch_id)
        ended = self.engine.wait(batch_id, wait_s)
        done, total = self.engine.progress(batch_id)
        return ended, done, total

    def summary(self, batch_id: str, cap: int = OUTPUT_CAP) -> dict[str, Any]:
        self._known(batch_id)
        commands = []
        for spec, status, outcome, executor, reason in self.engine.result(batch_id):
            out, cut_out = _cut(self.engine.output(batch_id, spec.index, "stdout"), cap)
            err, cut_err = _cut(self.engine.output(batch_id, spec.index, "stderr"), cap)
            commands.append(
                {
                    "index": spec.index,
                    "command": spec.command,
                    "class": spec.cls.value,
                    "reasons": list(spec.reasons),
                    "executor": executor or "none",
                    "status": status.value,
                    "exit_code": outcome.exit_code if outcome else None,
                    "duration_s": round(outcome.duration_s, 4) if outcome else None,
                    "reason": reason or None,
                    "stdout": out,
                    "stderr": err,
                    "truncated": cut_out or cut_err or bool(outcome and outcome.truncated),
                }
            )
        return {
            "batch_id": batch_id,
            "status": self.engine.status(batch_id).value,
            "makespan_s": round(self.engine.makespan_s(batch_id), 4),
            "commands": commands,
        }

    def classify(self, script: str) -> dict[str, Any]:
        try:
            judgement = self.engine.judge(script)
        except BashfleetError as e:
            raise translated(e) from e
        return judgement_json(judgement)

    def output(
        self, batch_id: str, index: int, stream: str, offset: int, limit: int
    ) -> dict[str, Any]:
        self._known(batch_id)
        if not 0 <= index < self.engine.batches[batch_id].total:
            raise ApiError("not_found", f"batch {batch_id} has no command {index}", 404)
        try:
            data = self.engine.output(batch_id, index, stream)
        except BashfleetError as e:
            raise translated(e) from e
        chunk = data[offset : offset + limit]
        ended = self.engine.status(batch_id).final
        return {
            "batch_id": batch_id,
            "index": index,
            "stream": stream,
            "offset": offset,
            "next_offset": offset + len(chunk),
            "data": chunk.decode("utf-8", "replace"),
            "more": offset + len(chunk) < len(data) or not ended,
        }

    def cancel(self, batch_id: str) -> dict[str, Any]:
        self._known(batch_id)
        self.engine.cancel(batch_id)
        self.engine.wait(batch_id, 10)
        return {"batch_id": batch_id, "status": self.engine.status(batch_id).value}

    def list_batches(self, status: str | None, limit: int) -> dict[str, Any]:
        items = []
        for info in reversed(list(self.engine.batches.values())):
            st = self.engine.status(info.id).value
            if status and st not in status.split(","):
                continue
            first = next((line for line in info.script.splitlines() if line.strip()), "")
            items.append(
                {
                    "batch_id": info.id,
                    "status": st,
                    "created_at": datetime.fromtimestamp(info.created_at).astimezone().isoformat(),
                    "command_count": info.total,
                    "summary": first[:120],
                }
            )
        return {"items": items[:limit], "total": len(items)}

    def close(self) -> None:
        self.engine.close()


class PortalBackend:
    """Every call through the REST API as the token's user (roles, limits, audit apply)."""

    def __init__(self, url: str, token: str, *, transport: Any = None) -> None:
        self.client = Client(url, token, transport=transport)

    def submit(
        self,
        script: str | None,
        commands: list[str] | None,
        workspace: str | None,
        timeout_s: float | None,
        on_failure: str | None,
    ) -> str:
        batch = self.client.submit(
            script,
            commands=commands,
            workspace=workspace,
            timeout_s=timeout_s,
            on_failure=on_failure,
        )
        return batch["id"]

    def poll(self, batch_id: str, wait_s: float) -> tuple[bool, int, int]:
        batch = self.client.batch(batch_id)
        commands = batch.get("commands", [])
        done = sum(1 for c in commands if c.get("status") not in ACTIVE)
        # no sleep here: the caller waits (asleep, holding no thread) between polls
        return batch["status"] not in ACTIVE, done, len(commands)

    def summary(self, batch_id: str, cap: int = OUTPUT_CAP) -> dict[str, Any]:
        batch = self.client.batch(batch_id)
        commands = []
        for c in batch.get("commands", []):
            out = err = ""
            cut = bool(c.get("truncated"))
            if c.get("stdout_bytes", 1) or c.get("stderr_bytes", 1):
                raw = self.client.outputs(batch_id, c["id"], 0, cap)
                out, err = raw.get("stdout", ""), raw.get("stderr", "")
                cut = cut or bool(raw.get("truncated"))
            commands.append(
                {
                    "index": c["index"],
                    "command": c["command"],
                    "class": c["class"],  # type: ignore[typeddict-item]
                    "reasons": c.get("reasons", []),
                    "executor": c.get("executor", "none"),
                    "status": c["status"],
                    "exit_code": c.get("exit_code"),
                    "duration_s": c.get("duration_s"),
                    "reason": c.get("reason"),
                    "stdout": out,
                    "stderr": err,
                    "truncated": cut,
                }
            )
        return {
            "batch_id": batch_id,
            "status": batch["status"],
            "makespan_s": _span(batch.get("started_at"), batch.get("finished_at")),
            "commands": commands,
        }

    def classify(self, script: str) -> dict[str, Any]:
        raw = self.client.classify(script)
        return {"statements": raw.get("statements", []), "edges": raw.get("edges", [])}

    def output(
        self, batch_id: str, index: int, stream: str, offset: int, limit: int
    ) -> dict[str, Any]:
        batch = self.client.batch(batch_id)
        command = next((c for c in batch.get("commands", []) if c["index"] == index), None)
        if command is None:
            raise ApiError("not_found", f"batch {batch_id} has no command {index}", 404)
        if stream not in ("stdout", "stderr"):
            raise ApiError("invalid_input", "`stream` is stdout or stderr", 400)
        raw = self.client.outputs(batch_id, command["id"], offset, limit)
        next_offset = int(raw.get(f"{stream}_next_offset", offset))
        size = int(str(command.get(f"{stream}_bytes", next_offset)))
        return {
            "batch_id": batch_id,
            "index": index,
            "stream": stream,
            "offset": offset,
            "next_offset": next_offset,
            "data": raw.get(stream, ""),
            "more": next_offset < size or batch["status"] in ACTIVE,
        }

    def cancel(self, batch_id: str) -> dict[str, Any]:
        batch = self.client.cancel(batch_id)
        return {"batch_id": batch_id, "status": batch["status"]}

    def list_batches(self, status: str | None, limit: int) -> dict[str, Any]:
        page = self.client.list_batches(status=status, limit=limit)
        items = [
            {
                "batch_id": b["id"],
                "status": b["status"],
                "created_at": b.get("created_at"),
                "command_count": b.get("command_count", 0),
                "summary": b.get("summary", ""),
            }
            for b in page["items"]
        ]
        return {"items": items, "total": page["total"]}

    def close(self) -> None:
        self.client.close()


def _span(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 4)
