"""One reply at a time per channel, in arrival order, with no memory of idle channels.

Work that belongs to a message but must not hold its channel (an image rendering for
minutes) is handed to `after_turn`: it runs once the channel's turn is over, still as
part of answering that message, so its errors reach the same boundary.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar

Work = Callable[[], Awaitable[None]]

_after_turn: ContextVar[list[Work] | None] = ContextVar("after_turn", default=None)


async def after_turn(work: Work) -> None:
    """Run `work` after the current channel turn ends (at once where there is no turn)."""
    waiting = _after_turn.get()
    if waiting is None:
        await work()
    else:
        waiting.append(work)


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

    @asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[list[Work]]:
        """Hold the channel; yields the list of work to run once it is released."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        waiting: list[Work] = []
        token = _after_turn.set(waiting)
        try:
            async with lock:
                yield waiting
        finally:
            _after_turn.reset(token)
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]
