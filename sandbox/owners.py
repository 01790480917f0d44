"""Who may see, run in and change which workspace (README, "Workspaces"). Pure rules over
the store's records; the web layer answers 404 for what they refuse (webapp/access.py),
and scheduled runs check them too (a schedule whose owner lost the workspace pauses)."""

from __future__ import annotations

from sandbox.store import Role, Store, UserRecord, WorkspaceRecord


def may_see(store: Store, user: UserRecord, ws: WorkspaceRecord) -> bool:
    """Admins: all. Others: unowned (shared) workspaces, their own, their teams'."""
    if user.role is Role.ADMIN or not ws.owned or ws.owner_user_id == user.id:
        return True
    return ws.owner_team_id is not None and ws.owner_team_id in store.teams.team_ids_of(user.id)


def may_run(store: Store, user: UserRecord, ws: WorkspaceRecord) -> bool:
    return user.role.allows(Role.OPERATOR) and may_see(store, user, ws)


def may_configure(store: Store, user: UserRecord, ws: WorkspaceRecord) -> bool:
    """Admins; operators in workspaces they own alone or through a team (not shared ones)."""
    if user.role is Role.ADMIN:
        return True
    return user.role.allows(Role.OPERATOR) and ws.owned and may_see(store, user, ws)
