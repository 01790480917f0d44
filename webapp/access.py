"""Who may see or change a workspace (minimal: every signed-in user sees every existing
workspace; writing needs the operator role). 404 for a workspace the user may not see,
so names do not leak; each refusal is audited. The settings stream replaces this module
with owners and teams, keeping ``workspace_or_404``'s signature."""

from __future__ import annotations

from sandbox.store import Role, WorkspaceRecord
from sandbox.store.workspaces import WORKSPACE_NAME
from webapp import current_service
from webapp.auth import audit, current_user
from webapp.errors import ApiError


def workspace_or_404(name: str, *, write: bool) -> WorkspaceRecord:
    """The workspace called ``name`` if the current user may see it (and change it, when
    ``write``); ApiError 404 otherwise (403 for a viewer who may see it but not write)."""
    user = current_user()
    found = None
    if isinstance(name, str) and WORKSPACE_NAME.fullmatch(name) and ".." not in name:
        found = current_service().store.workspaces.find(name)
    if found is None:
        audit("workspace_refused", target=str(name)[:100], detail={"why": "not found"})
        raise ApiError(404, "not_found", f"no workspace {str(name)[:64]!r}")
    if write and not user.role.allows(Role.OPERATOR):
        audit("forbidden", target=f"workspace:{name}", detail={"needed": "operator"})
        raise ApiError(403, "forbidden", "changing a workspace needs the operator role")
    return found
