"""E-mail notifications and schedules from templates (issue 16): a user's address and
the events they want mailed, the log of every attempt to mail them, and a schedule's
template name and parameter values (``script`` is empty for such a schedule).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email", sa.String(254), nullable=True))
        batch.add_column(sa.Column("email_events", JSON, nullable=True))
    op.create_table(
        "email_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("delivery", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("at", TIME, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_email_deliveries_user_id_at", "email_deliveries", ["user_id", "at"])
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("template", sa.String(100), nullable=True))
        batch.add_column(sa.Column("params", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("params")
        batch.drop_column("template")
    op.drop_table("email_deliveries")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email_events")
        batch.drop_column("email")
