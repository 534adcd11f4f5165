"""One reply at a time per channel, in arrival order, with no memory of idle channels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ChannelQueue:
    """Serializes work per channel key; other channels run concurrently.

    asyncio.Lock wakes its waiters first come, first served, so messages of one channel are
    answered in the order they arrived. A channel's lock is dropped as soon as nobody holds
    or waits for it: a bot in thousands of rooms keeps locks only for the busy ones.
    """

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._locks)

    def waiting(self, key: str) -> int:
        """How many tasks hold or wait for this channel."""
        return self._users.get(key, 0)

    @asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]
