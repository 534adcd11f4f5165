"""Work that belongs to a message's answer but must not hold its channel.

An image takes minutes to render: the channel's next message should not wait for it. The
image service hands such work to `after_turn`; the channel's owner runs it once the
answer's turn is over, still as part of answering that message, so its errors reach the
same boundary (`Brain`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def collecting_after_turn() -> Iterator[list[Work]]:
    """A turn: what `after_turn` is given inside it is collected in the yielded list."""
    waiting: list[Work] = []
    token = _after_turn.set(waiting)
    try:
        yield waiting
    finally:
        _after_turn.reset(token)
