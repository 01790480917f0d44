"""Learned command durations, per workspace and command fingerprint (shortest-job-first
survives a restart). Written in groups by the service, never once per command."""

from __future__ import annotations

import builtins
from collections.abc import Iterable

from sqlalchemy import select, update

from sandbox.store.base import Repository, rowcount
from sandbox.store.models import FINGERPRINT_CHARS, Duration
from sandbox.store.records import utcnow


class DurationRepository(Repository):
    def load(self) -> builtins.list[tuple[int, str, float]]:
        """Every stored estimate: (workspace id, fingerprint, seconds)."""
        with self._read() as s:
            rows = s.execute(
                select(Duration.workspace_id, Duration.fingerprint, Duration.estimate_s)
            ).all()
        return [(int(w), str(f), float(e)) for w, f, e in rows]

    def save(self, items: Iterable[tuple[int, str, float]]) -> int:
        """Insert or update many estimates in one transaction; returns how many were
        written (a fingerprint too long for the column is left out)."""
        now = utcnow()
        wanted = [(w, f, e) for w, f, e in items if len(f) <= FINGERPRINT_CHARS]
        if not wanted:
            return 0
        with self._write() as s:
            for workspace_id, fp, estimate in wanted:
                stmt = (
                    update(Duration)
                    .where(Duration.workspace_id == workspace_id, Duration.fingerprint == fp)
                    .values(estimate_s=estimate, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
                if not rowcount(s.execute(stmt)):
                    s.add(
                        Duration(
                            workspace_id=workspace_id,
                            fingerprint=fp,
                            estimate_s=estimate,
                            updated_at=now,
                        )
                    )
        return len(wanted)
