"""The database under the history and the memory: its URL, its engine, its schema.

The schema is Alembic's (`brain/database/migrations`): every start brings the database to the
newest revision, whatever mombot made it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlmodel import create_engine

log = logging.getLogger(__name__)


def resolve_database_url(url: str, data_dir: Path) -> str:
    """Place relative SQLite paths inside the data folder; leave other URLs alone."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.is_absolute():
            path = data_dir / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(parsed.set(database=str(path)))
    return url


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite in WAL mode, so readers never wait for the writer."""
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: object) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

        return engine
    # pool_pre_ping replaces connections the server dropped (PostgreSQL restarts).
    return create_engine(url, pool_pre_ping=True)


MIGRATIONS = Path(__file__).parent / "migrations"
FIRST_REVISION = "0001"  # the schema that mombot created before it had migrations


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema revision (Alembic), whatever it holds now.

    An empty database gets every revision; one made by an older mombot without migrations
    (a `turns` table but no `alembic_version`) is first stamped with the first revision.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        tables = set(inspect(connection).get_table_names())
        if "turns" in tables and "alembic_version" not in tables:
            log.info("history database predates migrations: stamping revision %s", FIRST_REVISION)
            command.stamp(config, FIRST_REVISION)
        command.upgrade(config, "head")
