"""Batch options of the second round: on_failure, deadline_s, and rerun_of (issue 16).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Batches stored before this revision ran with what is now the default policy
(``skip_dependents``) and no deadline.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POLICIES = ("skip_dependents", "continue", "halt")


def upgrade() -> None:
    allowed = ", ".join(f"'{v}'" for v in POLICIES)
    with op.batch_alter_table("batches") as batch:
        batch.add_column(
            sa.Column("on_failure", sa.String(16), nullable=False, server_default="skip_dependents")
        )
        batch.add_column(sa.Column("deadline_s", sa.Double(), nullable=True))
        batch.add_column(sa.Column("rerun_of", sa.String(32), nullable=True))
        batch.create_check_constraint("on_failure", f"on_failure IN ({allowed})")
        batch.create_foreign_key(
            op.f("fk_batches_rerun_of_batches"),
            "batches",
            ["rerun_of"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_constraint(op.f("fk_batches_rerun_of_batches"), type_="foreignkey")
        batch.drop_constraint("on_failure", type_="check")
        batch.drop_column("rerun_of")
        batch.drop_column("deadline_s")
        batch.drop_column("on_failure")
