"""Images people attach: the first character that can look describes them (with the
message's question in mind), and everyone else reads its description, stored with the turn."""

from __future__ import annotations

from brain.characters.runner import CharacterRunner, Turn
from brain.config import CharacterConfig
from brain.history.store import HistoryStore

VISION_INSTRUCTION = (
    "Describe the attached image(s) precisely and concisely for someone who cannot see "
    "them, then answer the user's question about them if there is one."
)


class Vision:
    """Finds the character who can look, and has it describe a message's images."""

    def __init__(
        self, characters: list[CharacterConfig], runner: CharacterRunner, history: HistoryStore
    ) -> None:
        self.characters = characters
        self.runner = runner
        self.history = history

    async def character(self) -> CharacterConfig | None:
        """The first character that can look at images, if any."""
        for character in self.characters:
            if character.enabled and await self.runner.can_see(character):
                return character
        return None

    async def describe(
        self,
        vision: CharacterConfig,
        text: str,
        stored: str,
        images: list[tuple[str, str]],
        turn_id: int,
        channel: str,
    ) -> str:
        """The stored turn with `vision`'s description of `images` ((name, data URL) pairs)
        after it, written back to the history."""
        names = ", ".join(name for name, _ in images)
        question = text or "What is in this image?"
        turn = Turn(channel, question, turn_id, images=tuple(url for _, url in images))
        system = f"{vision.persona}\n\n{VISION_INSTRUCTION}"
        description = await self.runner.answer(vision, turn, system=system, stage="vision")
        described = f"{stored}\n\n[{names}, as {vision.name} sees it: {description.strip()}]"
        await self.history.update(turn_id, described)
        return described
