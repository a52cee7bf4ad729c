"""pulls: downloads of GGUF files from the Hugging Face hub

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pulls",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("filename", sa.String(1024), nullable=False),
        sa.Column("revision", sa.String(255)),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False),
        sa.Column("bytes_total", sa.BigInteger()),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("parts", sa.JSON()),
        sa.Column("model_id", sa.String(1024)),
        sa.Column("error", sa.JSON()),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", sa.DateTime(timezone=True), index=True),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("pulls")
