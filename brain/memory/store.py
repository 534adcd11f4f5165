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

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine

from brain.characters.recall import OldTurn
from brain.database.tables import (
    SUMMARIES,
    TURNS,
    VECTORS,
    MemorySummaryRow,
    MemoryVectorRow,
)

VECTOR_DTYPE = np.float16  # stored; searched as `search_dtype()` says (brain.memory.vectors)
DELETE_CHUNK = 10_000


@dataclass(frozen=True)
class Summary:
    text: str
    covered_until: int


class MemoryStore:
    """The memory's reads and writes on the history's database (blocking calls)."""

    def __init__(self, engine: Engine, encoder: str) -> None:
        self._engine = engine
        self._encoder = encoder  # vectors of another encoder count as missing

    def user_turns(self, ids: list[int]) -> list[tuple[int, str, str]]:
        """(id, channel, content) of those of `ids` that are user text turns."""
        turns = TURNS
        query = select(turns.id, turns.channel, turns.content).where(
            turns.id.in_(ids), turns.role == "user", turns.kind == "text"
        )
        with self._engine.connect() as connection:
            return [tuple(row) for row in connection.execute(query)]

    def unindexed_user_turns(self, after_id: int, limit: int) -> list[tuple[int, str, str]]:
        """User text turns after `after_id` with no vector of this encoder yet, oldest first
        (catching up)."""
        turns = TURNS
        query = (
            select(turns.id, turns.channel, turns.content)
            .outerjoin(
                MemoryVectorRow,
                (VECTORS.turn_id == turns.id) & (VECTORS.encoder == self._encoder),
            )
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

    def adopt_unlabelled_vectors(self) -> int:
        """Label the vectors stored before encoders were recorded (migration 0010) as this
        encoder's: they were made by the one the bot ran with then, most likely this one.
        Returns how many."""
        query = update(MemoryVectorRow).where(VECTORS.encoder == "").values(encoder=self._encoder)
        with self._engine.begin() as connection:
            return connection.execute(query).rowcount

    def put_vectors(self, rows: list[tuple[int, str, np.ndarray]]) -> None:
        """Store (turn id, channel, vector) rows, replacing any vector a turn had."""
        values = [
            {
                "turn_id": turn_id,
                "channel": channel,
                "vector": vector.astype(VECTOR_DTYPE).tobytes(),
                "encoder": self._encoder,
            }
            for turn_id, channel, vector in rows
        ]
        with self._engine.begin() as connection:
            ids = [row["turn_id"] for row in values]
            connection.execute(delete(MemoryVectorRow).where(VECTORS.turn_id.in_(ids)))
            connection.execute(insert(MemoryVectorRow), values)

    def channel_vectors(self, channel: str, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(turn ids, float32 matrix) of every vector of the channel, oldest first (of this
        encoder: another's are being made again)."""
        query = (
            select(VECTORS.turn_id, VECTORS.vector)
            .where(VECTORS.channel == channel, VECTORS.encoder == self._encoder)
            .order_by(VECTORS.turn_id)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        data = b"".join(row[1] for row in rows)
        matrix = np.frombuffer(data, dtype=VECTOR_DTYPE).reshape(len(rows), width)
        return ids, matrix.astype(np.float32)

    def count(self, channel: str) -> int:
        query = (
            select(func.count())
            .select_from(MemoryVectorRow)
            .where(VECTORS.channel == channel, VECTORS.encoder == self._encoder)
        )
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def old_turns(self, channel: str, ids: list[int]) -> dict[int, OldTurn]:
        """The turns of `ids` that still exist in the channel, by id."""
        turns = TURNS
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
        turns = TURNS
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
        turns = TURNS
        query = select(turns.id).where(
            turns.channel == channel, turns.content.icontains(text, autoescape=True)
        )
        with self._engine.connect() as connection:
            return [row[0] for row in connection.execute(query)]

    def delete_turns(self, channel: str, ids: list[int]) -> None:
        """Forget turns: the turns themselves and their vectors, in one transaction (in
        chunks: SQLite takes at most 32 766 values in one statement)."""
        turns = TURNS
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
