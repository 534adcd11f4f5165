"""Memory beyond the context window: a vector per user turn, a rolling summary per channel,
and each turn's platform message ("discord:1234"), so an edit or a deletion there reaches it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(
            sa.Column("source", sa.String(length=255), nullable=False, server_default="")
        )
        batch.create_index("ix_turns_source", ["source"])
    op.create_table(
        "memory_vectors",
        sa.Column("turn_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("channel", sa.String(length=255), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_memory_vectors_channel", "memory_vectors", ["channel", "turn_id"])
    op.create_table(
        "memory_summaries",
        sa.Column("channel", sa.String(length=255), primary_key=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("covered_until", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("memory_summaries")
    op.drop_index("ix_memory_vectors_channel", table_name="memory_vectors")
    op.drop_table("memory_vectors")
    with op.batch_alter_table("turns") as batch:
        batch.drop_index("ix_turns_source")
        batch.drop_column("source")
