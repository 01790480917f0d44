"""Webhooks and their delivery log (see sandbox/webhooks.py for what they receive)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select, update

from sandbox.store.base import NotFound, Repository, clamp_limit, rowcount
from sandbox.store.models import Webhook, WebhookDelivery
from sandbox.store.records import utcnow


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookRecord:
    id: int
    user_id: int
    workspace_id: int | None  # None: the user's own batches, in every workspace
    url: str
    events: tuple[str, ...]
    secret: str
    active: bool
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRecord:
    id: int
    webhook_id: int
    event: str
    delivery: str
    attempt: int
    status_code: int | None
    error: str | None
    at: datetime


class WebhookRepository(Repository):
    def create(
        self,
        *,
        user_id: int,
        url: str,
        events: Sequence[str],
        secret: str,
        workspace_id: int | None = None,
        active: bool = True,
    ) -> WebhookRecord:
        with self._write() as s:
            row = Webhook(
                user_id=user_id,
                workspace_id=workspace_id,
                url=url,
                events=list(events),
                secret=secret,
                active=active,
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return _record(row)

    def get(self, webhook_id: int) -> WebhookRecord:
        with self._read() as s:
            row = s.get(Webhook, webhook_id)
            if row is None:
                raise NotFound(f"no webhook {webhook_id}")
            return _record(row)

    def list(self, user_id: int | None = None) -> builtins.list[WebhookRecord]:
        query = select(Webhook).order_by(Webhook.id)
        if user_id is not None:
            query = query.where(Webhook.user_id == user_id)
        with self._read() as s:
            return [_record(r) for r in s.scalars(query)]

    def matching(self, user_id: int | None, workspace_id: int) -> builtins.list[WebhookRecord]:
        """Active webhooks told about a batch: its user's own, and its workspace's."""
        mine = Webhook.workspace_id.is_(None) & (Webhook.user_id == user_id)
        query = select(Webhook).where(
            Webhook.active.is_(True), or_(Webhook.workspace_id == workspace_id, mine)
        )
        with self._read() as s:
            return [_record(r) for r in s.scalars(query.order_by(Webhook.id))]

    def update(self, webhook_id: int, **values: object) -> WebhookRecord:
        if "events" in values:
            values["events"] = builtins.list(values["events"])  # type: ignore[call-overload]
        if values:
            with self._write() as s:
                result = s.execute(update(Webhook).where(Webhook.id == webhook_id).values(**values))
                if not rowcount(result):
                    raise NotFound(f"no webhook {webhook_id}")
        return self.get(webhook_id)

    def delete(self, webhook_id: int) -> None:
        with self._write() as s:
            if not rowcount(s.execute(delete(Webhook).where(Webhook.id == webhook_id))):
                raise NotFound(f"no webhook {webhook_id}")

    def log_delivery(
        self,
        webhook_id: int,
        *,
        event: str,
        delivery: str,
        attempt: int,
        status_code: int | None,
        error: str | None,
    ) -> None:
        with self._write() as s:
            if s.get(Webhook, webhook_id) is None:
                return  # deleted meanwhile: nothing to log against
            s.add(
                WebhookDelivery(
                    webhook_id=webhook_id,
                    event=event,
                    delivery=delivery,
                    attempt=attempt,
                    status_code=status_code,
                    error=error[:2000] if error else None,
                    at=utcnow(),
                )
            )

    def deliveries(self, webhook_id: int, limit: int = 100) -> builtins.list[DeliveryRecord]:
        """Newest first."""
        query = (
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == webhook_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(clamp_limit(limit))
        )
        with self._read() as s:
            return [
                DeliveryRecord(
                    id=r.id,
                    webhook_id=r.webhook_id,
                    event=r.event,
                    delivery=r.delivery,
                    attempt=r.attempt,
                    status_code=r.status_code,
                    error=r.error,
                    at=r.at,
                )
                for r in s.scalars(query)
            ]


def _record(r: Webhook) -> WebhookRecord:
    return WebhookRecord(
        id=r.id,
        user_id=r.user_id,
        workspace_id=r.workspace_id,
        url=r.url,
        events=tuple(r.events or ()),
        secret=r.secret,
        active=r.active,
        created_at=r.created_at,
    )
