"""Turns get a kind: "text" (the conversation) or "image" (a generated image and its prompt),
so image entries stay out of the text models' context.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "turns", sa.Column("kind", sa.String(length=16), nullable=False, server_default="text")
    )


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("kind")
