"""The database's tables, every one in one place, and what deleting a turn takes with it.

The history, the memory and the image jobs each read and write their own tables, but they
share one database and one schema (Alembic's, `brain/database/migrations`, which reads it
from here). Keeping the tables apart from the code that uses them is what lets the history
delete a turn's vector without importing the memory, and the memory read turns without
importing the history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Index, LargeBinary, Text, delete
from sqlmodel import Field, SQLModel

TEXT, IMAGE = "text", "image"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TurnRow(SQLModel, table=True):
    """One stored message of a channel's conversation."""

    __tablename__ = "turns"
    __table_args__ = (
        Index("ix_turns_channel_id", "channel", "id"),
        Index("ix_turns_source", "source"),
    )

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
    # The platform message it came from ("discord:1234"; "" if none): edits and deletions
    # there reach the stored turn.
    source: str = Field(default="", max_length=255, sa_column_kwargs={"server_default": ""})
    # Where the message's own text ends in `content` when files or an image's description
    # follow it (None: it is all text): an edit there replaces only the text.
    text_chars: int | None = Field(default=None)


class MemoryVectorRow(SQLModel, table=True):
    """The embedding of one user turn, under the channel whose memory it belongs to."""

    __tablename__ = "memory_vectors"
    __table_args__ = (Index("ix_memory_vectors_channel", "channel", "turn_id"),)

    turn_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    channel: str = Field(max_length=255)
    vector: bytes = Field(sa_type=LargeBinary)
    # The encoder that made it (`Embedder.identity`): another encoder's vectors are made again.
    encoder: str = Field(default="", max_length=255, sa_column_kwargs={"server_default": ""})


class MemorySummaryRow(SQLModel, table=True):
    """A channel's rolling summary of the turns that fell out of the window."""

    __tablename__ = "memory_summaries"

    channel: str = Field(primary_key=True, max_length=255)
    text: str = Field(sa_type=Text)
    covered_until: int  # the newest turn id the summary has read
    updated_at: datetime


class MemoryDirectChannelRow(SQLModel, table=True):
    """A direct conversation of a user with the bot (a DM): where `[memory] follow_user`
    looks for what that user said elsewhere."""

    __tablename__ = "memory_direct_channels"

    user: str = Field(primary_key=True, max_length=255)  # "discord:1234", "matrix:@ann:…"
    channel: str = Field(primary_key=True, max_length=255)


class ImageJob(SQLModel, table=True):
    """An image request in progress; rows left at start belong to a process that died."""

    __tablename__ = "image_jobs"

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=255)
    user_id: str = Field(max_length=255)
    prompt: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # The bot instance running it: two bots on one database never claim each other's jobs.
    instance: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})


class ShownEventRow(SQLModel, table=True):
    """One thing a page showed in a channel (a message, a reply as last edited, an image,
    a panel, an error), so that a reload shows it again: the web page keeps no history of
    its own, as Discord and Matrix do (`brain.history.transcript`)."""

    __tablename__ = "shown_events"
    __table_args__ = (
        Index("ix_shown_events_channel_id", "channel", "id"),
        Index("ix_shown_events_channel_ref", "channel", "ref"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=255)
    ref: str = Field(max_length=64)  # the page's id of what was shown (a message's, a reply's)
    kind: str = Field(max_length=16)  # "user", "message", "image", "details", …
    payload: str = Field(sa_type=Text)  # the event as the page got it, as JSON
    finished: bool  # False while a reply is still being written (or a question open)
    created_at: datetime = Field(default_factory=_utcnow)


class UserPersonaRow(SQLModel, table=True):
    """Who a user says they are (`/persona`), for every channel they talk in."""

    __tablename__ = "user_personas"

    user: str = Field(primary_key=True, max_length=255)  # "discord:1234", "matrix:@ann:…"
    text: str = Field(sa_type=Text)
    updated_at: datetime = Field(default_factory=_utcnow)


# The tables' columns, for SQLAlchemy Core queries (no ORM objects on the hot paths).
# SQLModel sets `__table__` on each table class but does not declare it to type checkers.
TURNS = TurnRow.__table__.c  # type: ignore[attr-defined]
VECTORS = MemoryVectorRow.__table__.c  # type: ignore[attr-defined]
SUMMARIES = MemorySummaryRow.__table__.c  # type: ignore[attr-defined]
DIRECT_CHANNELS = MemoryDirectChannelRow.__table__.c  # type: ignore[attr-defined]
SHOWN = ShownEventRow.__table__.c  # type: ignore[attr-defined]
PERSONAS = UserPersonaRow.__table__.c  # type: ignore[attr-defined]


# Full-text search of user turns (migration 0010): each database's own machinery, which
# SQLModel cannot describe (an FTS5 table and its shadow tables; an expression index).
FULL_TEXT_SEARCH = "turn_search"
FULL_TEXT_INDEX = "ix_turns_search"


def is_modelled(name: str | None, kind: str) -> bool:
    """Whether a schema object is one of the models here (Alembic's `include_object`):
    the full-text search's objects are made by their migration, not compared to models."""
    if kind == "table" and name is not None and name.startswith(FULL_TEXT_SEARCH):
        return False
    return not (kind == "index" and name == FULL_TEXT_INDEX)


def clear_channel(connection: Any, channel: str) -> None:
    """Delete a channel's vectors and summary (the history's /reset, in its transaction)."""
    connection.execute(delete(MemoryVectorRow).where(VECTORS.channel == channel))
    connection.execute(delete(MemorySummaryRow).where(SUMMARIES.channel == channel))


def delete_vectors(connection: Any, turn_ids: list[int]) -> None:
    """Delete the vectors of turns the history deletes (in its transaction)."""
    connection.execute(delete(MemoryVectorRow).where(VECTORS.turn_id.in_(turn_ids)))
