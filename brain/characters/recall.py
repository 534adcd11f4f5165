"""Recalled turns in a prompt: what the memory found, fitted to the budget kept for it.

Apart from `brain.memory` so that the prompt builder (`brain.characters.context`) needs
nothing of the memory's machinery: the memory hands over `OldTurn`s, the prompt shows them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

QUOTE_CHARS = 400  # longest recalled turn, in characters
HEADER = "[Earlier in this conversation, recalled from memory:"
FOOTER = "]"


@dataclass(frozen=True)
class OldTurn:
    """A stored turn as the memory shows it: with its speaker and time."""

    turn_id: int
    role: str
    author: str
    content: str
    created_at: datetime


@dataclass(frozen=True)
class Recollection:
    """What the memory brings to one message: the summary and the relevant old turns."""

    summary: str
    turns: tuple[tuple[OldTurn, float], ...]  # (turn, similarity), most alike first
    most: int  # turns shown at most
    budget: int  # tokens kept for all of it in each prompt


async def fit_recollection(
    recollection: Recollection,
    before_id: int,
    budget: int,
    cost: Callable[[str], Awaitable[int]],
) -> tuple[str, int]:
    """The recalled text for a prompt whose history starts at `before_id`, and its cost.

    Only turns older than the prompt's history are shown (the rest are in it already);
    the most alike first while they fit, then shown oldest first.
    """
    spent = await cost(HEADER + FOOTER)
    lines: list[tuple[int, str]] = []
    if recollection.summary:
        line = f"- Summary of older messages: {recollection.summary}"
        line_cost = await cost(line)
        if spent + line_cost <= budget:
            lines.append((-1, line))
            spent += line_cost
    shown = 0
    for turn, _ in recollection.turns:
        if turn.turn_id >= before_id or shown >= recollection.most:
            continue
        line = _quote(turn)
        line_cost = await cost(line)
        if spent + line_cost <= budget:
            lines.append((turn.turn_id, line))
            spent += line_cost
            shown += 1
    if not lines:
        return "", 0
    body = "\n".join(line for _, line in sorted(lines))
    return f"{HEADER}\n{body}\n{FOOTER}", spent


def _quote(turn: OldTurn) -> str:
    text = " ".join(turn.content.split())
    if len(text) > QUOTE_CHARS:
        text = text[:QUOTE_CHARS] + "…"
    return f"- ({turn.created_at:%Y-%m-%d %H:%M}) {turn.author or turn.role}: {text}"
