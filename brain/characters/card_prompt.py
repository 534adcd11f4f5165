"""A character card's fields as a persona, in the order the card spec and SillyTavern's
default story string use: the system prompt (the default persona where the card has none,
or inside it as {{original}}), the description, the personality, the scenario, then the
example dialogues where the window has room for them (the first part left out when it is
tight); the post-history instructions go after the conversation (`post_history`).

Macros: {{char}} (and V1's <BOT>) is the character's nickname or name; {{user}} (and <USER>)
stays {{user}} here and becomes the writer's name in each prompt (`speaking_to`), as every
message may come from someone else. Both are matched in any case, as the specs say.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from brain.characters.cards import Card

EXAMPLES_SHARE = 0.25  # of the window (less the reply), the most example dialogues may take

# The system prompt a card starts from when neither it nor the config gives one (SillyTavern's
# default main prompt).
CARD_SYSTEM = "Write {{char}}'s next reply in a fictional chat between {{char}} and {{user}}."
CHAR = re.compile(r"\{\{char\}\}|<bot>", re.IGNORECASE)
USER = re.compile(r"\{\{user\}\}|<user>", re.IGNORECASE)
ORIGINAL = re.compile(r"\{\{original\}\}", re.IGNORECASE)
START = re.compile(r"^\s*<START>\s*$", re.IGNORECASE | re.MULTILINE)  # between examples


def card_persona(card: Card, original: str) -> str:
    """The persona a card makes; `original` is the default system prompt it may keep."""
    name = card.text("nickname") or card.name
    system = card.text("system_prompt").strip()
    system = ORIGINAL.sub(lambda _: original, system) if system else original
    parts = [
        system,
        card.text("description"),
        f"{name}'s personality: {card.text('personality')}" if card.text("personality") else "",
        f"Scenario: {card.text('scenario')}" if card.text("scenario") else "",
    ]
    return _macros("\n\n".join(p.strip() for p in parts if p.strip()), name)


def card_examples(card: Card) -> str:
    """The card's example dialogues, kept apart from the persona: the most expendable part
    of it, they follow it only where the window has room (`with_examples`)."""
    return _macros(_examples(card.text("mes_example")), card.text("nickname") or card.name)


async def with_examples(
    persona: str, examples: str, room: int, cost: Callable[[str], Awaitable[int]]
) -> str:
    """The persona with the example dialogues after it, if they take at most `EXAMPLES_SHARE`
    of `room` (the window less the reply's reserve); else without them. Decided by the
    model's window alone, never by the conversation, so the prompt's start stays the same
    from message to message (the server's cache keeps it)."""
    if not examples or await cost(examples) > room * EXAMPLES_SHARE:
        return persona
    return f"{persona}\n\n{examples}"


def card_post_history(card: Card) -> str:
    """The card's instructions for after the conversation ({{original}}: nothing more)."""
    text = ORIGINAL.sub("", card.text("post_history_instructions")).strip()
    return _macros(text, card.text("nickname") or card.name)


def card_greetings(card: Card) -> list[str]:
    """The card's first message and its alternate greetings ({{user}}: filled when sent)."""
    name = card.text("nickname") or card.name
    texts = [card.text("first_mes"), *card.texts("alternate_greetings")]
    return [_macros(text.strip(), name) for text in texts if text.strip()]


def speaking_to(text: str, user: str) -> str:
    """`text` with {{user}} as the person it answers (or "the user" where unknown)."""
    return USER.sub(lambda _: user or "the user", text)


def _examples(text: str) -> str:
    """Example dialogues, one block each (`<START>` separates them)."""
    blocks = [b.strip() for b in START.split(text) if b.strip()]
    if not blocks:
        return ""
    return "Example dialogues (how {{char}} talks):\n\n" + "\n\n---\n\n".join(blocks)


def _macros(text: str, name: str) -> str:
    return USER.sub("{{user}}", CHAR.sub(lambda _: name, text))
