"""Which channels are a user's direct conversations with the bot (`[memory] follow_user`).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "memory_direct_channels",
        sa.Column("user", sa.String(length=255), primary_key=True),
        sa.Column("channel", sa.String(length=255), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("memory_direct_channels")
