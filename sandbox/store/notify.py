"""E-mail notification settings of users and the log of mail attempts
(sandbox/notify_email.py sends them)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from sandbox.store.base import NotFound, Repository, clamp_limit
from sandbox.store.models import EmailDelivery, User
from sandbox.store.records import utcnow


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifySettings:
    user_id: int
    email: str | None
    events: tuple[str, ...]
    disabled: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailDeliveryRecord:
    id: int
    user_id: int
    event: str
    delivery: str
    attempt: int
    error: str | None
    at: datetime


class NotifyRepository(Repository):
    def get(self, user_id: int) -> NotifySettings:
        with self._read() as s:
            row = s.get(User, user_id)
            if row is None:
                raise NotFound(f"no user {user_id}")
            return _settings(row)

    def set(self, user_id: int, *, email: str | None, events: Sequence[str]) -> NotifySettings:
        with self._write() as s:
            row = s.get(User, user_id)
            if row is None:
                raise NotFound(f"no user {user_id}")
            row.email = email
            row.email_events = list(events)
            s.flush()
            return _settings(row)

    def log(
        self, user_id: int, *, event: str, delivery: str, attempt: int, error: str | None
    ) -> None:
        with self._write() as s:
            if s.get(User, user_id) is None:
                return
            s.add(
                EmailDelivery(
                    user_id=user_id,
                    event=event,
                    delivery=delivery,
                    attempt=attempt,
                    error=error[:2000] if error else None,
                    at=utcnow(),
                )
            )

    def deliveries(self, user_id: int, limit: int = 20) -> builtins.list[EmailDeliveryRecord]:
        """Newest first."""
        query = (
            select(EmailDelivery)
            .where(EmailDelivery.user_id == user_id)
            .order_by(EmailDelivery.id.desc())
            .limit(clamp_limit(limit))
        )
        with self._read() as s:
            return [
                EmailDeliveryRecord(
                    id=r.id,
                    user_id=r.user_id,
                    event=r.event,
                    delivery=r.delivery,
                    attempt=r.attempt,
                    error=r.error,
                    at=r.at,
                )
                for r in s.scalars(query)
            ]


def _settings(row: User) -> NotifySettings:
    return NotifySettings(
        user_id=row.id,
        email=row.email,
        events=tuple(row.email_events or ()),
        disabled=row.disabled,
    )
