"""Service's learned durations: loaded from the store at start, written back in groups
(sandbox/priority.py learns them)."""

from __future__ import annotations

import logging
import threading

from sandbox.priority import DurationModel
from sandbox.store import Store

log = logging.getLogger(__name__)

DURATIONS_EVERY_S = 5.0  # learned durations go to the store in groups, this often


class DurationOps:
    """Mixin of ``Service`` (sandbox/service.py): the attributes below are its."""

    store: Store
    durations: DurationModel
    _workspace_ids: dict[str, int]  # workspace path -> id (durations' scope)
    _closed: threading.Event

    def load_durations(self) -> int:
        """What earlier runs learned, so shortest-job-first works from the first batch."""
        paths = {w.id: str(w.path) for w in self.store.workspaces.list()}
        self._workspace_ids.update({p: i for i, p in paths.items()})
        items = [(paths[w], f, e) for w, f, e in self.store.durations.load() if w in paths]
        self.durations.remember(items)
        return len(items)

    def save_durations(self) -> int:
        """Write what was learned since the last call, in one transaction."""
        changed = self.durations.take_changed()
        if not changed:
            return 0
        if any(scope not in self._workspace_ids for scope, _f, _e in changed):
            self._workspace_ids.update({str(w.path): w.id for w in self.store.workspaces.list()})
        rows = [
            (self._workspace_ids[scope], fp, estimate)
            for scope, fp, estimate in changed
            if scope in self._workspace_ids
        ]
        try:
            return self.store.durations.save(rows)
        except Exception as e:  # a hint, not a record: a database that went away costs it
            log.warning("cannot store %d learned durations: %s", len(rows), e)
            return 0

    def _save_durations_loop(self) -> None:
        while not self._closed.wait(DURATIONS_EVERY_S):
            self.save_durations()
