"""Pieces every chat adapter needs: a per-user rate limit."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable

SLOW_DOWN = "Slow down a little — I can only take so many messages at once. Try again in a minute."


class RateLimiter:
    """At most `limit` events per `window_s` seconds per key (a sliding window)."""

    def __init__(
        self, limit: int, window_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._events: defaultdict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str) -> bool:
        """Record an event for `key`; False when it is over the limit."""
        now = self._clock()
        events = self._events[key]
        while events and now - events[0] >= self.window_s:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True
