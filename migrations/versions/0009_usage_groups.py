"""usage by JupyterHub group: the caller's groups of each usage record

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_groups",
        sa.Column("usage_id", sa.Integer,
                  sa.ForeignKey("usage_records.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("group_name", sa.String(255), primary_key=True),
    )
    op.create_index("ix_usage_groups_group_name", "usage_groups", ["group_name"])


def downgrade() -> None:
    op.drop_index("ix_usage_groups_group_name", table_name="usage_groups")
    op.drop_table("usage_groups")
