"""A channel's last exchange — its last message and the replies after it — for answering it
again (/retry, the page's regenerate button) and for storing the alternative shown.

Only the last exchange can change this way, as in SillyTavern's swipes: every later turn
was answered with the earlier ones in its prompt.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select

from brain.database.tables import TEXT, TURNS, TurnRow
from brain.history.store import HistoryStore


@dataclass(frozen=True)
class LastExchange:
    """The channel's last user message (a text turn) and the replies stored after it."""

    turn_id: int
    content: str
    replies: tuple[int, ...]  # the assistant text turns after it, oldest first


async def last_exchange(history: HistoryStore, channel: str) -> LastExchange | None:
    """The channel's last exchange; None when no one has said anything here yet."""
    last_user = (
        select(TURNS.id, TURNS.content)
        .where(TURNS.channel == channel, TURNS.role == "user", TURNS.kind == TEXT)
        .order_by(TURNS.id.desc())
        .limit(1)
    )

    def read() -> LastExchange | None:
        with history.engine.connect() as connection:
            found = connection.execute(last_user).first()
            if found is None:
                return None
            turn_id, content = found
            after = select(TURNS.id).where(
                TURNS.channel == channel,
                TURNS.role == "assistant",
                TURNS.kind == TEXT,
                TURNS.id > turn_id,
            )
            replies = tuple(row_id for (row_id,) in connection.execute(after.order_by(TURNS.id)))
        return LastExchange(turn_id, content, replies)

    return await asyncio.to_thread(read)


async def replace_replies(
    history: HistoryStore, channel: str, old: tuple[int, ...], text: str, author: str
) -> None:
    """Store `text` by `author` as the reply of the last exchange, in place of `old` (one
    transaction: a prompt never sees both, or neither)."""
    row = {
        "channel": channel,
        "role": "assistant",
        "author": author,
        "content": text,
        "created_at": datetime.now(UTC),
        "kind": TEXT,
        "source": "",
    }

    def write() -> None:
        with history.engine.begin() as connection:
            if old:
                connection.execute(delete(TurnRow).where(TURNS.id.in_(old)))
            connection.execute(insert(TurnRow).values(row))

    await asyncio.to_thread(write)
