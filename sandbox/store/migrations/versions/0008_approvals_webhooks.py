"""Approvals, webhooks and templates (issue 16): workspace approval settings, the
``awaiting_approval`` and ``rejected`` statuses, who decided, webhooks and their
delivery log, templates and a batch's template parameters.

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-03

Status columns grow to 24 characters ("awaiting_approval" has 17). Existing
workspaces approve nothing (``none``), as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = (
    "pending",
    "queued",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "skipped",
    "interrupted",
    "refused",
    "oom_killed",
)
STATUSES = (*OLD_STATUSES, "awaiting_approval", "rejected")
APPROVE = ("none", "dangerous", "sequential+dangerous")
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _one_of(values: Sequence[str]) -> str:
    return "status IN ({})".format(", ".join(f"'{v}'" for v in values))


def _statuses(values: Sequence[str], length: int) -> None:
    for table in ("batches", "commands", "attempts"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_status"), type_="check")
            batch.alter_column(
                "status",
                existing_type=sa.String(16 if length == 24 else 24),
                type_=sa.String(length),
                existing_nullable=False,
            )
            batch.create_check_constraint("status", _one_of(values))


def upgrade() -> None:
    _statuses(STATUSES, 24)
    allowed = ", ".join(f"'{v}'" for v in APPROVE)
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("approve", sa.String(24), nullable=False, server_default="none"))
        batch.add_column(
            sa.Column("two_person", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_check_constraint("approve", f"approve IN ({allowed})")
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("approval", sa.String(16), nullable=True))
        batch.add_column(sa.Column("approval_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("approval_at", TIME, nullable=True))
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("params", JSON, nullable=True))
    op.create_table(
        "templates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("script", sa.Text(), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.UniqueConstraint("name", name=op.f("uq_templates_name")),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", JSON, nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
    )
    op.create_index(op.f("ix_webhooks_user_id"), "webhooks", ["user_id"])
    op.create_index(op.f("ix_webhooks_workspace_id"), "webhooks", ["workspace_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("delivery", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("at", TIME, nullable=False),
        sa.ForeignKeyConstraint(["webhook_id"], ["webhooks.id"], ondelete="CASCADE"),
    )
    op.create_index(
        "ix_webhook_deliveries_webhook_id_at", "webhook_deliveries", ["webhook_id", "at"]
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.drop_table("templates")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("params")
    with op.batch_alter_table("commands") as batch:
        batch.drop_column("approval_at")
        batch.drop_column("approval_by")
        batch.drop_column("approval")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_constraint(op.f("ck_workspaces_approve"), type_="check")
        batch.drop_column("two_person")
        batch.drop_column("approve")
    _statuses(OLD_STATUSES, 16)
