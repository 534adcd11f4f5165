"""Stopping a reply from Matrix by reacting to it: ⏹ (or 🛑) on a reply while it is being
written stops it where it is, as `!stop` does.

Matrix has no buttons; a reaction (an `m.reaction` annotation) is what clients offer on any
message with one click. Only a reply being written answers to it: the outbox names each
reply it starts (`writing`) and forgets it once its message is answered (`written`).
"""

from __future__ import annotations

import logging

import nio

from brain.brain import Brain

log = logging.getLogger(__name__)

# U+23F9 with and without the emoji presentation selector, and the stop sign.
STOP_REACTIONS = frozenset({"⏹", "⏹️", "🛑"})
MAX_WRITING = 10_000  # replies tracked at once (a bound; each one is answered and dropped)


class StopReactions:
    """Which replies are being written where, and the reaction callback that stops one."""

    def __init__(self, brain: Brain) -> None:
        self.brain = brain
        self._writing: dict[str, str] = {}  # a reply's event id → its channel key

    def writing(self, event_id: str, channel_key: str) -> None:
        if len(self._writing) < MAX_WRITING:
            self._writing[event_id] = channel_key

    def written(self, event_id: str) -> None:
        self._writing.pop(event_id, None)

    async def on_reaction(self, room: nio.MatrixRoom, event: nio.ReactionEvent) -> None:
        """Sync callback: ⏹ on a reply being written stops it (anyone in the room may, as
        anyone may say `!stop`)."""
        channel_key = self._writing.get(event.reacts_to)
        if event.key in STOP_REACTIONS and channel_key is not None:
            if self.brain.stop(channel_key):
                log.info("matrix: %s stopped a reply with a reaction", room.room_id)
