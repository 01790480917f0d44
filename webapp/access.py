"""Who may see and use which workspace, and through it which batches.

The rule: admins see and use every workspace. Anyone else sees a workspace they own,
one owned by a team they are a member of, and one with no owner at all (shared by
everyone: every workspace made before owners existed, and ``default`` unless an admin
gives it an owner). Operators run batches and schedules only in workspaces they see;
viewers only read. Settings change by admins, and by operators in workspaces they own
themselves or through a team (an unowned, shared workspace: admins only).

A workspace or batch the user may not see answers 404, exactly like one that does not
exist, so that names do not leak; every refusal is audited (``workspace_refused``,
``batch_refused``).
The rules themselves are in sandbox/owners.py.
"""

from __future__ import annotations

from sandbox.owners import may_configure, may_run, may_see
from sandbox.store import BatchRecord, NotFound, Role, Store, UserRecord, WorkspaceRecord
from webapp import current_service
from webapp.auth import audit, current_user
from webapp.errors import ApiError


def visible_ids(store: Store, user: UserRecord) -> list[int] | None:
    """Ids of the workspaces ``user`` sees; None: all of them (an admin)."""
    if user.role is Role.ADMIN:
        return None
    return [w.id for w in store.workspaces.visible_to(user.id)]


def visible(store: Store, user: UserRecord) -> list[WorkspaceRecord]:
    if user.role is Role.ADMIN:
        return store.workspaces.list()
    return store.workspaces.visible_to(user.id)


def may_see_batch(store: Store, user: UserRecord, batch: BatchRecord) -> bool:
    if user.role is Role.ADMIN:
        return True
    return may_see(store, user, store.workspaces.get(batch.workspace_id))


def workspace_or_404(name: str, *, write: bool) -> WorkspaceRecord:
    """The workspace ``name`` if the current user may see it (``write``: also run in it);
    otherwise 404, audited."""
    store = current_service().store
    user = current_user()
    ws = store.workspaces.find(name) if isinstance(name, str) else None
    allowed = ws is not None and (may_run(store, user, ws) if write else may_see(store, user, ws))
    if ws is None or not allowed:
        if ws is not None:
            audit("workspace_refused", target=ws.name, detail={"write": write})
        raise ApiError(404, "not_found", f"no workspace {str(name)[:64]!r}")
    return ws


def batch_or_404(batch_id: str, *, write: bool = False) -> BatchRecord:
    """The batch if its workspace is one the current user may see (``write``: run in);
    otherwise 404 as for a batch that does not exist, audited."""
    store = current_service().store
    user = current_user()
    batch = store.batches.get(batch_id)  # NotFound: 404
    if user.role is Role.ADMIN:
        return batch
    ws = store.workspaces.get(batch.workspace_id)
    if not (may_run(store, user, ws) if write else may_see(store, user, ws)):
        audit("batch_refused", target=batch_id, detail={"write": write})
        raise NotFound(f"no batch {batch_id!r}")
    return batch


def submission_workspace(name: str) -> None:
    """Before a submission: an existing workspace must be one the user may run in (404
    otherwise); a new name is fine (the submitter will own it)."""
    if current_service().store.workspaces.find(name) is not None:
        workspace_or_404(name, write=True)


__all__ = [
    "batch_or_404",
    "may_configure",
    "may_run",
    "may_see",
    "may_see_batch",
    "submission_workspace",
    "visible",
    "visible_ids",
    "workspace_or_404",
]
