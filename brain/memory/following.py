"""Which direct conversations a user's memory reaches (`[memory] follow_user`).

A user may talk to the bot in several direct conversations: a second Matrix DM room, the
console's channels, a DM on Discord and one on Matrix. Each is recorded under the user's key
("matrix:@ann:example.org") when they write there; with `follow_user` on, recall in one of
them also searches the others: those under the same key, and those of the accounts an admin
linked to it in the config (`linked_accounts`: a platform cannot tell that two accounts are
one person). A shared room is never recorded and never searched from, so what was said in a
DM stays with its user, and nobody else's DM is ever reached.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from brain.bounded import BoundedDict
from brain.database.tables import DIRECT_CHANNELS, MemoryDirectChannelRow

KNOWN_PAIRS = 8192  # (user, channel) pairs known to be recorded: not written again


class DirectConversations:
    """Records each user's direct conversations and finds their others."""

    def __init__(self, engine: Engine, linked_accounts: list[list[str]]) -> None:
        self._engine = engine
        self._people = {account: frozenset(group) for group in linked_accounts for account in group}
        self._recorded: BoundedDict[tuple[str, str], bool] = BoundedDict(KNOWN_PAIRS)

    def accounts(self, user: str) -> frozenset[str]:
        """The user's accounts: their own, and those linked to it."""
        return self._people.get(user, frozenset({user}))

    async def record(self, user: str, channel: str) -> None:
        """`channel` is a direct conversation of `user` (once per pair and process)."""
        if (user, channel) not in self._recorded:
            await asyncio.to_thread(self._record, user, channel)
            self._recorded[(user, channel)] = True

    async def others(self, user: str, channel: str) -> list[str]:
        """The user's other direct conversations (on any linked account)."""
        return await asyncio.to_thread(self._others, self.accounts(user), channel)

    def _record(self, user: str, channel: str) -> None:
        query = select(DIRECT_CHANNELS.user).where(
            DIRECT_CHANNELS.user == user, DIRECT_CHANNELS.channel == channel
        )
        row = {"user": user, "channel": channel}
        try:
            with self._engine.begin() as connection:
                if connection.execute(query).first() is None:
                    connection.execute(insert(MemoryDirectChannelRow), [row])
        except IntegrityError:  # another process recorded it in between
            pass

    def _others(self, accounts: frozenset[str], channel: str) -> list[str]:
        query = select(DIRECT_CHANNELS.channel).where(
            DIRECT_CHANNELS.user.in_(sorted(accounts)), DIRECT_CHANNELS.channel != channel
        )
        with self._engine.connect() as connection:
            return sorted({row[0] for row in connection.execute(query)})
