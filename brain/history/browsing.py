"""The history as a page shows it: which channels have one, and a channel's turns with
what their author typed told apart from the files that came with it.

For a platform whose channels exist only in mombot (the web page's): its list of channels
is the history's, so every browser sees the same ones, and a reload shows each message as
it was shown when it was sent.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

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


ATTACHED = re.compile(r"^\[(?:file|image) ([^\]\n:]+)", re.M)  # how `brain.chat` marks files


@dataclass(frozen=True)
class ShownTurn:
    """A stored turn as a page shows it."""

    role: str
    author: str
    content: str  # the whole turn (a reply, or a message with its files' contents)
    typed: str  # what its author typed (a user's message without the files after it)
    files: tuple[str, ...]  # the names of the files that came with it
    source: str  # the platform's id of the message it came from ("" if none)


async def shown_turns(history: HistoryStore, channel: str, limit: int) -> list[ShownTurn]:
    """The channel's newest `limit` turns (drawn images' prompts too), oldest first."""
    query = (
        select(TURNS.role, TURNS.author, TURNS.content, TURNS.text_chars, TURNS.source)
        .where(TURNS.channel == channel)
        .order_by(TURNS.id.desc())
        .limit(limit)
    )

    def read() -> list[ShownTurn]:
        with history.engine.connect() as connection:
            rows = list(connection.execute(query))
        return [_shown(*row) for row in reversed(rows)]

    return await asyncio.to_thread(read)


def _shown(role: str, author: str, content: str, text_chars: int | None, source: str) -> ShownTurn:
    source = source.partition(":")[2]
    if text_chars is None:
        return ShownTurn(role, author, content, content, (), source)
    typed, after = content[:text_chars], content[text_chars:]
    return ShownTurn(role, author, content, typed, tuple(ATTACHED.findall(after)), source)
