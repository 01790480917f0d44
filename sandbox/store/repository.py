"""The repositories, in one place. Each lives in its own module:

    BatchRepository      batches.py    batches, commands, attempts, crash recovery
    AccountRepository    accounts.py   users, passwords, API tokens
    WorkspaceRepository  workspaces.py named folders under DATA/workspaces
    ScheduleRepository   schedules.py  recurring batches
    AuditLog             audit.py      append-only audit events

Every method is one short transaction of its own; all return frozen records
(``records.py``), never ORM objects, so they are safe to share across threads.
"""

from __future__ import annotations

from sandbox.store.accounts import AccountRepository
from sandbox.store.audit import AuditLog
from sandbox.store.base import Conflict, NotFound, Repository, StoreError
from sandbox.store.batches import BatchRepository, CommandChanges
from sandbox.store.schedules import ScheduleChanges, ScheduleRepository
from sandbox.store.workspaces import WorkspaceRepository

__all__ = [
    "AccountRepository",
    "AuditLog",
    "BatchRepository",
    "CommandChanges",
    "Conflict",
    "NotFound",
    "Repository",
    "ScheduleChanges",
    "ScheduleRepository",
    "StoreError",
    "WorkspaceRepository",
]
