"""Records -> the JSON shapes of DESIGN.md's contracts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sandbox.store import BatchRecord, CommandRecord


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def command_json(c: CommandRecord) -> dict[str, Any]:
    return {
        "id": c.id,
        "index": c.index,
        "command": c.command,
        "class": c.cls.value,
        "reasons": list(c.reasons),
        "executor": c.executor.value,
        "needs": list(c.needs),
        "reads": list(c.reads),
        "writes": list(c.writes),
        "status": c.status.value,
        "exit_code": c.exit_code,
        "signal": c.signal,
        "duration_s": c.duration_s,
        "reason": c.error,
        "truncated": c.truncated,
        "stdout_bytes": c.stdout_bytes,
        "stderr_bytes": c.stderr_bytes,
        "queued_at": _time(c.queued_at),
        "started_at": _time(c.started_at),
        "finished_at": _time(c.finished_at),
        # None: it never needed an approval; else required | approved | rejected | expired
        "approval": c.approval,
        "approval_by": c.approval_by,
        "approval_at": _time(c.approval_at),
        "node": c.node,  # scale-out: the worker node (None in the embedded mode)
    }


def _summary(script: str) -> str:
    """The script's first non-empty line, shortened: enough to recognise a batch in a list."""
    first = next((line.strip() for line in script.splitlines() if line.strip()), "")
    return first if len(first) <= 120 else first[:119] + "…"


def batch_json(b: BatchRecord, *, with_commands: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": b.id,
        "status": b.status.value,
        "source": b.source.value,
        "schedule_id": b.schedule_id,
        "user": b.user_name,
        "workspace": b.workspace_name,
        "priority": b.priority,
        "timeout_s": b.timeout_s,
        "retries": b.retries,
        "on_failure": b.on_failure.value,
        "deadline_s": b.deadline_s,
        "rerun_of": b.rerun_of,
        "params": {k.removeprefix("BF_PARAM_"): v for k, v in (b.params or {}).items()} or None,
        "created_at": _time(b.created_at),
        "started_at": _time(b.started_at),
        "finished_at": _time(b.finished_at),
        "command_count": b.command_count,
        "counts": dict(b.counts),
        "summary": _summary(b.script),
        "artifacts": list(b.artifact_patterns),
    }
    if with_commands:
        out["commands"] = [command_json(c) for c in b.commands]
    return out
