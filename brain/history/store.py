"""Per-channel conversation history in SQLModel (SQLite by default, PostgreSQL by URL).

The database calls are synchronous SQLAlchemy; each runs in a worker thread so
the event loop never waits on disk or network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, func, update
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select

from brain.database.engine import make_engine, migrate
from brain.database.tables import TEXT, TURNS, TurnRow, clear_channel, delete_vectors

log = logging.getLogger(__name__)


# PNGs kept per channel (about 0.4 MB each at 512x512); older entries keep their prompt
KEPT_IMAGES = 20


def _recent_query(*, before: bool, images: bool) -> Select[Any]:
    """The hot read path, built once with bound parameters (SQLAlchemy Core, no ORM objects).

    One statement per combination rather than an expanding IN, which SQLAlchemy renders
    again at every execution.
    """
    table = TURNS
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


@dataclass(frozen=True)
class StoredImage:
    """A generated image as stored with its history entry."""

    turn_id: int
    description: str  # "[image: PROMPT (seed N)]"
    png: bytes


TurnKey = tuple[int, str]  # (turn id, channel)


def _edited(content: str, text_chars: int | None, text: str) -> tuple[str, int | None]:
    """A turn's content and `text_chars` once its message's own text is `text`: what came
    with the message (see `TurnRow.text_chars`) stays."""
    attached = "" if text_chars is None else content[text_chars:].lstrip("\n")
    new = "\n\n".join(part for part in (text, attached) if part)
    return new, (None if text_chars is None else len(text))


class StoredTurn(NamedTuple):
    """A turn read back from the store, detached from any database session.

    A named tuple: a prompt may read hundreds of turns, and tuples build several times
    faster than frozen dataclasses (bench/bench_load.py).
    """

    id: int
    role: str
    author: str
    content: str


class HistoryStore:
    """Stores and reads turns per channel key ("platform:channel").

    Build it
    with `await HistoryStore.open(...)` from async code: the constructor connects and runs
    the migrations, which block.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = make_engine(url)
        migrate(self._engine)
        # Told the id of each user text turn stored or rewritten (the memory indexes them).
        self.on_user_turn: Callable[[int], None] | None = None
        log.info("history store ready (%s)", self._engine.url.get_backend_name())

    @property
    def engine(self) -> Engine:
        """The database, for the memory's and the image jobs' tables."""
        return self._engine

    def _told(self, turn_id: int, role: str, kind: str) -> None:
        if self.on_user_turn is not None and role == "user" and kind == TEXT:
            self.on_user_turn(turn_id)

    @classmethod
    async def open(cls, url: str) -> HistoryStore:
        """Connect and migrate in a worker thread, off the event loop."""
        return await asyncio.to_thread(cls, url)

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
        turn_id = await asyncio.to_thread(self._add, channel, role, content, author, kind, image)
        self._told(turn_id, role, kind)
        return turn_id

    async def add_and_recent(
        self,
        channel: str,
        role: str,
        content: str,
        author: str,
        limit: int,
        source: str = "",
        text_chars: int | None = None,
    ) -> tuple[int, list[StoredTurn]]:
        """Append a text turn and read the `limit` text turns before it, in one database trip.

        A message's answer needs both; one trip instead of two saved about a millisecond
        per message (bench/bench_load.py). `text_chars`: see `TurnRow.text_chars`.
        """
        turn_id, recent = await asyncio.to_thread(
            self._add_and_recent, channel, role, content, author, limit, source, text_chars
        )
        self._told(turn_id, role, TEXT)
        return turn_id, recent

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
        self._told(turn_id, "user", TEXT)  # the memory reads it back and keeps user turns only

    async def forget_source(self, source: str) -> list[TurnKey]:
        """Delete the turns of a platform message that was deleted there (and their memory).

        Returns the (id, channel) of each.
        """
        return await asyncio.to_thread(self._forget_source, source)

    async def rewrite_source(self, source: str, text: str) -> tuple[list[TurnKey], list[TurnKey]]:
        """Replace the text of the turns of a platform message edited there (what came with
        it stays). A turn left with nothing is deleted, as an empty message is never stored.
        Returns the (id, channel) of the turns rewritten, and of those deleted."""
        rewritten, removed = await asyncio.to_thread(self._rewrite_source, source, text)
        for turn_id, _ in rewritten:
            self._told(turn_id, "user", TEXT)  # the memory reads it back and keeps user turns
        return rewritten, removed

    async def clear(self, channel: str) -> int:
        """Forget a channel's conversation and its memory; returns how many turns were removed."""
        return await asyncio.to_thread(self._clear, channel)

    async def count(self, channel: str) -> int:
        return await asyncio.to_thread(self._count, channel)

    async def ping(self) -> None:
        """Raise if the database does not answer (for the health check)."""
        await asyncio.to_thread(self._ping)

    # The two hot paths use SQLAlchemy Core: no ORM objects to build and no re-read of the
    # inserted row, which halved their time per message (bench/bench_load.py).
    def _add(
        self,
        channel: str,
        role: str,
        content: str,
        author: str,
        kind: str,
        image: bytes | None,
        source: str = "",
        text_chars: int | None = None,
    ) -> int:
        row = {
            "source": source,
            "text_chars": text_chars,
            "channel": channel,
            "role": role,
            "content": content,
            "author": author,
            "created_at": datetime.now(UTC),
            "kind": kind,
            "image": image,
        }
        with self._engine.begin() as connection:
            inserted = connection.execute(_INSERT, row).inserted_primary_key
            assert inserted is not None  # an INSERT of one row has its key
            turn_id = int(inserted[0])
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
        source: str,
        text_chars: int | None,
    ) -> tuple[int, list[StoredTurn]]:
        turn_id = self._add(channel, role, content, author, TEXT, None, source, text_chars)
        return turn_id, self._recent(channel, turn_id, limit, False)

    @staticmethod
    def _forget_old_images(connection: Any, channel: str) -> None:
        """Drop the PNGs of all but the newest KEPT_IMAGES image entries (their text stays)."""
        table = TURNS
        with_image = (table.channel == channel) & table.image.is_not(None)
        kept = sa_select(table.id).where(with_image).order_by(table.id.desc()).limit(KEPT_IMAGES)
        connection.execute(
            update(TurnRow)
            .where(with_image, table.id.not_in(kept.scalar_subquery()))
            .values(image=None)
        )

    def _latest_image(self, channel: str) -> StoredImage | None:
        table = TURNS
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

    def _forget_source(self, source: str) -> list[TurnKey]:
        table = TURNS
        with self._engine.begin() as connection:
            found = connection.execute(
                sa_select(table.id, table.channel).where(table.source == source)
            ).all()
            ids = [row[0] for row in found]
            if ids:
                delete_vectors(connection, ids)
                connection.execute(delete(TurnRow).where(table.id.in_(ids)))
            return [(row[0], row[1]) for row in found]

    def _rewrite_source(self, source: str, text: str) -> tuple[list[TurnKey], list[TurnKey]]:
        table = TURNS
        rewritten: list[TurnKey] = []
        emptied: list[TurnKey] = []
        with self._engine.begin() as connection:
            columns = (table.id, table.channel, table.content, table.text_chars)
            found = connection.execute(sa_select(*columns).where(table.source == source)).all()
            for turn_id, channel, content, text_chars in found:
                new, chars = _edited(content, text_chars, text)
                if not new:
                    emptied.append((turn_id, channel))
                    continue
                values = {"content": new, "text_chars": chars}
                connection.execute(update(TurnRow).where(table.id == turn_id).values(values))
                rewritten.append((turn_id, channel))
            if emptied:
                ids = [turn_id for turn_id, _ in emptied]
                delete_vectors(connection, ids)
                connection.execute(delete(TurnRow).where(table.id.in_(ids)))
            return rewritten, emptied

    def _clear(self, channel: str) -> int:
        with self._engine.begin() as connection:
            clear_channel(connection, channel)
            result = connection.execute(delete(TurnRow).where(col(TurnRow.channel) == channel))
            return result.rowcount or 0

    def _ping(self) -> None:
        with self._engine.connect() as connection:
            connection.execute(sa_select(1))

    def _count(self, channel: str) -> int:
        with Session(self._engine) as session:
            query = select(func.count()).select_from(TurnRow).where(TurnRow.channel == channel)
            return int(session.exec(query).one())
