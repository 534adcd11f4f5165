"""Alembic's entry point. mombot runs it in-process (brain.database.engine.migrate) with an open
connection; developers may run the alembic CLI with `-x url=DATABASE_URL` instead:

    alembic -c brain/database/migrations/alembic.ini -x url=sqlite:///data/mombot.db \
        revision --autogenerate -m "..."
"""

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlmodel import SQLModel

from brain.database.tables import is_modelled  # (and registers the tables on the metadata)

config = context.config


def run(connection: Connection) -> None:
    # Batch mode lets ALTER TABLE work on SQLite, which can only add columns in place.
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=True,
        include_object=lambda _, name, kind, *__: is_modelled(name, kind),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("pass the database with -x url=DATABASE_URL")
    with create_engine(url).begin() as cli_connection:
        run(cli_connection)
