"""A map with a size limit: every per-user, per-channel or per-request map uses it.

A bot lives for months in thousands of rooms. Whatever it keeps per key (debug switches,
proposals, rate-limit windows, token counts) is dropped oldest-used first once the map
is full, so memory stays flat however many keys pass through.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedDict(OrderedDict[K, V], Generic[K, V]):
    """A dict of at most `limit` keys; setting or reading a key makes it the newest.

    Plain dict reads (`[]`, `in`, iteration) do not count as use: `touch` or `get_or_create`
    do. A write past the limit drops the least recently used key.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a bounded map needs a limit of at least 1")
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)

    def touch(self, key: K) -> V | None:
        """The value of `key` (None if absent), marked as just used."""
        if key not in self:
            return None
        self.move_to_end(key)
        return self[key]

    def get_or_create(self, key: K, make: Callable[[], V]) -> V:
        """The value of `key`, made with `make()` when absent; marked as just used."""
        value = self.touch(key)
        if value is None:
            value = make()
            self[key] = value
        return value
