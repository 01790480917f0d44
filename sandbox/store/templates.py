"""Templates: named scripts with parameters (see sandbox/templates.py)."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from sandbox.store.base import Conflict, NotFound, Repository, rowcount
from sandbox.store.models import Template
from sandbox.store.records import utcnow


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateRecord:
    id: int
    name: str
    user_id: int | None
    script: str
    params: tuple[dict[str, Any], ...]
    created_at: datetime
    updated_at: datetime


class TemplateRepository(Repository):
    def create(
        self, *, name: str, script: str, params: list[dict[str, Any]], user_id: int | None
    ) -> TemplateRecord:
        now = utcnow()
        try:
            with self._write() as s:
                row = Template(
                    name=name,
                    script=script,
                    params=params,
                    user_id=user_id,
                    created_at=now,
                    updated_at=now,
                )
                s.add(row)
                s.flush()
                return _record(row)
        except IntegrityError:
            raise Conflict(f"a template named {name!r} exists already") from None

    def get(self, template_id: int) -> TemplateRecord:
        with self._read() as s:
            row = s.get(Template, template_id)
            if row is None:
                raise NotFound(f"no template {template_id}")
            return _record(row)

    def find(self, name: str) -> TemplateRecord | None:
        with self._read() as s:
            row = s.scalar(select(Template).where(Template.name == name))
            return _record(row) if row else None

    def list(self) -> builtins.list[TemplateRecord]:
        with self._read() as s:
            return [_record(r) for r in s.scalars(select(Template).order_by(Template.name))]

    def update(self, template_id: int, **values: Any) -> TemplateRecord:
        if values:
            values["updated_at"] = utcnow()
            try:
                with self._write() as s:
                    stmt = update(Template).where(Template.id == template_id).values(**values)
                    if not rowcount(s.execute(stmt)):
                        raise NotFound(f"no template {template_id}")
            except IntegrityError:
                raise Conflict(f"a template named {values.get('name')!r} exists already") from None
        return self.get(template_id)

    def delete(self, template_id: int) -> None:
        with self._write() as s:
            if not rowcount(s.execute(delete(Template).where(Template.id == template_id))):
                raise NotFound(f"no template {template_id}")


def _record(r: Template) -> TemplateRecord:
    return TemplateRecord(
        id=r.id,
        name=r.name,
        user_id=r.user_id,
        script=r.script,
        params=tuple(r.params or ()),
        created_at=r.created_at,
        updated_at=r.updated_at,
    )
