"""Full-text search of user turns for the memory, in each database's own engine, and the
encoder that made each memory vector.

SQLite: an FTS5 table over `turns.content` (external content: the text is stored once, in
`turns`), kept in step by triggers, ranked with `bm25()`. PostgreSQL: a GIN index on
`to_tsvector('english', content)`, ranked with `ts_rank`. Both cover user text turns only,
the turns the memory recalls.

`memory_vectors.encoder` names the sentence encoder of each vector (`Embedder.identity`):
vectors of another encoder (all of them, once, after this migration) are made again in the
background while the bot answers.

Later migrations that rebuild `turns` on SQLite (Alembic's batch mode copies the table)
drop its triggers: such a migration must run `create_sqlite_search()` again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USER_TEXT = "role = 'user' AND kind = 'text'"

SQLITE = [
    "CREATE VIRTUAL TABLE turn_search USING fts5("
    "content, content='turns', content_rowid='id', tokenize='porter unicode61')",
    """CREATE TRIGGER turn_search_insert AFTER INSERT ON turns
    WHEN new.role = 'user' AND new.kind = 'text' BEGIN
        INSERT INTO turn_search(rowid, content) VALUES (new.id, new.content);
    END""",
    """CREATE TRIGGER turn_search_delete AFTER DELETE ON turns
    WHEN old.role = 'user' AND old.kind = 'text' BEGIN
        INSERT INTO turn_search(turn_search, rowid, content) VALUES ('delete', old.id, old.content);
    END""",
    """CREATE TRIGGER turn_search_update AFTER UPDATE OF content, role, kind ON turns BEGIN
        INSERT INTO turn_search(turn_search, rowid, content)
            SELECT 'delete', old.id, old.content WHERE old.role = 'user' AND old.kind = 'text';
        INSERT INTO turn_search(rowid, content)
            SELECT new.id, new.content WHERE new.role = 'user' AND new.kind = 'text';
    END""",
    f"INSERT INTO turn_search(rowid, content) SELECT id, content FROM turns WHERE {USER_TEXT}",
]
POSTGRESQL = [
    "CREATE INDEX ix_turns_search ON turns "
    f"USING gin (to_tsvector('english', content)) WHERE {USER_TEXT}",
]


def create_sqlite_search() -> None:
    for statement in SQLITE:
        op.execute(statement)


def upgrade() -> None:
    with op.batch_alter_table("memory_vectors") as table:
        table.add_column(
            sa.Column("encoder", sa.String(length=255), nullable=False, server_default="")
        )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        create_sqlite_search()
    elif dialect == "postgresql":
        for statement in POSTGRESQL:
            op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("memory_vectors") as table:
        table.drop_column("encoder")
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS turn_search_{trigger}")
        op.execute("DROP TABLE IF EXISTS turn_search")
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_turns_search")
