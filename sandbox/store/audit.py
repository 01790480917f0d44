"""The audit log: who did what, when, from where. Append-only.

``AuditLog`` has no update or delete, and the database refuses them too (triggers
made by the initial migration). The one exception is ``prune``: an admin may delete the
rows older than a date; the pruning is itself recorded (``audit_prunes``, which the
trigger reads), and the trigger still refuses any other delete. Actions are short
snake_case verbs in the past tense: login, login_failed, batch_submitted,
batch_cancelled, user_created, token_created, token_revoked, schedule_created, ...
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select

from sandbox.errors import InputError
from sandbox.store.base import Repository, aware, clamp_limit, to_record
from sandbox.store.models import AuditPrune, AuditRow
from sandbox.store.records import AuditEvent, Page, utcnow

ACTION = re.compile(r"[a-z][a-z0-9_.]{0,63}")


class AuditLog(Repository):
    def append(
        self,
        action: str,
        *,
        actor: str,
        user_id: int | None = None,
        address: str | None = None,
        target: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        if not ACTION.fullmatch(action):
            raise InputError(f"invalid audit action {action!r}")
        row = AuditRow(
            at=utcnow(),
            user_id=user_id,
            actor=actor[:100],
            address=address[:64] if address else None,
            action=action,
            target=target[:255] if target else None,
            detail=dict(detail or {}),
        )
        with self._write() as s:
            s.add(row)
            s.flush()
            return _event(row)

    def prune(self, before: datetime, *, actor: str) -> int:
        """Delete the rows older than ``before`` (an aware time, not in the future);
        returns how many went."""
        if aware(before, "before") is None or before > utcnow():
            raise InputError("`before` must be a time in the past")
        with self._write() as s:
            s.add(AuditPrune(at=utcnow(), before=before, actor=actor[:100]))
            s.flush()
            result = s.execute(delete(AuditRow).where(AuditRow.at < before))
            return int(getattr(result, "rowcount", 0) or 0)

    def list(
        self,
        *,
        action: str | None = None,
        user_id: int | None = None,
        actor: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        cursor: str | None = None,
    ) -> Page[AuditEvent]:
        """Newest first; page with ``offset`` or ``cursor`` (the previous ``next_cursor``)."""
        query = select(AuditRow)
        if action is not None:
            query = query.where(AuditRow.action == action)
        if user_id is not None:
            query = query.where(AuditRow.user_id == user_id)
        if actor is not None:
            query = query.where(AuditRow.actor == actor)
        if target is not None:
            query = query.where(AuditRow.target == target)
        if aware(since, "since") is not None:
            query = query.where(AuditRow.at >= since)
        if aware(until, "until") is not None:
            query = query.where(AuditRow.at < until)
        limit = clamp_limit(limit)
        with self._read() as s:
            total = s.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
            page = query.order_by(AuditRow.id.desc()).limit(limit + 1)
            if cursor:
                if not cursor.isdigit():
                    raise InputError(f"invalid cursor {cursor!r}")
                page = page.where(AuditRow.id < int(cursor))
            else:
                page = page.offset(max(0, offset))
            rows = s.scalars(page).all()
            more, rows = len(rows) > limit, rows[:limit]
            items = tuple(_event(r) for r in rows)
        return Page(items, int(total or 0), str(items[-1].id) if more and items else None)


def _event(r: AuditRow) -> AuditEvent:
    return to_record(AuditEvent, r, detail=dict(r.detail))
