"""The owner of one channel: its events applied in arrival order, its messages answered one
at a time.

Each event is stamped with the channel's next sequence number the moment the platform
reports it (`stamp`, synchronous: before anything is awaited); slow preparation (a download,
the replied-to message, decrypting) may then run in parallel, and `deliver` applies the
events strictly in stamp order however their preparation finished. A message or button
answer joins the inbox (or, past `max_waiting`, is told the channel is busy) and is answered
in its turn, in the task that delivered it; an edit or a deletion lands on the message it
names wherever that is: still waiting (its text replaced, or dropped unanswered), being
answered (applied to its stored turn once the answer ends), or already stored.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from brain.after_turn import Work
from brain.channels.events import Answerable, Change, ChannelEvent, Deletion, Edit


class ChannelWork(Protocol):
    """What the owner asks of the brain (`Brain` implements it)."""

    async def answer(self, event: Answerable) -> list[Work]:
        """Answer in the channel's turn, errors told to the user; returns the work left for
        after the turn (an image rendering)."""

    async def after_turn(self, event: Answerable, work: list[Work]) -> None:
        """Run what an answer left for after its turn, errors told to the user."""

    async def refuse_busy(self, event: Answerable) -> None:
        """Tell the sender the channel has too many messages waiting."""

    async def cut_off(self, event: Answerable) -> None:
        """Tell the sender a waiting message will not be answered (shutdown)."""

    async def stopped(self, event: Answerable) -> None:
        """Tell the sender the reply they were reading was stopped (`ChannelOwner.stop`)."""


class Home(Protocol):
    """What the owner asks of the registry that made it (`Channels`)."""

    async def change_stored(self, change: Change) -> None:
        """Apply an edit or deletion to the stored turns (one change at a time)."""

    def release(self, source: str, owner: ChannelOwner) -> None:
        """The message `source` is no longer held by `owner`."""

    def idle(self, owner: ChannelOwner) -> None:
        """`owner` holds nothing any more: it may be dropped."""

    def in_flight(self) -> AbstractContextManager[None]:
        """While inside, the current task is one shutdown waits for (and then cancels)."""


# What a held message's turn came to: answer it, or it was dropped unanswered.
ANSWER, DELETED, BUSY = "answer", "deleted", "busy"


@dataclass
class _Held:
    """A message or button answer the channel holds, until it is answered or dropped."""

    event: Answerable
    turn: asyncio.Future[str]  # ANSWER when its turn comes; DELETED or BUSY if it never does
    # Edits and deletions of it that came while it was being answered, with their futures.
    changes: list[tuple[Change, asyncio.Future[None]]] = field(default_factory=list)
    answering: asyncio.Task[Any] | None = None  # the task writing its answer, while it does
    stopped: bool = False  # someone stopped the answer (`ChannelOwner.stop`)

    @property
    def source(self) -> str:
        return self.event.message.source


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ChannelOwner:
    """Applies one channel's events in arrival order and answers its messages in turn."""

    def __init__(self, key: str, work: ChannelWork, home: Home, max_waiting: int) -> None:
        self.key = key
        self._work = work
        self._home = home
        self._max_waiting = max_waiting
        self._stamped = 0  # sequence numbers handed out
        self._next = 0  # the next one to apply
        self._arrived: dict[int, tuple[ChannelEvent | None, asyncio.Future[object]]] = {}
        self._waiting: deque[_Held] = deque()
        self._current: _Held | None = None

    @property
    def holding(self) -> int:
        """Messages taken and not yet answered: the one being answered and those waiting."""
        return len(self._waiting) + (self._current is not None)

    @property
    def idle(self) -> bool:
        return self._next == self._stamped and self._current is None and not self._waiting

    def stamp(self) -> int:
        """The next place in the channel's order (synchronous: call it before any await)."""
        self._stamped += 1
        return self._stamped - 1

    def stop(self) -> bool:
        """Stop the answer being written now, where it is; False when none is."""
        held = self._current
        if held is None or held.answering is None or held.stopped:
            return False
        held.stopped = True
        held.answering.cancel()
        return True

    def drop(self, number: int, source: str) -> None:
        """Stamp `number` (message `source`) came to nothing: the channel goes on past it."""
        self._release(source)
        self._resolve(number, None)

    async def deliver(self, number: int, event: ChannelEvent) -> None:
        """Apply `event`, stamped `number`, in its turn; returns once it has had its whole
        effect (a message: answered, or dropped unanswered)."""
        resolved = self._resolve(number, event)
        try:
            applied = await asyncio.shield(resolved)
        except asyncio.CancelledError:  # gone before its turn came: nobody will answer it
            self._give_up(number, resolved)
            raise
        if isinstance(applied, _Held):
            with self._home.in_flight():
                await self._answer_in_turn(applied)
        elif isinstance(applied, asyncio.Future):  # a change that waits on the current answer
            await asyncio.shield(applied)
        elif isinstance(event, Edit | Deletion) and applied is None:
            await self._home.change_stored(event)

    # -- applying, in order ------------------------------------------------------------------

    def _resolve(self, number: int, event: ChannelEvent | None) -> asyncio.Future[object]:
        """Record what stamp `number` turned out to be and apply every event whose turn has
        come; the future says what became of this one once it is applied."""
        applied: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._arrived[number] = (event, applied)
        while self._next in self._arrived:
            ready, future = self._arrived.pop(self._next)
            self._next += 1
            future.set_result(self._apply(ready))
        self._grant_turn()
        return applied

    def _apply(self, event: ChannelEvent | None) -> object:
        """What an event came to: a held message, a future to wait for, or None."""
        if event is None:
            return None
        if isinstance(event, Edit | Deletion):
            return self._change(event)
        held = _Held(event, asyncio.get_running_loop().create_future())
        if self.holding >= self._max_waiting:
            self._release(held.source)
            held.turn.set_result(BUSY)
        else:
            self._waiting.append(held)
        return held

    def _change(self, change: Change) -> asyncio.Future[None] | None:
        """An edit or deletion, wherever its message is now (None: for the stored turns)."""
        waiting = next((h for h in self._waiting if h.source == change.source), None)
        if waiting is not None:
            if isinstance(change, Deletion):  # never answered, stored or embedded
                self._waiting.remove(waiting)
                self._release(waiting.source)
                waiting.turn.set_result(DELETED)
            else:
                message = replace(waiting.event.message, text=change.text)
                waiting.event = replace(waiting.event, message=message)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        if self._current is not None and self._current.source == change.source:
            later: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._current.changes.append((change, later))  # its turn is stored once answered
            return later
        return None

    # -- answering, one at a time -----------------------------------------------------------

    def _grant_turn(self) -> None:
        if self._current is None and self._waiting:
            self._current = self._waiting.popleft()
            self._current.turn.set_result(ANSWER)
        if self.idle:
            self._home.idle(self)

    async def _answer_in_turn(self, held: _Held) -> None:
        """Wait for the message's turn, then answer it (in the delivering task)."""
        try:
            outcome = await asyncio.shield(held.turn)
        except asyncio.CancelledError:  # shutdown while it waited: it is never answered
            self._abandon(held)
            await self._work.cut_off(held.event)
            raise
        if outcome == BUSY:
            await self._work.refuse_busy(held.event)
        if outcome != ANSWER:
            return
        later: list[Work] = []
        held.answering = task = asyncio.current_task()
        try:
            later = await self._work.answer(held.event)
        except asyncio.CancelledError:
            if not held.stopped or task is None:
                raise
            task.uncancel()  # the stop's cancel ended the answer, not the delivering task
            await self._work.stopped(held.event)
        finally:
            held.answering = None
            await self._finish(held)
        if later:  # the channel goes on meanwhile
            await self._work.after_turn(held.event, later)

    async def _finish(self, held: _Held) -> None:
        """The answer ended: the changes that came meanwhile reach its stored turn, and the
        next message's turn comes."""
        self._current = None
        try:
            for change, done in held.changes:
                try:
                    await self._home.change_stored(change)
                finally:
                    _settle(done)
        finally:
            self._release(held.source)
            self._grant_turn()

    def _give_up(self, number: int, resolved: asyncio.Future[object]) -> None:
        """The delivering task was cancelled while stamp `number` waited for its turn."""
        if number in self._arrived:  # not applied yet: it will count as nothing
            self._arrived[number] = (None, resolved)
            return
        held = resolved.result() if resolved.done() else None
        if isinstance(held, _Held):
            if not held.turn.done():
                held.turn.set_result(DELETED)
            self._abandon(held)

    def _abandon(self, held: _Held) -> None:
        if held in self._waiting:
            self._waiting.remove(held)
        elif self._current is held:  # its turn came as it was cancelled
            self._current = None
            for _, done in held.changes:
                _settle(done)
        self._release(held.source)
        self._grant_turn()

    def _release(self, source: str) -> None:
        if source:
            self._home.release(source, self)
