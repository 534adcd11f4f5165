"""Alembic migrations on real SQLite and PostgreSQL: from empty, from the previous revision,
from a database made before migrations existed, and the models never drift from them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from brain.database.engine import MIGRATIONS
from brain.database.tables import is_modelled
from brain.history.store import HistoryStore
from brain.images.jobs import ImageJobs


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[str]:
    """A database with nothing in it (PostgreSQL: a new database, dropped afterwards)."""
    if request.param == "sqlite":
        yield sqlite_url
        return
    server = make_url(request.getfixturevalue("postgres_url"))
    name = f"mombot_migrations_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def run_alembic(url: str, action: str, revision: str) -> None:
    engine = create_engine(url)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)
    engine.dispose()


def state(url: str) -> tuple[set[str], str | None]:
    engine = create_engine(url)
    with engine.connect() as connection:
        names = inspect(connection).get_table_names()
        tables = {name for name in names if is_modelled(name, "table")}
        version = MigrationContext.configure(connection).get_current_revision()
    engine.dispose()
    return tables, version


ALL_TABLES = {
    "alembic_version",
    "turns",
    "image_jobs",
    "memory_vectors",
    "memory_summaries",
    "shown_events",
    "user_personas",
    "memory_direct_channels",
}
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_an_empty_database_gets_every_revision(empty_database: str) -> None:
    store = HistoryStore(empty_database)
    assert state(empty_database) == (ALL_TABLES, HEAD)
    jobs = ImageJobs(store.engine, "local")
    job = await jobs.start("t:c", "u", "a fox")
    await jobs.finish(job)
    assert await jobs.take_lost("t") == []
    store.close()


async def test_upgrade_from_the_previous_revision_keeps_the_history(empty_database: str) -> None:
    run_alembic(empty_database, "upgrade", "0001")
    assert state(empty_database) == ({"alembic_version", "turns"}, "0001")
    engine = create_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO turns (channel, role, author, content, created_at) "
                "VALUES ('t:c', 'user', 'ann', 'kept across the upgrade', CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()

    store = HistoryStore(empty_database)  # what a start of the new version does
    assert state(empty_database)[1] == HEAD
    assert [t.content for t in await store.recent("t:c")] == [
        "kept across the upgrade"
    ]  # kind "text"
    await store.add("t:c", "assistant", "[image: a fox (seed 1)]", kind="image")
    assert [t.content for t in await store.recent("t:c", include_images=True)][0].startswith(
        "[image:"
    )
    assert [t.content for t in await store.recent("t:c")] == ["kept across the upgrade"]
    store.close()

    run_alembic(empty_database, "downgrade", "0001")  # and the step back works too
    assert state(empty_database) == ({"alembic_version", "turns"}, "0001")


async def test_a_database_from_before_migrations_is_stamped_then_upgraded(
    empty_database: str,
) -> None:
    run_alembic(empty_database, "upgrade", "0001")  # the schema create_all made back then...
    engine = create_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))  # ...without any version record
        connection.execute(
            text(
                "INSERT INTO turns (channel, role, author, content, created_at) "
                "VALUES ('t:c', 'user', 'ann', 'from the old days', CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()

    store = HistoryStore(empty_database)
    assert state(empty_database) == (ALL_TABLES, HEAD)
    assert [t.content for t in await store.recent("t:c")] == ["from the old days"]
    store.close()


def test_the_models_match_the_migrations(empty_database: str) -> None:
    HistoryStore(empty_database).close()
    engine = create_engine(empty_database)
    with engine.connect() as connection:
        options = {"include_object": lambda _, name, kind, *__: is_modelled(name, kind)}
        context = MigrationContext.configure(connection, opts=options)
        differences = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert differences == [], "a model changed without a migration: add a revision"
