"""Per-channel conversation history in SQLModel (SQLite by default, PostgreSQL by URL).

The database calls are synchronous SQLAlchemy; each runs in a worker thread so
the event loop never waits on disk or network.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from alembic import command
from alembic.config import Config
from sqlalchemy import Index, LargeBinary, Select, Text, bindparam, event, func, inspect, update
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Field, Session, SQLModel, col, create_engine, delete, select

log = logging.getLogger(__name__)


TEXT, IMAGE = "text", "image"
# PNGs kept per channel (about 0.4 MB each at 512x512); older entries keep their prompt
KEPT_IMAGES = 20


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TurnRow(SQLModel, table=True):
    """One stored message of a channel's conversation."""

    __tablename__ = "turns"
    __table_args__ = (Index("ix_turns_channel_id", "channel", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=255)
    role: str = Field(max_length=16)  # "user" or "assistant"
    author: str = Field(default="", max_length=255)
    content: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=_utcnow)
    # "text": the conversation; "image": a generated image's prompt, kept out of text prompts
    kind: str = Field(default=TEXT, max_length=16, sa_column_kwargs={"server_default": TEXT})
    # The PNG of an image entry, for /look; only the newest KEPT_IMAGES per channel keep it.
    image: bytes | None = Field(default=None, sa_type=LargeBinary)


def _recent_query(*, before: bool, images: bool) -> Select[Any]:
    """The hot read path, built once with bound parameters (SQLAlchemy Core, no ORM objects).

    One statement per combination rather than an expanding IN, which SQLAlchemy renders
    again at every execution.
    """
    table = TurnRow.__table__.c  # type: ignore[attr-defined]
    query = sa_select(table.id, table.role, table.author, table.content)
    query = query.where(table.channel == bindparam("channel"))
    if not images:
        query = query.where(table.kind == TEXT)
    if before:
        query = query.where(table.id < bindparam("before_id"))
    return query.order_by(table.id.desc()).limit(bindparam("limit"))


# (before an id?, with image entries?) → statement
_RECENT = {
    (before, images): _recent_query(before=before, images=images)
    for before in (False, True)
    for images in (False, True)
}
_INSERT = sa_insert(TurnRow)  # prebuilt: `insert().values(row)` per call cost three times as much


class ImageJob(SQLModel, table=True):
    """An image request in progress; rows left at start belong to a process that died."""

    __tablename__ = "image_jobs"

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=255)
    user_id: str = Field(max_length=255)
    prompt: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=_utcnow)
    # The bot instance running it: two bots on one database never claim each other's jobs.
    instance: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})


@dataclass(frozen=True)
class StoredImage:
    """A generated image as stored with its history entry."""

    turn_id: int
    description: str  # "[image: PROMPT (seed N)]"
    png: bytes


@dataclass(frozen=True)
class LostImageJob:
    channel: str
    user_id: str
    prompt: str


class StoredTurn(NamedTuple):
    """A turn read back from the store, detached from any database session.

    A named tuple: a prompt may read hundreds of turns, and tuples build several times
    faster than frozen dataclasses (bench/bench_load.py).
    """

    id: int
    role: str
    author: str
    content: str


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


def _make_engine(url: str) -> Engine:
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
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


class HistoryStore:
    """Stores and reads turns per channel key ("platform:channel").

    `instance` names this bot among those sharing the database (see `ImageJob`). Build it
    with `await HistoryStore.open(...)` from async code: the constructor connects and runs
    the migrations, which block.
    """

    def __init__(self, url: str, *, instance: str = "local") -> None:
        self.url = url
        self.instance = instance
        self._engine = _make_engine(url)
        migrate(self._engine)
        log.info("history store ready (%s)", self._engine.url.get_backend_name())

    @classmethod
    async def open(cls, url: str, *, instance: str = "local") -> HistoryStore:
        """Connect and migrate in a worker thread, off the event loop."""
        return await asyncio.to_thread(lambda: cls(url, instance=instance))

    def close(self) -> None:
        self._engine.dispose()

    async def add(
        self,
        channel: str,
        role: str,
        content: str,
        author: str = "",
        kind: str = TEXT,
        image: bytes | None = None,
    ) -> int:
        """Append a turn and return its id; `image` is an image entry's PNG."""
        return await asyncio.to_thread(self._add, channel, role, content, author, kind, image)

    async def add_and_recent(
        self,
        channel: str,
        role: str,
        content: str,
        author: str,
        limit: int,
    ) -> tuple[int, list[StoredTurn]]:
        """Append a text turn and read the `limit` text turns before it, in one database trip.

        A message's answer needs both; one trip instead of two saved about a millisecond
        per message (bench/bench_load.py).
        """
        return await asyncio.to_thread(self._add_and_recent, channel, role, content, author, limit)

    async def latest_image(self, channel: str) -> StoredImage | None:
        """The newest image entry of the channel that still has its PNG."""
        return await asyncio.to_thread(self._latest_image, channel)

    async def recent(
        self,
        channel: str,
        *,
        before_id: int | None = None,
        limit: int = 64,
        include_images: bool = False,
    ) -> list[StoredTurn]:
        """Up to `limit` turns older than `before_id`, newest first; image entries on request."""
        return await asyncio.to_thread(self._recent, channel, before_id, limit, include_images)

    async def update(self, turn_id: int, content: str) -> None:
        """Replace a stored turn's text (e.g. a user turn once its image is described)."""
        await asyncio.to_thread(self._update, turn_id, content)

    async def clear(self, channel: str) -> int:
        """Forget a channel's conversation; returns how many turns were removed."""
        return await asyncio.to_thread(self._clear, channel)

    async def count(self, channel: str) -> int:
        return await asyncio.to_thread(self._count, channel)

    async def ping(self) -> None:
        """Raise if the database does not answer (for the health check)."""
        await asyncio.to_thread(self._ping)

    async def start_image_job(self, channel: str, user_id: str, prompt: str) -> int:
        """Note an image job before it is queued, so a crash cannot lose it silently."""
        return await asyncio.to_thread(self._start_image_job, channel, user_id, prompt)

    async def finish_image_job(self, job_id: int) -> None:
        """Forget a job that ended (delivered, failed or cancelled: its user was told)."""
        await asyncio.to_thread(self._finish_image_job, job_id)

    async def take_lost_image_jobs(self, platform: str) -> list[LostImageJob]:
        """Remove and return the jobs this instance's dead process left on one platform."""
        return await asyncio.to_thread(self._take_lost_image_jobs, platform)

    # The two hot paths use SQLAlchemy Core: no ORM objects to build and no re-read of the
    # inserted row, which halved their time per message (bench/bench_load.py).
    def _add(
        self, channel: str, role: str, content: str, author: str, kind: str, image: bytes | None
    ) -> int:
        row = {
            "channel": channel,
            "role": role,
            "content": content,
            "author": author,
            "created_at": _utcnow(),
            "kind": kind,
            "image": image,
        }
        with self._engine.begin() as connection:
            turn_id = int(connection.execute(_INSERT, row).inserted_primary_key[0])
            if image is not None:
                self._forget_old_images(connection, channel)
            return turn_id

    def _add_and_recent(
        self,
        channel: str,
        role: str,
        content: str,
        author: str,
        limit: int,
    ) -> tuple[int, list[StoredTurn]]:
        turn_id = self._add(channel, role, content, author, TEXT, None)
        return turn_id, self._recent(channel, turn_id, limit, False)

    @staticmethod
    def _forget_old_images(connection: Any, channel: str) -> None:
        """Drop the PNGs of all but the newest KEPT_IMAGES image entries (their text stays)."""
        table = TurnRow.__table__.c  # type: ignore[attr-defined]
        with_image = (table.channel == channel) & table.image.is_not(None)
        kept = sa_select(table.id).where(with_image).order_by(table.id.desc()).limit(KEPT_IMAGES)
        connection.execute(
            update(TurnRow)
            .where(with_image, table.id.not_in(kept.scalar_subquery()))
            .values(image=None)
        )

    def _latest_image(self, channel: str) -> StoredImage | None:
        table = TurnRow.__table__.c  # type: ignore[attr-defined]
        query = (
            sa_select(table.id, table.content, table.image)
            .where(table.channel == channel, table.image.is_not(None))
            .order_by(table.id.desc())
            .limit(1)
        )
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        return StoredImage(row.id, row.content, row.image) if row is not None else None

    def _update(self, turn_id: int, content: str) -> None:
        with Session(self._engine) as session:
            turn = session.get(TurnRow, turn_id)
            if turn is not None:
                turn.content = content
                session.add(turn)
                session.commit()

    def _recent(
        self, channel: str, before_id: int | None, limit: int, images: bool
    ) -> list[StoredTurn]:
        query = _RECENT[before_id is not None, images]
        values = {"channel": channel, "limit": limit, "before_id": before_id}
        with self._engine.connect() as connection:
            return [StoredTurn._make(row) for row in connection.execute(query, values)]

    def _clear(self, channel: str) -> int:
        with Session(self._engine) as session:
            result = session.exec(delete(TurnRow).where(col(TurnRow.channel) == channel))
            session.commit()
            return result.rowcount or 0

    def _start_image_job(self, channel: str, user_id: str, prompt: str) -> int:
        row = {
            "channel": channel,
            "user_id": user_id,
            "prompt": prompt,
            "created_at": _utcnow(),
            "instance": self.instance,
        }
        with self._engine.begin() as connection:
            return int(connection.execute(sa_insert(ImageJob).values(row)).inserted_primary_key[0])

    def _finish_image_job(self, job_id: int) -> None:
        with self._engine.begin() as connection:
            connection.execute(delete(ImageJob).where(col(ImageJob.id) == job_id))

    def _take_lost_image_jobs(self, platform: str) -> list[LostImageJob]:
        mine = col(ImageJob.channel).startswith(f"{platform}:", autoescape=True) & col(
            ImageJob.instance
        ).in_([self.instance, ""])
        with Session(self._engine) as session:
            jobs = session.exec(select(ImageJob).where(mine).order_by(col(ImageJob.id))).all()
            session.exec(delete(ImageJob).where(col(ImageJob.id).in_([j.id for j in jobs])))
            session.commit()
            return [LostImageJob(j.channel, j.user_id, j.prompt) for j in jobs]

    def _ping(self) -> None:
        with self._engine.connect() as connection:
            connection.execute(sa_select(1))

    def _count(self, channel: str) -> int:
        with Session(self._engine) as session:
            query = select(func.count()).select_from(TurnRow).where(TurnRow.channel == channel)
            return int(session.exec(query).one())
