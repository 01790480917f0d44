"""Artifacts: files copied out of a workspace when their batch ended (rows; the bytes
are under DATA/artifacts/<batch_id>/, see sandbox/artifacts.py)."""

from __future__ import annotations

import builtins
from collections.abc import Iterable

from sqlalchemy import delete, func, select

from sandbox.store.base import Repository, to_record
from sandbox.store.models import Artifact, Batch, Command
from sandbox.store.records import ArtifactRecord, utcnow


class ArtifactRepository(Repository):
    def add(self, batch_id: str, items: Iterable[tuple[str, int, str]]) -> int:
        """Record (path, size, sha256) of each copied file; returns how many."""
        now = utcnow()
        rows = [
            Artifact(batch_id=batch_id, path=p, size=size, sha256=digest, created_at=now)
            for p, size, digest in items
        ]
        with self._write() as s:
            s.add_all(rows)
        return len(rows)

    def list(self, batch_id: str) -> builtins.list[ArtifactRecord]:
        with self._read() as s:
            rows = s.scalars(
                select(Artifact).where(Artifact.batch_id == batch_id).order_by(Artifact.path)
            ).all()
            return [to_record(ArtifactRecord, r) for r in rows]

    def get(self, batch_id: str, path: str) -> ArtifactRecord | None:
        with self._read() as s:
            row = s.get(Artifact, (batch_id, path))
            return to_record(ArtifactRecord, row) if row else None

    def remove(self, batch_id: str) -> None:
        with self._write() as s:
            s.execute(delete(Artifact).where(Artifact.batch_id == batch_id))

    def artifact_bytes(self, workspace_id: int) -> int:
        ids = select(Batch.id).where(Batch.workspace_id == workspace_id)
        with self._read() as s:
            total = s.scalar(select(func.sum(Artifact.size)).where(Artifact.batch_id.in_(ids)))
        return int(total or 0)

    def stored_bytes(self, workspace_id: int | None = None) -> dict[str, int]:
        """Bytes kept per batch (output of its commands + its artifacts), for the
        finished and unfinished batches of one workspace (or all)."""
        out_q = select(Command.batch_id, func.sum(Command.stdout_bytes + Command.stderr_bytes))
        art_q = select(Artifact.batch_id, func.sum(Artifact.size))
        if workspace_id is not None:
            ids = select(Batch.id).where(Batch.workspace_id == workspace_id)
            out_q = out_q.where(Command.batch_id.in_(ids))
            art_q = art_q.where(Artifact.batch_id.in_(ids))
        totals: dict[str, int] = {}
        with self._read() as s:
            for q in (out_q.group_by(Command.batch_id), art_q.group_by(Artifact.batch_id)):
                for batch_id, n in s.execute(q).all():
                    totals[batch_id] = totals.get(batch_id, 0) + int(n or 0)
        return totals
