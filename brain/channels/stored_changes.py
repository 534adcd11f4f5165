"""An edit or deletion of a message already stored: the one place that rewrites or forgets
its turn everywhere it is kept — the history row, its vector, and the rolling summary built
from it — so the history and the memory never keep what its author took back."""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from brain.channels.events import Change, Deletion
from brain.history.store import HistoryStore
from brain.memory.memory import Memory
from brain.text import clean_text

log = logging.getLogger(__name__)


class StoredChanges:
    """Applies platform edits and deletions to the stored turns of their message."""

    def __init__(self, history: HistoryStore, memory: Memory | None, max_turn_chars: int) -> None:
        self.history = history
        self.memory = memory
        self.max_turn_chars = max_turn_chars

    async def apply(self, change: Change) -> None:
        """Never raises: a change that cannot be applied is logged (the chat goes on)."""
        try:
            if isinstance(change, Deletion):
                removed = await self.history.forget_source(change.source)
                rewritten: list[tuple[int, str]] = []
            else:  # a turn edited down to nothing goes too
                text = clean_text(change.text)[: self.max_turn_chars]
                rewritten, removed = await self.history.rewrite_source(change.source, text)
            if self.memory is not None and (removed or rewritten):
                await self.memory.forget_turns(removed, rewritten)
        except (SQLAlchemyError, OSError, RuntimeError):  # the database; torch in the memory
            log.exception("could not apply an edit or deletion of %s", change.source)
