"""Who each user says they are (`/persona`): one text per user, for every channel they talk
in, read into each prompt as their description (`{{user}}`'s, in a character card's words).

A user is a platform's user ("discord:1234"): the same person on two platforms is two users
unless they set it on both. Read on every message, so the values are cached (bounded, and
"no persona" too); writes go through here, so the cache never goes stale in this process.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from brain.bounded import BoundedDict
from brain.database.tables import PERSONAS, UserPersonaRow

MAX_PERSONA_CHARS = 1000  # what one persona may hold (a card's description is about this)
CACHED_USERS = 10_000


class Personas:
    """Each user's persona, stored in the database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._cache: BoundedDict[str, str] = BoundedDict(CACHED_USERS)

    async def get(self, user: str) -> str:
        """The user's persona; "" when they have none."""
        cached = self._cache.get(user)
        if cached is not None:
            self._cache.touch(user)
            return cached
        query = select(PERSONAS.text).where(PERSONAS.user == user)

        def read() -> str:
            with self._engine.connect() as connection:
                return str(connection.execute(query).scalar() or "")

        text = await asyncio.to_thread(read)
        self._cache[user] = text
        return text

    async def set(self, user: str, text: str) -> None:
        """Store `text` (at most MAX_PERSONA_CHARS: the caller says so when it is longer)."""
        text = text[:MAX_PERSONA_CHARS]
        now = datetime.now(UTC)

        def write() -> None:
            with self._engine.begin() as connection:
                changed = connection.execute(
                    update(UserPersonaRow)
                    .where(PERSONAS.user == user)
                    .values(text=text, updated_at=now)
                ).rowcount
                if not changed:
                    connection.execute(
                        insert(UserPersonaRow).values(user=user, text=text, updated_at=now)
                    )

        await asyncio.to_thread(write)
        self._cache[user] = text

    async def clear(self, user: str) -> None:
        def write() -> None:
            with self._engine.begin() as connection:
                connection.execute(delete(UserPersonaRow).where(PERSONAS.user == user))

        await asyncio.to_thread(write)
        self._cache[user] = ""
