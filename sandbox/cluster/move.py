"""Moving a workspace from one node to another (an admin's ``POST
/api/v1/workspaces/NAME/move``, ``bashfleet workspace move NAME --to NODE``).

    draining   the scheduler starts nothing new in the workspace (its ready commands stay
               queued, "workspace moving from n1 to n2"); the running ones end on n1
    archiving  n1 packs the workspace (links left out, counted); the bytes come to the
               control plane, checked against n1's signed sha256
    restoring  n2 unpacks them into a fresh folder (checked whole first, against the
               sha256 in the signed request), which replaces whatever n2 had there
    done       the placement is switched in the database (and the node of the commands
               that have not started), ``workspace_moved`` is audited, the queued
               commands run on n2, and n1 removes its copy

Any failure before the switch leaves the workspace on n1 with its files, the move
``failed`` with the error, and the queued commands free to run on n1 again. A lost source
cannot give its files: the move needs ``force`` and the workspace starts empty on the
target (audited, ``files_lost``).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sandbox.cluster.worker import NODE_NAME
from sandbox.errors import BashfleetError
from sandbox.store import Store, WorkspaceRecord

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 3600.0


class MoveRefused(BashfleetError):
    """A move that cannot start; ``status``, ``code`` and ``field`` make the HTTP answer."""

    def __init__(self, message: str, *, status: int = 409, code: str = "conflict") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class Move:
    workspace: str
    source: str | None
    target: str
    by: str
    forced: bool = False
    state: str = "draining"  # draining | archiving | restoring | done | failed
    started_at: float = 0.0
    ended_at: float | None = None
    bytes: int = 0
    sha256: str = ""
    links_skipped: int = 0
    files_lost: bool = False
    error: str = ""
    transfer_s: float = 0.0  # archiving to done, without the drain

    def json(self) -> dict[str, Any]:
        d = asdict(self)
        d["seconds"] = round((self.ended_at or time.time()) - self.started_at, 3)
        return d

    @property
    def under_way(self) -> bool:
        return self.state not in ("done", "failed")


class WorkspaceMover:
    def __init__(
        self,
        plane: Any,
        store: Store,
        scheduler: Any,
        scratch: Path,
        *,
        limits: dict[str, int],
        files: Any = None,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
    ) -> None:
        self.plane = plane
        self.files = files  # the service's WorkspaceIO: an upload under way refuses a move
        self.store = store
        self.scheduler = scheduler
        self.scratch = scratch
        self.limits = limits  # max_bytes, max_entries of a packed workspace
        self.drain_timeout_s = drain_timeout_s
        self._moves: dict[str, Move] = {}  # the latest move of each workspace
        self._lock = threading.Lock()

    def moving(self, name: str) -> bool:
        with self._lock:
            move = self._moves.get(name)
            return move is not None and move.under_way

    def status(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            move = self._moves.get(name)
            return move.json() if move is not None else None

    def under_way(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m.json() for m in self._moves.values() if m.under_way]

    def start(self, ws: WorkspaceRecord, target: str, *, force: bool, by: str) -> dict[str, Any]:
        """Check, mark the workspace moving and start the move; MoveRefused if it cannot."""
        self._check_target(target)
        source = self.plane.placement.get(ws.name)
        if source == target:
            raise MoveRefused(f"workspace {ws.name!r} is on node {target} already")
        lost = source is not None and not self.plane.is_live(source)
        if lost and not force:
            raise MoveRefused(
                f"node {source} is lost: the files of {ws.name!r} cannot be brought from it. "
                f'Move with "force": true to start the workspace empty on {target} '
                f"(its files stay on {source})",
                code="source_lost",
            )
        if self.files is not None and self.files.uploading(ws.id):
            raise MoveRefused(f"an upload into {ws.name!r} is under way; move when it is done")
        move = Move(ws.name, source, target, by, forced=lost, started_at=time.time())
        with self._lock:
            before = self._moves.get(ws.name)
            if before is not None and before.under_way:
                raise MoveRefused(
                    f"workspace {ws.name!r} is being moved already ({before.source} to "
                    f"{before.target}, {before.state})",
                    code="moving",
                )
            self._moves[ws.name] = move
        if source is None:  # never placed: nothing to bring
            self.plane.db.place(ws.name, target)
            self.plane.move_placement(ws.name, target, target)
            self._finish(move, "done")
            self._audit(move)
            return move.json()
        self.scheduler.hold(str(ws.path), f"workspace moving from {source} to {target}")
        threading.Thread(
            target=self._run, args=(move, str(ws.path)), name=f"move-{ws.name}", daemon=True
        ).start()
        return move.json()

    def _check_target(self, target: object) -> None:
        if not isinstance(target, str) or not NODE_NAME.fullmatch(target):
            raise MoveRefused(
                "`node`: a node's name (1 to 64 letters, digits, '_' or '-')",
                status=400,
                code="invalid_input",
            )
        known = {n.name for n in self.plane.nodes()}
        if target not in known:
            raise MoveRefused(
                f"`node`: no node {target!r} (known: {', '.join(sorted(known)) or 'none'})",
                status=422,
                code="unknown_node",
            )
        if not self.plane.is_live(target):
            raise MoveRefused(
                f"`node`: node {target} is lost; move to a live node",
                status=422,
                code="node_lost",
            )

    def _run(self, move: Move, ws_path: str) -> None:
        scratch = self.scratch / f"move-{secrets.token_hex(8)}.tar.gz"
        try:
            channel = self.plane.files()
            if move.forced:
                move.files_lost = True
                move.state = "restoring"
                channel.call(move.target, "restore", move.workspace)
            else:
                self._drain(move, ws_path)
                move.state = "archiving"
                began = time.monotonic()
                self.scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
                packed = channel.fetch(
                    move.source, "pack", move.workspace, scratch, **self._pack_limits()
                )
                move.bytes, move.sha256 = packed["bytes"], packed["sha256"]
                move.links_skipped = int(packed.get("links_skipped", 0))
                move.state = "restoring"
                channel.call(
                    move.target,
                    "restore",
                    move.workspace,
                    upload=scratch,
                    limits={
                        "max_bytes": max(move.bytes, 1),
                        "extracted_bytes": self.limits["max_bytes"],
                        "entries": self.limits["max_entries"],
                    },
                )
                move.transfer_s = round(time.monotonic() - began, 3)
            self.plane.move_placement(move.workspace, move.source, move.target)
        except Exception as e:
            log.warning("move of %s failed: %s", move.workspace, e)
            move.error = f"{type(e).__name__}: {e}" if not str(e) else str(e)
            self._finish(move, "failed")
            self._audit(move)
            self.scheduler.unhold(ws_path)
            return
        finally:
            scratch.unlink(missing_ok=True)
        self._finish(move, "done")
        self._audit(move)
        self.scheduler.unhold(ws_path)
        if not move.forced and move.source is not None:  # the old copy: best effort
            with contextlib.suppress(Exception):
                self.plane.files().call(move.source, "drop", move.workspace)

    def _pack_limits(self) -> dict[str, int]:
        return {"max_bytes": self.limits["max_bytes"], "max_entries": self.limits["max_entries"]}

    def _drain(self, move: Move, ws_path: str) -> None:
        deadline = time.monotonic() + self.drain_timeout_s
        while self.scheduler.running_in(ws_path):
            if time.monotonic() > deadline:
                raise MoveRefused(
                    f"commands still ran in {move.workspace!r} after "
                    f"{self.drain_timeout_s:g} s; the move was given up"
                )
            if move.source is not None and not self.plane.is_live(move.source):
                raise MoveRefused(f"node {move.source} was lost while the workspace drained")
            time.sleep(0.1)

    def _finish(self, move: Move, state: str) -> None:
        move.ended_at = time.time()
        move.state = state

    def _audit(self, move: Move) -> None:
        detail = {
            "from": move.source,
            "to": move.target,
            "bytes": move.bytes,
            "sha256": move.sha256,
            "seconds": round((move.ended_at or time.time()) - move.started_at, 3),
            "links_skipped": move.links_skipped,
            "files_lost": move.files_lost,
        }
        if move.state == "failed":
            detail["error"] = move.error[:500]
        action = "workspace_moved" if move.state == "done" else "workspace_move_failed"
        with contextlib.suppress(Exception):
            self.store.audit.append(action, actor=move.by, target=move.workspace, detail=detail)


def move_through_api(
    url: str | None, name: str, node: str, *, force: bool, wait: bool, timeout_s: float = 3600
) -> int:
    """`bashfleet workspace move NAME --to NODE`: asks the portal (a move needs its
    scheduler); 0 once the move is done (or started, without ``wait``)."""
    import json
    import os
    import sys
    import urllib.error
    import urllib.parse
    import urllib.request

    base = (url or os.environ.get("BASHFLEET_URL", "")).rstrip("/")
    token = os.environ.get("BASHFLEET_TOKEN", "").strip()
    if not base.startswith(("http://", "https://")) or not token:
        raise BashfleetError(
            "a move goes through the portal: give --url (or $BASHFLEET_URL) and an admin's "
            "token in $BASHFLEET_TOKEN"
        )
    path = f"{base}/api/v1/workspaces/{urllib.parse.quote(name, safe='')}/move"

    def call(method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read())
                why = f"{err.get('error')}: {err.get('message')}"
            except ValueError:
                why = f"HTTP {e.code}"
            raise BashfleetError(f"the move was refused: {why}") from None

    move = call("POST", {"node": node, "force": force})
    deadline = time.monotonic() + timeout_s
    while wait and move["state"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        move = call("GET")
    print(json.dumps(move, indent=2))
    if move["state"] == "failed":
        print(f"the move failed: {move['error']}", file=sys.stderr)
        return 1
    if move.get("files_lost"):
        print(f"node {move['source']} was lost: the workspace starts empty", file=sys.stderr)
    return 0
