"""Learned command durations per workspace and fingerprint (issue 16, point 6).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "durations",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(255), nullable=False),
        sa.Column("estimate_s", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("workspace_id", "fingerprint", name=op.f("pk_durations")),
    )


def downgrade() -> None:
    op.drop_table("durations")
