"""Retention: finished batches older than ``max_age_days``, or beyond a workspace's
byte budget (stored output + artifacts of its batches), are deleted oldest first, with
their output files and artifacts. A batch that is not final (pending, queued,
running), or still known to the scheduler, is never touched. The audit log keeps its
rows (an admin prunes it: ``AuditLog.prune``). A team storing more than its ``max_bytes``
(``team_bytes``: what its workspaces use, folders included) loses its oldest finished
batches first, until it is within the quota or has none left (its files stay).

    r = Retention(store, max_age_days=30, budget_bytes=10 << 30, live=scheduler_knows,
                  remove_files=remove, clock=utcnow)
    r.run()  # -> {"deleted": n, "bytes": b, "by_team_quota": q, "by_age": a, "by_budget": c}
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sandbox.model import Status
from sandbox.store import BatchRecord, Store
from sandbox.store.records import utcnow

log = logging.getLogger(__name__)
FINAL = [s for s in Status if s.final]


@dataclass
class Retention:
    store: Store
    max_age_days: float = 30.0  # 0: no age limit
    budget_bytes: int = 10 << 30  # per workspace; 0: no budget
    live: Callable[[str], bool] = lambda _id: False  # the scheduler still has it
    remove_files: Callable[[str], None] = lambda _id: None  # output + artifacts of a batch
    clock: Callable[[], datetime] = utcnow
    page: int = 200
    team_bytes: Callable[[int], int] | None = None  # a team's stored bytes, measured now

    def run(self) -> dict[str, int]:
        sizes = self.store.artifacts.stored_bytes()
        done = {"deleted": 0, "bytes": 0, "by_team_quota": 0, "by_age": 0, "by_budget": 0}
        if self.team_bytes is not None:
            for team in self.store.teams.list():
                if team.max_bytes is not None:
                    self._team_quota(team.id, team.max_bytes, self.team_bytes, sizes, done)
        if self.max_age_days > 0:
            cutoff = self.clock() - timedelta(days=self.max_age_days)
            for batch in self._final(created_before=cutoff):
                if self._delete(batch, sizes, done):
                    done["by_age"] += 1
        if self.budget_bytes > 0:
            for ws in self.store.workspaces.list():
                self._budget(ws.id, done)
        if done["deleted"]:
            log.info("retention: deleted %(deleted)d batches, %(bytes)d bytes", done)
        return done

    def _final(self, **filters: object) -> list[BatchRecord]:
        """Final batches matching ``filters``, oldest first."""
        out: list[BatchRecord] = []
        cursor = None
        while True:
            page = self.store.batches.list(
                status=FINAL,
                limit=self.page,
                cursor=cursor,
                **filters,  # type: ignore[arg-type]
            )
            out.extend(page.items)
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        return sorted(out, key=lambda b: (b.created_at, b.id))

    def _team_quota(
        self,
        team_id: int,
        max_bytes: int,
        measure: Callable[[int], int],
        sizes: dict[str, int],
        done: dict[str, int],
    ) -> None:
        used = measure(team_id)
        if used <= max_bytes:
            return
        batches: list[BatchRecord] = []
        for workspace_id in self.store.workspaces.of_team(team_id):
            batches.extend(self._final(workspace_id=workspace_id))
        for batch in sorted(batches, key=lambda b: (b.created_at, b.id)):
            if used <= max_bytes:
                break
            size = sizes.get(batch.id, 0)
            if self._delete(batch, sizes, done):
                used -= size
                done["by_team_quota"] += 1

    def _budget(self, workspace_id: int, done: dict[str, int]) -> None:
        sizes = self.store.artifacts.stored_bytes(workspace_id)
        used = sum(sizes.values())
        if used <= self.budget_bytes:
            return
        for batch in self._final(workspace_id=workspace_id):
            if used <= self.budget_bytes:
                break
            size = sizes.get(batch.id, 0)
            if self._delete(batch, sizes, done):
                used -= size
                done["by_budget"] += 1

    def _delete(self, batch: BatchRecord, sizes: dict[str, int], done: dict[str, int]) -> bool:
        if not batch.status.final or self.live(batch.id):
            return False
        try:
            self.remove_files(batch.id)
            self.store.batches.delete(batch.id)
        except Exception:
            log.exception("retention: cannot delete batch %s", batch.id)
            return False
        done["deleted"] += 1
        done["bytes"] += sizes.get(batch.id, 0)
        return True
