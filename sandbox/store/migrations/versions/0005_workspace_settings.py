"""Workspace settings, secrets, teams and allowed images (issue 13, parts 1 and 6).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

``allow_network`` becomes ``network`` (true -> ``egress``, false -> ``none``) and is
dropped; ``image`` stays as it was. Workspaces stored before this revision have no owner:
they stay shared by every user (README, "Workspaces").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("max_commands", sa.Integer(), nullable=True),
        sa.Column("max_bytes", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("name", name=op.f("uq_teams_name")),
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_team_members_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_team_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", "user_id", name=op.f("pk_team_members")),
    )
    op.create_index(op.f("ix_team_members_user_id"), "team_members", ["user_id"])
    op.create_table(
        "workspace_secrets",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workspace_secrets_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "name", name=op.f("pk_workspace_secrets")),
    )
    op.create_table(
        "allowed_images",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("added_by", sa.String(100), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_allowed_images")),
    )
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("network", sa.String(16), nullable=False, server_default="none"))
        batch.add_column(sa.Column("env", JSON, nullable=True))
        batch.add_column(sa.Column("limits", JSON, nullable=True))
        batch.add_column(sa.Column("owner_user_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("owner_team_id", sa.Integer(), nullable=True))
    workspaces = sa.table(
        "workspaces",
        sa.column("allow_network", sa.Boolean()),
        sa.column("network", sa.String()),
        sa.column("env", JSON),
        sa.column("limits", JSON),
    )
    op.execute(workspaces.update().where(workspaces.c.allow_network).values(network="egress"))
    op.execute(workspaces.update().values(env={}, limits={}))
    with op.batch_alter_table("workspaces") as batch:
        batch.alter_column("env", existing_type=JSON, nullable=False)
        batch.alter_column("limits", existing_type=JSON, nullable=False)
        batch.drop_column("allow_network")
        batch.create_check_constraint("network", "network IN ('none', 'egress')")
        batch.create_check_constraint("one_owner", "owner_user_id IS NULL OR owner_team_id IS NULL")
        batch.create_foreign_key(
            op.f("fk_workspaces_owner_user_id_users"),
            "users",
            ["owner_user_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            op.f("fk_workspaces_owner_team_id_teams"),
            "teams",
            ["owner_team_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(op.f("ix_workspaces_owner_user_id"), ["owner_user_id"])
        batch.create_index(op.f("ix_workspaces_owner_team_id"), ["owner_team_id"])


def downgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(
            sa.Column("allow_network", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    workspaces = sa.table(
        "workspaces", sa.column("allow_network", sa.Boolean()), sa.column("network", sa.String())
    )
    op.execute(
        workspaces.update().where(workspaces.c.network == "egress").values(allow_network=True)
    )
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_index(op.f("ix_workspaces_owner_team_id"))
        batch.drop_index(op.f("ix_workspaces_owner_user_id"))
        batch.drop_constraint(op.f("fk_workspaces_owner_team_id_teams"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_workspaces_owner_user_id_users"), type_="foreignkey")
        batch.drop_constraint("one_owner", type_="check")
        batch.drop_constraint("network", type_="check")
        for column in ("owner_team_id", "owner_user_id", "limits", "env", "network"):
            batch.drop_column(column)
    op.drop_table("allowed_images")
    op.drop_table("workspace_secrets")
    op.drop_index(op.f("ix_team_members_user_id"), "team_members")
    op.drop_table("team_members")
    op.drop_table("teams")
