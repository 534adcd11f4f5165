"""The rolling summary: a character condenses the turns that fell out of the window.

Written in the background after a reply (never on a reply's path), from the summary so
far and the turns since, fitted into the character's context window. The summary is kept
short (`MemoryConfig.summary_tokens`) because every prompt of the channel carries it.
"""

from __future__ import annotations

from brain.characters.context import PER_MESSAGE_OVERHEAD, PROMPT_OVERHEAD
from brain.characters.recall import OldTurn
from brain.characters.runner import end_cut_reply
from brain.config import CharacterConfig
from brain.models.client import Message, ModelClient

INSTRUCTION = (
    "You keep the memory of a chat. Rewrite the summary so that it keeps every fact, name, "
    "date, plan and preference people shared, saying who shared it, and leaves out small "
    "talk. Write only the summary, in plain sentences, at most {words} words."
)
WORDS_PER_TOKEN = 0.6
QUOTE_CHARS = 1000  # longest turn, in characters, that the summary reads


class Summarizer:
    """Writes a channel's new summary with one character's model."""

    def __init__(self, character: CharacterConfig, client: ModelClient, max_tokens: int) -> None:
        self.character = character
        self.client = client
        self.max_tokens = max_tokens

    async def write(self, previous: str, turns: list[OldTurn]) -> tuple[str, int]:
        """(the new summary, the id of the newest turn it read): as many of `turns`, oldest
        first, as fit the character's window beside the summary so far."""
        model = self.character.model
        words = max(10, int(self.max_tokens * WORDS_PER_TOKEN))
        system = f"{self.character.persona}\n\n{INSTRUCTION.format(words=words)}"
        head = f"Summary so far: {previous or '(none yet)'}\n\nNew messages:"
        window = await self.client.context_window(model)
        budget = window - self.max_tokens - PROMPT_OVERHEAD - 2 * PER_MESSAGE_OVERHEAD
        budget -= await self.client.count_tokens(model, system)
        budget -= await self.client.count_tokens(model, head)
        lines: list[str] = []
        covered = turns[0].turn_id
        for turn in turns:
            line = _line(turn)
            line_cost = await self.client.count_tokens(model, line) + 1
            if line_cost > budget:
                break
            budget -= line_cost
            lines.append(line)
            covered = turn.turn_id
        if not lines:  # one turn longer than the window: read its start
            lines.append(_line(turns[0])[: max(budget, 0) * 2])
        messages: list[Message] = [
            {"role": "system", "content": system},
            {"role": "user", "content": head + "\n" + "\n".join(lines)},
        ]
        text = await self.client.chat(
            model,
            messages,
            temperature=0.2,
            max_tokens=self.max_tokens,
            timeout_s=self.character.timeout_s,
            stage="summary",
            reasoning=self.character.reasoning,
        )
        return end_cut_reply(" ".join(text.split())), covered


def _line(turn: OldTurn) -> str:
    text = " ".join(turn.content.split())[:QUOTE_CHARS]
    return f"({turn.created_at:%Y-%m-%d %H:%M}) {turn.author or turn.role}: {text}"
