"""Every channel's owner, made when an event comes and dropped when the channel is idle.

A bot in 10,000 rooms keeps owners only for the channels with something waiting or being
answered. Edits and deletions name a platform message, not a channel (on Discord a
message's conversation may be the thread it started), so the registry also knows which
owner holds each message still waiting or being answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from brain.channels.events import Change, ChannelEvent
from brain.channels.owner import ChannelOwner, ChannelWork


class Ticket:
    """A stamped place in a channel's order, for one event still being prepared.

    `deliver` the event once it is ready (and wait for its whole effect); an event that
    comes to nothing (not addressed to the bot, refused, a failed download) is `drop`ped,
    which a `with` block does by itself: a ticket left open would hold its channel up.
    """

    def __init__(
        self,
        owner: ChannelOwner | None,
        direct: Callable[[Change], Awaitable[None]],
        source: str = "",
    ) -> None:
        self._owner = owner
        self._number = owner.stamp() if owner is not None else 0
        self._direct = direct  # for a change of a message no owner holds: the stored turns
        self._source = source  # the message it stands for, held by the owner until it ends
        self._open = True

    async def deliver(self, event: ChannelEvent) -> None:
        """Apply `event` in its turn; returns once it has had its whole effect."""
        self._close()
        if self._owner is None:
            if isinstance(event, Change):
                await self._direct(event)
            return
        await self._owner.deliver(self._number, event)

    def drop(self) -> None:
        """Nothing to apply: the channel goes on past this place."""
        if self._open:
            self._close()
            if self._owner is not None:
                self._owner.drop(self._number, self._source)

    def _close(self) -> None:
        if not self._open:
            raise RuntimeError("a ticket is delivered or dropped once")
        self._open = False

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.drop()


class Channels:
    """The owners of the channels with something to do, and what they share."""

    def __init__(
        self,
        work: ChannelWork,
        store: Callable[[Change], Awaitable[None]],
        max_waiting: int,
    ) -> None:
        self._work = work
        self._store = store  # applies an edit or deletion to the stored turns
        self.max_waiting = max_waiting
        self._owners: dict[str, ChannelOwner] = {}
        self._holders: dict[str, ChannelOwner] = {}  # message source → its channel's owner
        self._store_lock = asyncio.Lock()  # stored-turn changes one at a time, in order
        self.tasks: set[asyncio.Task[object]] = set()  # answering or waiting: shutdown waits

    def __len__(self) -> int:
        """How many channels have an owner now (those with something to do)."""
        return len(self._owners)

    def holding(self, channel_key: str) -> int:
        """Messages of the channel taken and not yet answered (being answered or waiting)."""
        owner = self._owners.get(channel_key)
        return 0 if owner is None else owner.holding

    def arrive(self, channel_key: str, source: str = "") -> Ticket:
        """Stamp a message (or button answer) of `channel_key`, from platform message
        `source` where it has one, in that channel's order. Synchronous: call it in the
        platform's callback before anything is awaited."""
        owner = self._owners.get(channel_key)
        if owner is None:
            owner = self._owners[channel_key] = ChannelOwner(
                channel_key, self._work, self, self.max_waiting
            )
        if source:
            self._holders[source] = owner
        return Ticket(owner, self.change_stored, source)

    def stop(self, channel_key: str) -> bool:
        """Stop the reply being written in the channel; False when none is."""
        owner = self._owners.get(channel_key)
        return owner is not None and owner.stop()

    def change(self, source: str) -> Ticket:
        """Stamp an edit or deletion of platform message `source`: in the order of the
        channel that holds the message, where one does; else it is for the stored turns."""
        return Ticket(self._holders.get(source), self.change_stored)

    # -- what owners ask (brain.channels.owner.Home) -----------------------------------------

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self.tasks.add(task)
        try:
            yield
        finally:
            self.tasks.discard(task)

    async def change_stored(self, change: Change) -> None:
        async with self._store_lock:  # two quick edits of one message land in order
            await self._store(change)

    def release(self, source: str, owner: ChannelOwner) -> None:
        if self._holders.get(source) is owner:
            del self._holders[source]

    def idle(self, owner: ChannelOwner) -> None:
        if self._owners.get(owner.key) is owner:
            del self._owners[owner.key]
