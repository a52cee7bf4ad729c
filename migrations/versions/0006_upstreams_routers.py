"""remote OpenAI-compatible upstreams; router aliases (an ordered list of targets)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upstreams",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("base_url", sa.String(2048), nullable=False),
        sa.Column("api_key_encrypted", sa.Text()),
        sa.Column("models", sa.JSON(), nullable=True),
        sa.Column("prefix", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
    )
    with op.batch_alter_table("model_aliases") as batch:
        batch.add_column(sa.Column("targets", sa.JSON(), nullable=True))
        batch.alter_column("model", existing_type=sa.String(1024), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("model_aliases") as batch:
        batch.alter_column("model", existing_type=sa.String(1024), nullable=False)
        batch.drop_column("targets")
    op.drop_table("upstreams")
