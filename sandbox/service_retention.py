"""Service's retention: deleting old finished batches and their files, now and then
(sandbox/retention.py decides what goes)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from sandbox.artifacts import ArtifactCollector
from sandbox.retention import Retention
from sandbox.scheduler import Scheduler
from sandbox.store import Store

if TYPE_CHECKING:
    from sandbox.service import ServiceConfig

log = logging.getLogger(__name__)


class RetentionOps:
    """Mixin of ``Service`` (sandbox/service.py): the attributes below are its."""

    config: ServiceConfig
    store: Store
    scheduler: Scheduler
    artifacts: ArtifactCollector
    retention: Retention
    _closed: threading.Event

    def _live(self, batch_id: str) -> bool:
        try:
            return not self.scheduler.batch_status(batch_id).final
        except KeyError:
            return False

    def remove_batch_files(self, batch_id: str) -> None:
        """A batch's output files and artifacts (its rows are the caller's)."""
        self.scheduler.forget(batch_id)
        self.store.output.remove_batch(batch_id)
        self.artifacts.remove(batch_id)

    def run_retention(self) -> dict[str, int]:
        done = self.retention.run()
        if done["deleted"]:
            self.store.audit.append("retention_ran", actor="retention", detail=done)
        return done

    def _retention_loop(self) -> None:
        while not self._closed.wait(self.config.retention_every_s):
            try:
                self.run_retention()
            except Exception:  # a store that went away: next time
                log.exception("retention failed")
