"""Workspaces: named folders under DATA/workspaces that batches run in."""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from sandbox.approvals import ApprovalPolicy
from sandbox.errors import InputError
from sandbox.store.base import NotFound, Repository, rowcount, to_record
from sandbox.store.models import TeamMember, Workspace, WorkspaceSecret
from sandbox.store.records import WorkspaceRecord, utcnow

# Letters, digits, ".", "_", "-"; starting with a letter, digit or "_" (no hidden
# folders, nothing that reads as an option); never "..".
WORKSPACE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
WORKSPACES = "workspaces"
SHARED = "default"  # never owned when it is made: everyone's, as before owners existed


def check_workspace_name(name: str) -> str:
    if not isinstance(name, str) or not WORKSPACE_NAME.fullmatch(name) or ".." in name:
        raise InputError(
            f"invalid workspace name {name!r}: 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter, digit or '_', without '..'"
        )
    return name


class WorkspaceRepository(Repository):
    def __init__(self, sessions: sessionmaker[Session], data_dir: str | os.PathLike[str]) -> None:
        super().__init__(sessions)
        self._data = Path(data_dir).resolve()

    @property
    def root(self) -> Path:
        return self._data / WORKSPACES

    def get_or_create(
        self,
        name: str,
        *,
        allow_network: bool = False,
        image: str | None = None,
        owner_user_id: int | None = None,
    ) -> WorkspaceRecord:
        """The workspace called ``name``, made (folder and row) if missing. The settings
        and the owner apply only when it is made. The folder must be a real directory: a
        symlink or a file planted under that name is refused."""
        self._ensure_dir(check_workspace_name(name))
        found = self.find(name)
        if found is not None:
            return found
        with self._write() as s:
            try:
                with s.begin_nested():
                    row = Workspace(
                        name=name,
                        path=f"{WORKSPACES}/{name}",
                        network="egress" if allow_network else "none",
                        image=image,
                        env={},
                        limits={},
                        owner_user_id=None if name == SHARED else owner_user_id,
                    )
                    s.add(row)
            except IntegrityError:  # made by someone else meanwhile
                row = s.scalars(select(Workspace).where(Workspace.name == name)).one()
            return self._record(row)

    def find(self, name: str) -> WorkspaceRecord | None:
        with self._read() as s:
            row = s.scalar(select(Workspace).where(Workspace.name == name))
            return self._record(row) if row else None

    def get(self, workspace_id: int) -> WorkspaceRecord:
        with self._read() as s:
            row = s.get(Workspace, workspace_id)
            if row is None:
                raise NotFound(f"no workspace {workspace_id}")
            return self._record(row)

    def list(self) -> builtins.list[WorkspaceRecord]:
        with self._read() as s:
            return [self._record(w) for w in s.scalars(select(Workspace).order_by(Workspace.name))]

    def visible_to(self, user_id: int) -> builtins.list[WorkspaceRecord]:
        """Workspaces owned by nobody, by the user, or by one of the user's teams."""
        teams = select(TeamMember.team_id).where(TeamMember.user_id == user_id)
        with self._read() as s:
            rows = s.scalars(
                select(Workspace)
                .where(
                    or_(
                        (Workspace.owner_user_id.is_(None) & Workspace.owner_team_id.is_(None)),
                        Workspace.owner_user_id == user_id,
                        Workspace.owner_team_id.in_(teams),
                    )
                )
                .order_by(Workspace.name)
            )
            return [self._record(w) for w in rows]

    def of_team(self, team_id: int) -> builtins.list[int]:
        with self._read() as s:
            return builtins.list(
                s.scalars(select(Workspace.id).where(Workspace.owner_team_id == team_id))
            )

    def configure(self, workspace_id: int, *, allow_network: bool, image: str | None) -> None:
        self.change(workspace_id, network="egress" if allow_network else "none", image=image)

    def change(
        self,
        workspace_id: int,
        *,
        secrets: Mapping[str, str | None] | None = None,
        **values: Any,
    ) -> WorkspaceRecord:
        """Set columns (``image``, ``network``, ``env``, ``limits``, ``owner_user_id``,
        ``owner_team_id``, ``approve``, ``two_person``) and secrets (name -> sealed value,
        None deletes) in one transaction: all of it or nothing."""
        unknown = set(values) - {
            "image",
            "network",
            "env",
            "limits",
            "owner_user_id",
            "owner_team_id",
            "approve",
            "two_person",
        }
        if unknown:
            raise ValueError(f"not a workspace setting: {sorted(unknown)}")
        with self._write() as s:
            if values:
                result = s.execute(
                    update(Workspace).where(Workspace.id == workspace_id).values(**values)
                )
                if not rowcount(result):
                    raise NotFound(f"no workspace {workspace_id}")
            elif s.get(Workspace, workspace_id) is None:
                raise NotFound(f"no workspace {workspace_id}")
            for name, sealed in (secrets or {}).items():
                s.execute(
                    delete(WorkspaceSecret).where(
                        WorkspaceSecret.workspace_id == workspace_id,
                        WorkspaceSecret.name == name,
                    )
                )
                if sealed is not None:
                    s.add(
                        WorkspaceSecret(
                            workspace_id=workspace_id, name=name, value=sealed, updated_at=utcnow()
                        )
                    )
            row = s.get(Workspace, workspace_id)
            assert row is not None
            s.flush()
            return self._record(row)

    def secret_names(self, workspace_id: int) -> builtins.list[str]:
        with self._read() as s:
            return builtins.list(
                s.scalars(
                    select(WorkspaceSecret.name)
                    .where(WorkspaceSecret.workspace_id == workspace_id)
                    .order_by(WorkspaceSecret.name)
                )
            )

    def sealed_secrets(self, workspace_id: int) -> dict[str, str]:
        """Secret name -> its sealed (encrypted) value; see sandbox/workspace_settings.py."""
        with self._read() as s:
            rows = s.execute(
                select(WorkspaceSecret.name, WorkspaceSecret.value).where(
                    WorkspaceSecret.workspace_id == workspace_id
                )
            )
            return {name: value for name, value in rows}

    def set_approval(
        self,
        workspace_id: int,
        *,
        approve: ApprovalPolicy | str | None = None,
        two_person: bool | None = None,
    ) -> WorkspaceRecord:
        """Change the approval settings (None leaves a setting alone)."""
        values: dict[str, object] = {}
        if approve is not None:
            values["approve"] = ApprovalPolicy(approve)
        if two_person is not None:
            values["two_person"] = bool(two_person)
        if values:
            with self._write() as s:
                result = s.execute(
                    update(Workspace).where(Workspace.id == workspace_id).values(**values)
                )
                if not rowcount(result):
                    raise NotFound(f"no workspace {workspace_id}")
        return self.get(workspace_id)

    def _ensure_dir(self, name: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=root_fd)
            st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
        finally:
            os.close(root_fd)
        if not stat.S_ISDIR(st.st_mode):
            raise InputError(f"workspace {name!r}: {self.root / name} is not a plain directory")
        return self.root / name

    def _record(self, w: Workspace) -> WorkspaceRecord:
        return to_record(
            WorkspaceRecord,
            w,
            path=self._data / w.path,
            env=dict(w.env or {}),
            limits={k: dict(v) for k, v in (w.limits or {}).items()},
        )
