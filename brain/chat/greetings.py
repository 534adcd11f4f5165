"""A card's greeting: the first time a channel talks to a character whose card has a
`first_mes`, the character opens with it (or one of its `alternate_greetings`), and the
greeting is stored as the character's turn, so the conversation goes on from it as it does in
SillyTavern. In a chat room the bot cannot speak before anyone does: it greets just before it
answers the channel's first message.

`/greeting` lists the greetings; `/greeting N` opens the scene again with greeting N.
"""

from __future__ import annotations

import random

from brain.bounded import BoundedDict
from brain.characters.card_prompt import speaking_to
from brain.config import CharacterConfig
from brain.errors import BadCommand
from brain.history.store import HistoryStore
from brain.outbox import Outbox, send_as

KNOWN_CHANNELS = 10_000


class Greeter:
    """Opens a new channel with the writing character's greeting, if its card has one."""

    def __init__(self, writer: CharacterConfig, history: HistoryStore) -> None:
        self.writer = writer
        self.history = history
        # Channels known to have begun: only a channel's first message here costs a query.
        self._begun: BoundedDict[str, bool] = BoundedDict(KNOWN_CHANNELS)

    @property
    def greetings(self) -> list[str]:
        return [g for g in self.writer.greetings if g.strip()]

    async def greet_if_new(self, channel: str, user: str, outbox: Outbox) -> None:
        """Before a channel's first turn is stored: the greeting, shown and stored."""
        greetings = self.greetings
        if not greetings or channel in self._begun:
            return
        self._begun[channel] = True
        if await self.history.count(channel) > 0:
            return  # begun before (another process, or before a restart)
        chosen = random.choice(greetings) if self.writer.greeting == "random" else greetings[0]
        await self._open(channel, chosen, user, outbox)

    async def greet_again(self, channel: str, number: int, user: str, outbox: Outbox) -> None:
        """`/greeting N`: the scene opens again with greeting N (1 is the first)."""
        greetings = self.greetings
        if not 1 <= number <= len(greetings):
            raise BadCommand(f"{self.writer.name} has greetings 1 to {len(greetings)}.")
        await self._open(channel, greetings[number - 1], user, outbox)

    def listing(self) -> str:
        greetings = self.greetings
        if not greetings:
            return f"{self.writer.name} has no greetings (a character card's first message)."
        lines = [f"{n}. {g.strip()[:200]}" for n, g in enumerate(greetings, start=1)]
        return f"{self.writer.name}'s greetings (`/greeting N` opens with one):\n" + "\n".join(
            lines
        )

    async def _open(self, channel: str, greeting: str, user: str, outbox: Outbox) -> None:
        text = speaking_to(greeting, user)
        await send_as(outbox, self.writer.name, text)
        await self.history.add(channel, "assistant", text, self.writer.name)
