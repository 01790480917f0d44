"""`bashfleet submit`: a batch to a portal, with live tagged output like `bashfleet run`
(over the portal's Socket.IO; polling the REST API where that cannot be had)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import IO, Any

from bashfleet.client import ACTIVE, ApiError, Batch, Client, Command

OUTPUT_LIMIT = 10 << 20  # per stream in a --json summary, as `bashfleet run` keeps


def submit(args: argparse.Namespace, text: str, token: str) -> int:
    with Client(args.url, token) as client:
        batch = client.submit(
            text,
            workspace=args.workspace,
            timeout_s=args.timeout,
            on_failure=args.on_failure,
        )
        if not args.wait:
            if args.json:
                print(json.dumps(batch))
            else:
                print(batch["id"])
            return 0
        started = time.monotonic()
        live = sys.stderr.buffer if args.json else sys.stdout.buffer
        try:
            _follow(client, batch["id"], live, sys.stderr)
            final = client.wait(batch["id"])
        except KeyboardInterrupt:
            sys.stderr.write(f"\ninterrupted: cancelling batch {batch['id']}\n")
            client.cancel(batch["id"])
            raise
        makespan = time.monotonic() - started
        commands = final.get("commands", [])
        if args.json:
            summary = {
                "batch_id": final["id"],
                "status": final["status"],
                "commands": [_summary(client, final["id"], c) for c in commands],
                "makespan_s": round(makespan, 4),
            }
            sys.stdout.write(json.dumps(summary) + "\n")
        counts: dict[str, int] = {}
        for c in commands:
            counts[c["status"]] = counts.get(c["status"], 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        sys.stderr.write(
            f"bashfleet: batch {final['id']}: {len(commands)} commands in {makespan:.2f}s: "
            f"{parts}\n"
        )
        return 0 if commands and all(c["status"] == "succeeded" for c in commands) else 1


def _follow(client: Client, batch_id: str, out: IO[bytes], err: IO[str]) -> None:
    """Live output over Socket.IO; where no live stream can be had, polling (each
    command's output then shows when it ends)."""
    live = _LiveTagged(out, err)
    try:
        for name, payload in client.stream(batch_id):
            live(name, payload)
    except ApiError as e:
        if e.code != "unreachable":
            raise
        err.write(f"bashfleet: no live stream ({e.message}); polling\n")
        client.wait(batch_id, on_progress=_Tagged(client, batch_id, out, err, live.seen))
    finally:
        live.flush()


class _LiveTagged:
    """Lines tagged `[N] line` (`[N!]` for stderr) as they arrive, like `bashfleet run`."""

    def __init__(self, out: IO[bytes], err: IO[str]) -> None:
        self.out = out
        self.err = err
        self.partial: dict[tuple[int, str], bytes] = {}
        self.seen: set[str] = set()  # commands whose output started here

    def __call__(self, name: str, p: dict[str, Any]) -> None:
        if name == "command_output":
            self.seen.add(p["command_id"])
            key = (p["index"], p["stream"])
            lines = (self.partial.pop(key, b"") + p["data"].encode()).split(b"\n")
            tail = lines.pop()
            if tail:
                self.partial[key] = tail
            tag = _tag(*key)
            self.out.write(b"".join(tag + line + b"\n" for line in lines))
            self.out.flush()
        elif name == "command_status" and p.get("final") and p["status"] != "succeeded":
            self.flush()
            self.err.write(_ended(p["index"] + 1, p))
            self.err.flush()

    def flush(self) -> None:
        for key, tail in sorted(self.partial.items()):
            self.out.write(_tag(*key) + tail + b"\n")
        self.partial.clear()
        self.out.flush()


def _tag(index: int, stream: str) -> bytes:
    return f"[{index + 1}] ".encode() if stream == "stdout" else f"[{index + 1}!] ".encode()


def _ended(n: int, c: Any) -> str:
    code = f" (exit {c['exit_code']})" if c.get("exit_code") not in (None, 0) else ""
    why = f": {c['reason']}" if c.get("reason") else ""
    return f"[{n}] {c['status']}{code}{why}\n"


class _Tagged:
    """Prints each command's output, tagged `[N] line` (`[N!]` for stderr), once it ends."""

    def __init__(
        self,
        client: Client,
        batch_id: str,
        out: IO[bytes],
        err: IO[str],
        printed: set[str] | None = None,
    ) -> None:
        self.client = client
        self.batch_id = batch_id
        self.out = out
        self.err = err
        self.printed = set(printed or ())

    def __call__(self, batch: Batch) -> None:
        for c in batch.get("commands", []):
            if c["status"] in ACTIVE or c["id"] in self.printed:
                continue
            self.printed.add(c["id"])
            n = c["index"] + 1
            for stream, tag in (("stdout", f"[{n}] "), ("stderr", f"[{n}!] ")):
                if not c.get(f"{stream}_bytes", 1):
                    continue
                data = _read_all(self.client, self.batch_id, c["id"], stream)
                lines = data.splitlines()
                self.out.write(b"".join(tag.encode() + line + b"\n" for line in lines))
            self.out.flush()
            if c["status"] != "succeeded":
                self.err.write(_ended(n, c))
                self.err.flush()


def _read_all(client: Client, batch_id: str, command_id: str, stream: str) -> bytes:
    parts: list[bytes] = []
    offset = size = 0
    while size < OUTPUT_LIMIT:
        chunk = client.output(batch_id, command_id, stream, offset)  # type: ignore[arg-type]
        if chunk["next_offset"] <= offset:
            break
        data = chunk["data"].encode()
        parts.append(data)
        size += len(data)
        offset = chunk["next_offset"]
    return b"".join(parts)


def _summary(client: Client, batch_id: str, c: Command) -> dict[str, Any]:
    def text(stream: str) -> str:
        if not c.get(f"{stream}_bytes", 1):
            return ""
        return _read_all(client, batch_id, c["id"], stream).decode("utf-8", "replace")

    return {
        "index": c["index"],
        "command": c["command"],
        "class": c["class"],  # type: ignore[typeddict-item]
        "executor": c.get("executor"),
        "status": c["status"],
        "exit_code": c.get("exit_code"),
        "duration_s": c.get("duration_s"),
        "stdout": text("stdout"),
        "stderr": text("stderr"),
        "reason": c.get("reason"),
    }


__all__ = ["ApiError", "submit"]
