"""Pieces every chat adapter needs: a per-user rate limit, and attachments read within a limit."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterable, Callable

from brain.bounded import BoundedDict

RATE_LIMITED_USERS = 10_000  # users whose recent messages are remembered (most recent kept)
SLOW_DOWN = "Slow down a little — I can only take so many messages at once. Try again in a minute."


class RateLimiter:
    """At most `limit` events per `window_s` seconds per key (a sliding window).

    Windows are kept for the `max_keys` most recently active keys; a key forgotten that way
    has been quiet longer than all the others, so it starts afresh.
    """

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = RATE_LIMITED_USERS,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._events: BoundedDict[str, deque[float]] = BoundedDict(max_keys)

    def __len__(self) -> int:
        """How many keys have a window kept."""
        return len(self._events)

    def allow(self, key: str) -> bool:
        """Record an event for `key`; False when it is over the limit."""
        now = self._clock()
        events = self._events.get_or_create(key, deque)
        while events and now - events[0] >= self.window_s:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True


def too_large(name: str, limit: int, size: int | None = None) -> str:
    """The note for an attachment the bot did not open because of its size."""
    known = f"{size // 1024} KB; " if size is not None else ""
    return (
        f"{name[:80]} is too large ({known}the limit is {limit // 1024} KB), so I did not open it."
    )


def could_not_download(name: str) -> str:
    return f"I could not download {name[:80]}; please try again."


async def read_capped(chunks: AsyncIterable[bytes], limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` bytes (the rest is never read).

    For media whose size is not declared up front: a sender may leave it out, or lie.
    """
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
