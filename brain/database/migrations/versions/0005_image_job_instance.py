"""Image jobs name the bot instance that runs them.

Two bots may share one database; at start each claims only the jobs its own earlier
run left behind, never the other's live ones. Rows from before this revision have an
empty instance and are claimed by whichever bot of their platform starts first.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("image_jobs") as batch:
        batch.add_column(
            sa.Column("instance", sa.String(length=64), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("image_jobs") as batch:
        batch.drop_column("instance")
