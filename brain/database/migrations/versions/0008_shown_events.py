"""What a page showed, kept so that a reload shows it again (the web page's transcript).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shown_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("channel", sa.String(length=255), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("finished", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_shown_events_channel_id", "shown_events", ["channel", "id"])
    op.create_index("ix_shown_events_channel_ref", "shown_events", ["channel", "ref"])


def downgrade() -> None:
    op.drop_index("ix_shown_events_channel_ref", table_name="shown_events")
    op.drop_index("ix_shown_events_channel_id", table_name="shown_events")
    op.drop_table("shown_events")
