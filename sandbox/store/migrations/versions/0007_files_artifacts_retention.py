"""Artifacts of batches, and pruning the audit log by age (issue 13, points 5 and 7).

- ``batches.artifact_patterns``: the globs a batch asked to keep (JSON, null: none);
- ``artifacts``: the files copied out when it ended (batch_id, path, size, sha256);
- ``audit_prunes``: each pruning; the audit log's delete trigger now lets through a row
  older than the newest ``before`` there, and nothing else (updates stay refused).

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
REFUSED = "audit_events is append-only"


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("artifact_patterns", JSON, nullable=True))
    op.create_table(
        "artifacts",
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("batch_id", "path", name=op.f("pk_artifacts")),
    )
    op.create_table(
        "audit_prunes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", TIME, nullable=False),
        sa.Column("before", TIME, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "IF TG_OP = 'DELETE' AND OLD.at < (SELECT max(before) FROM audit_prunes) "
            "THEN RETURN OLD; END IF; "
            f"RAISE EXCEPTION '{REFUSED}'; END $$"
        )
    else:
        op.execute("DROP TRIGGER audit_events_no_delete")
        op.execute(
            "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
            "WHEN OLD.at >= COALESCE((SELECT max(before) FROM audit_prunes), '') "
            f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{REFUSED}'; END $$"
        )
    else:
        op.execute("DROP TRIGGER audit_events_no_delete")
        op.execute(
            "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
            f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END"
        )
    op.drop_table("audit_prunes")
    op.drop_table("artifacts")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("artifact_patterns")
