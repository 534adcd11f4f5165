"""The memory's tables: a vector per user turn and a rolling summary per channel.

Vectors are float16 blobs (768 bytes for all-MiniLM-L6-v2's 384 dimensions) in an
ordinary table, so they live on both of the project's databases, are migrated by Alembic
and go wherever the turns go: SQLite cannot load extensions on this Python (no
sqlite-vec) and Debian ships no pgvector, and exact search in process is fast enough
(bench/bench_memory.py). Searching happens in `brain.memory.memory`; these are the database trips,
all synchronous: callers run them in worker threads.

A recalled turn is always read back through the `turns` table, so a turn that was deleted
(by /forget, /reset or a platform deletion) is never recalled, even if its vector lingered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Index, LargeBinary, Text, delete, func, insert, select
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

VECTOR_DTYPE = np.float16  # stored; searched as bfloat16 or float32 (brain.vectors)
DELETE_CHUNK = 10_000


class MemoryVectorRow(SQLModel, table=True):
    """The embedding of one user turn, under the channel whose memory it belongs to."""

    __tablename__ = "memory_vectors"
    __table_args__ = (Index("ix_memory_vectors_channel", "channel", "turn_id"),)

    turn_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    channel: str = Field(max_length=255)
    vector: bytes = Field(sa_type=LargeBinary)


class MemorySummaryRow(SQLModel, table=True):
    """A channel's rolling summary of the turns that fell out of the window."""

    __tablename__ = "memory_summaries"

    channel: str = Field(primary_key=True, max_length=255)
    text: str = Field(sa_type=Text)
    covered_until: int  # the newest turn id the summary has read
    updated_at: datetime


@dataclass(frozen=True)
class OldTurn:
    """A stored turn as the memory shows it: with its speaker and time."""

    turn_id: int
    role: str
    author: str
    content: str
    created_at: datetime


@dataclass(frozen=True)
class Summary:
    text: str
    covered_until: int


def _turns() -> Any:
    from brain.history.store import (
        TurnRow,  # the history's table; imported late: history imports us
    )

    return TurnRow.__table__.c  # type: ignore[attr-defined]


VECTORS = MemoryVectorRow.__table__.c  # type: ignore[attr-defined]
SUMMARIES = MemorySummaryRow.__table__.c  # type: ignore[attr-defined]


class MemoryStore:
    """The memory's reads and writes on the history's database (blocking calls)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def user_turns(self, ids: list[int]) -> list[tuple[int, str, str]]:
        """(id, channel, content) of those of `ids` that are user text turns."""
        turns = _turns()
        query = select(turns.id, turns.channel, turns.content).where(
            turns.id.in_(ids), turns.role == "user", turns.kind == "text"
        )
        with self._engine.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]

    def unindexed_user_turns(self, after_id: int, limit: int) -> list[tuple[int, str, str]]:
        """User text turns after `after_id` with no vector yet, oldest first (catching up)."""
        turns = _turns()
        query = (
            select(turns.id, turns.channel, turns.content)
            .outerjoin(MemoryVectorRow, VECTORS.turn_id == turns.id)
            .where(
                VECTORS.turn_id.is_(None),
                turns.id > after_id,
                turns.role == "user",
                turns.kind == "text",
            )
            .order_by(turns.id)
            .limit(limit)
        )
        with self._engine.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]

    def put_vectors(self, rows: list[tuple[int, str, np.ndarray]]) -> None:
        """Store (turn id, channel, vector) rows, replacing any vector a turn had."""
        values = [
            {
                "turn_id": turn_id,
                "channel": channel,
                "vector": vector.astype(VECTOR_DTYPE).tobytes(),
            }
            for turn_id, channel, vector in rows
        ]
        with self._engine.begin() as connection:
            ids = [row["turn_id"] for row in values]
            connection.execute(delete(MemoryVectorRow).where(VECTORS.turn_id.in_(ids)))
            connection.execute(insert(MemoryVectorRow), values)

    def channel_vectors(self, channel: str, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(turn ids, float32 matrix) of every vector of the channel, oldest first."""
        query = (
            select(VECTORS.turn_id, VECTORS.vector)
            .where(VECTORS.channel == channel)
            .order_by(VECTORS.turn_id)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        data = b"".join(row[1] for row in rows)
        matrix = np.frombuffer(data, dtype=VECTOR_DTYPE).reshape(len(rows), width)
        return ids, matrix.astype(np.float32)

    def count(self, channel: str) -> int:
        query = select(func.count()).select_from(MemoryVectorRow).where(VECTORS.channel == channel)
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def old_turns(self, channel: str, ids: list[int]) -> dict[int, OldTurn]:
        """The turns of `ids` that still exist in the channel, by id."""
        turns = _turns()
        query = select(turns.id, turns.role, turns.author, turns.content, turns.created_at).where(
            turns.channel == channel, turns.id.in_(ids)
        )
        with self._engine.connect() as connection:
            return {row[0]: OldTurn(*row) for row in connection.execute(query)}

    def turns_between(
        self, channel: str, after_id: int, before_id: int, limit: int
    ) -> list[OldTurn]:
        """The newest `limit` text turns with after_id < id < before_id, oldest first.

        The newest: a summary far behind (a long history from before the memory) reads the
        turns that left the window last, not years of them; recall still finds the rest.
        """
        turns = _turns()
        query = (
            select(turns.id, turns.role, turns.author, turns.content, turns.created_at)
            .where(
                turns.channel == channel,
                turns.kind == "text",
                turns.id > after_id,
                turns.id < before_id,
            )
            .order_by(turns.id.desc())
            .limit(limit)
        )
        with self._engine.connect() as connection:
            return [OldTurn(*row) for row in reversed(connection.execute(query).all())]

    def matching_turns(self, channel: str, text: str) -> list[int]:
        """Ids of the channel's text turns that contain `text`, case-insensitively."""
        turns = _turns()
        query = select(turns.id).where(
            turns.channel == channel, turns.content.icontains(text, autoescape=True)
        )
        with self._engine.connect() as connection:
            return [row[0] for row in connection.execute(query)]

    def delete_turns(self, channel: str, ids: list[int]) -> None:
        """Forget turns: the turns themselves and their vectors, in one transaction (in
        chunks: SQLite takes at most 32 766 values in one statement)."""
        turns = _turns()
        with self._engine.begin() as connection:
            for start in range(0, len(ids), DELETE_CHUNK):
                chunk = ids[start : start + DELETE_CHUNK]
                connection.execute(delete(MemoryVectorRow).where(VECTORS.turn_id.in_(chunk)))
                connection.execute(
                    delete(turns.id.table).where(turns.channel == channel, turns.id.in_(chunk))
                )

    def summary(self, channel: str) -> Summary | None:
        query = select(SUMMARIES.text, SUMMARIES.covered_until).where(SUMMARIES.channel == channel)
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        return Summary(row[0], row[1]) if row is not None else None

    def put_summary(self, channel: str, text: str, covered_until: int) -> None:
        row = {
            "channel": channel,
            "text": text,
            "covered_until": covered_until,
            "updated_at": datetime.now(UTC),
        }
        with self._engine.begin() as connection:
            connection.execute(delete(MemorySummaryRow).where(SUMMARIES.channel == channel))
            connection.execute(insert(MemorySummaryRow), [row])

    def drop_summary(self, channel: str) -> None:
        with self._engine.begin() as connection:
            connection.execute(delete(MemorySummaryRow).where(SUMMARIES.channel == channel))


def clear_channel(connection: Any, channel: str) -> None:
    """Delete a channel's vectors and summary (the history's /reset, in its transaction)."""
    connection.execute(delete(MemoryVectorRow).where(VECTORS.channel == channel))
    connection.execute(delete(MemorySummaryRow).where(SUMMARIES.channel == channel))


def delete_vectors(connection: Any, turn_ids: list[int]) -> None:
    """Delete the vectors of turns the history deletes (in its transaction)."""
    connection.execute(delete(MemoryVectorRow).where(VECTORS.turn_id.in_(turn_ids)))
