"""Worker nodes of a scale-out cluster, where each workspace lives, each command's node.

Written only by the control plane (sandbox/cluster/control.py); read by the REST API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from sandbox.model import Status
from sandbox.store.base import Repository
from sandbox.store.models import Batch, Command, NodeRow, Workspace
from sandbox.store.records import utcnow


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecord:
    name: str
    status: str  # live | lost
    instance: str | None
    slots: int
    running: int
    free_memory: int
    first_seen: datetime
    last_seen: datetime
    workspaces: tuple[str, ...] = ()


class NodeRepository(Repository):
    def seen(
        self, name: str, *, status: str, instance: str | None, slots: int, running: int, free: int
    ) -> None:
        """Record a heartbeat (or a loss): one row per node, made when first heard of."""
        now = utcnow()
        with self._write() as s:
            row = s.get(NodeRow, name)
            if row is None:
                row = NodeRow(name=name, first_seen=now)
                s.add(row)
            row.status, row.instance = status, instance
            row.slots, row.running, row.free_memory = slots, running, free
            if status == "live" or row.last_seen is None:
                row.last_seen = now

    def list(self) -> list[NodeRecord]:
        with self._read() as s:
            homes: dict[str, list[str]] = {}
            for ws, node in s.execute(
                select(Workspace.name, Workspace.node).where(Workspace.node.is_not(None))
            ):
                homes.setdefault(str(node), []).append(ws)
            return [
                NodeRecord(
                    name=r.name,
                    status=r.status,
                    instance=r.instance,
                    slots=r.slots,
                    running=r.running,
                    free_memory=r.free_memory,
                    first_seen=r.first_seen,
                    last_seen=r.last_seen,
                    workspaces=tuple(sorted(homes.get(r.name, ()))),
                )
                for r in s.scalars(select(NodeRow).order_by(NodeRow.name))
            ]

    def placements(self) -> dict[str, str]:
        """workspace name -> node, for every placed workspace."""
        with self._read() as s:
            rows = s.execute(
                select(Workspace.name, Workspace.node).where(Workspace.node.is_not(None))
            )
            return {name: str(node) for name, node in rows}

    def place(self, workspace: str, node: str) -> str:
        """Put an unplaced workspace on ``node``; the node it is on (someone may have been
        first)."""
        with self._write() as s:
            s.execute(
                update(Workspace)
                .where(Workspace.name == workspace, Workspace.node.is_(None))
                .values(node=node)
            )
            placed = s.scalar(select(Workspace.node).where(Workspace.name == workspace))
            return placed or node

    def mark_batch(self, batch_id: str, node: str) -> None:
        """Every command of the batch runs on the node of its workspace."""
        with self._write() as s:
            s.execute(update(Command).where(Command.batch_id == batch_id).values(node=node))

    def move(self, workspace: str, source: str, target: str) -> None:
        """The workspace lives on ``target`` now; its commands that have not started yet
        will run there (ended ones keep the node they ran on)."""
        waiting = (Status.PENDING, Status.QUEUED, Status.AWAITING_APPROVAL)
        with self._write() as s:
            ws_id = s.scalar(select(Workspace.id).where(Workspace.name == workspace))
            s.execute(update(Workspace).where(Workspace.id == ws_id).values(node=target))
            batches = select(Batch.id).where(Batch.workspace_id == ws_id)
            s.execute(
                update(Command)
                .where(Command.batch_id.in_(batches), Command.status.in_(waiting))
                .values(node=target)
            )
