"""Which channels of a platform have a history, most recently active first.

For a platform whose channels exist only in mombot (the web page's): its list of channels
is the history's, so every browser sees the same ones.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from brain.database.tables import TURNS
from brain.history.store import HistoryStore


async def recent_channels(history: HistoryStore, platform: str, limit: int) -> list[str]:
    """The ids of `platform`'s channels with stored turns (without the platform's prefix)."""
    prefix = f"{platform}:"
    newest = func.max(TURNS.id)
    query = (
        select(TURNS.channel)
        .where(TURNS.channel.startswith(prefix, autoescape=True))
        .group_by(TURNS.channel)
        .order_by(newest.desc())
        .limit(limit)
    )

    def read() -> list[str]:
        with history.engine.connect() as connection:
            return [channel.removeprefix(prefix) for (channel,) in connection.execute(query)]

    return await asyncio.to_thread(read)
