"""Service's approvals: deciding on a command that awaits one, listing those, and a
workspace's approval settings (sandbox/approvals.py checks them)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sandbox.approvals import check_approval_settings
from sandbox.errors import Forbidden, InputError, PolicyError
from sandbox.model import Status
from sandbox.persist import StoreWriter
from sandbox.scheduler import BatchSpec, Scheduler
from sandbox.store import (
    BatchRecord,
    CommandRecord,
    NotFound,
    Role,
    Store,
    UserRecord,
    WorkspaceRecord,
)
from sandbox.store.records import utcnow


class ApprovalOps:
    """Mixin of ``Service`` (sandbox/service.py): the attributes below are its."""

    store: Store
    scheduler: Scheduler
    writer: StoreWriter

    def decide(
        self,
        user: UserRecord | None,
        batch_id: str,
        command_id: str,
        *,
        approve: bool,
        reason: str | None = None,
    ) -> CommandRecord:
        """Approve or reject a command that awaits approval. Operators and admins decide;
        under the workspace's two-person rule, never the batch's submitter (rejecting is
        allowed to them: it is no more than cancelling their own command)."""
        if user is not None and not user.role.allows(Role.OPERATOR):
            raise Forbidden("viewers may not approve or reject commands")
        batch = self.store.batches.get(batch_id)
        command = next((c for c in batch.commands if c.id == command_id), None)
        if command is None:
            raise NotFound(f"batch {batch_id} has no command {command_id}")
        if command.status is not Status.AWAITING_APPROVAL:
            raise PolicyError(
                f"command #{command.index + 1} is {command.status.value}, not awaiting approval"
            )
        ws = self.store.workspaces.get(batch.workspace_id)
        if approve and ws.two_person and user is not None and batch.user_id == user.id:
            raise Forbidden(
                f"workspace {ws.name} has the two-person rule: "
                "someone other than the submitter must approve"
            )
        name = user.name if user is not None else "system"
        try:
            if approve:
                self.scheduler.approve(command_id, name)
            else:
                why = f"rejected by {name}" + (f": {reason}" if reason else "")
                self.scheduler.reject(command_id, why)
        except KeyError:
            raise PolicyError("that command is not waiting in this server") from None
        except InputError as e:
            raise PolicyError(str(e)) from None
        self.store.batches.update_command(
            command_id,
            approval="approved" if approve else "rejected",
            approval_by=name,
            approval_at=utcnow(),
        )
        self.writer.flush(5)
        return self.store.batches.get_command(command_id)

    def pending_approvals(self) -> list[tuple[CommandRecord, BatchRecord, WorkspaceRecord]]:
        """Every command that awaits approval, with its batch and workspace."""
        spaces = {w.id: w for w in self.store.workspaces.list()}
        return [
            (c, b, spaces[b.workspace_id])
            for c, b in self.store.batches.awaiting_approval()
            if b.workspace_id in spaces
        ]

    def set_approval(
        self, user: UserRecord | None, workspace: str, **settings: Any
    ) -> WorkspaceRecord:
        """An admin changes a workspace's approval settings (see approvals.py)."""
        if user is not None and user.role is not Role.ADMIN:
            raise Forbidden("only admins change a workspace's approval settings")
        values = check_approval_settings(settings)
        ws = self.store.workspaces.get_or_create(workspace)  # settings may come first
        return self.store.workspaces.set_approval(ws.id, **values)


def _gate(spec: BatchSpec, gated: set[int], ttl_s: float) -> BatchSpec:
    """The batch with the commands at ``gated`` waiting for a person's approval."""
    commands = tuple(replace(c, approval=True) if c.index in gated else c for c in spec.commands)
    return replace(spec, commands=commands, approval_ttl_s=ttl_s)
