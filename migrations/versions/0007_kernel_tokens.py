"""kernel credentials: a token knows the kernel and notebook it was minted for; usage
records the notebook

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("kernel_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("kernel_server", sa.String(255), nullable=True))
        batch.add_column(sa.Column("notebook", sa.String(1024), nullable=True))
        batch.create_index("ix_api_tokens_kernel_server", ["kernel_server"])
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("notebook", sa.String(1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("notebook")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_index("ix_api_tokens_kernel_server")
        batch.drop_column("notebook")
        batch.drop_column("kernel_server")
        batch.drop_column("kernel_id")
