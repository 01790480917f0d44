"""Teams (groups of users that own workspaces, with quotas) and the allowed images."""

from __future__ import annotations

import builtins

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from sandbox.store.base import Conflict, NotFound, Repository
from sandbox.store.models import AllowedImage, Team, TeamMember, User
from sandbox.store.records import AllowedImageRecord, TeamRecord, utcnow


class TeamRepository(Repository):
    def list(self) -> builtins.list[TeamRecord]:
        with self._read() as s:
            return [self._record(s, t) for t in s.scalars(select(Team).order_by(Team.name))]

    def find(self, name: str) -> TeamRecord | None:
        with self._read() as s:
            row = s.scalar(select(Team).where(Team.name == name))
            return self._record(s, row) if row else None

    def get(self, team_id: int) -> TeamRecord:
        with self._read() as s:
            row = s.get(Team, team_id)
            if row is None:
                raise NotFound(f"no team {team_id}")
            return self._record(s, row)

    def create(
        self, name: str, *, max_commands: int | None = None, max_bytes: int | None = None
    ) -> TeamRecord:
        with self._write() as s:
            if s.scalar(select(Team.id).where(Team.name == name)) is not None:
                raise Conflict(f"team {name!r} exists already")
            row = Team(
                name=name, max_commands=max_commands, max_bytes=max_bytes, created_at=utcnow()
            )
            s.add(row)
            s.flush()
            return self._record(s, row)

    def set_quotas(self, team_id: int, *, max_commands: int | None, max_bytes: int | None) -> None:
        with self._write() as s:
            row = s.get(Team, team_id)
            if row is None:
                raise NotFound(f"no team {team_id}")
            row.max_commands, row.max_bytes = max_commands, max_bytes

    def delete(self, team_id: int) -> None:
        with self._write() as s:
            if s.execute(delete(Team).where(Team.id == team_id)).rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"no team {team_id}")

    def add_member(self, team_id: int, user_id: int) -> bool:
        """False when the user was a member already."""
        with self._write() as s:
            if s.get(TeamMember, (team_id, user_id)) is not None:
                return False
            s.add(TeamMember(team_id=team_id, user_id=user_id))
            return True

    def remove_member(self, team_id: int, user_id: int) -> bool:
        with self._write() as s:
            result = s.execute(
                delete(TeamMember).where(
                    TeamMember.team_id == team_id, TeamMember.user_id == user_id
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def team_ids_of(self, user_id: int) -> set[int]:
        with self._read() as s:
            return set(s.scalars(select(TeamMember.team_id).where(TeamMember.user_id == user_id)))

    def _record(self, s: Session, t: Team) -> TeamRecord:
        members = s.scalars(
            select(User.name)
            .join(TeamMember, TeamMember.user_id == User.id)
            .where(TeamMember.team_id == t.id)
            .order_by(User.name)
        )
        return TeamRecord(
            id=t.id,
            name=t.name,
            max_commands=t.max_commands,
            max_bytes=t.max_bytes,
            members=tuple(members),
            created_at=t.created_at,
        )


class ImageRepository(Repository):
    """Images an admin allowed by name (``bashfleet image allow``)."""

    def list(self) -> builtins.list[AllowedImageRecord]:
        with self._read() as s:
            rows = s.scalars(select(AllowedImage).order_by(AllowedImage.name))
            return [
                AllowedImageRecord(name=r.name, added_by=r.added_by, added_at=r.added_at)
                for r in rows
            ]

    def contains(self, name: str) -> bool:
        with self._read() as s:
            return bool(s.scalar(select(func.count()).where(AllowedImage.name == name)))

    def add(self, name: str, added_by: str) -> bool:
        """False when it was allowed already."""
        with self._write() as s:
            if s.get(AllowedImage, name) is not None:
                return False
            s.add(AllowedImage(name=name, added_by=added_by, added_at=utcnow()))
            return True
