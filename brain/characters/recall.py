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
    elsewhere: bool = False  # said in another direct conversation with the user (follow_user)


@dataclass(frozen=True)
class Recollection:
    """What the memory brings to one message: the summary and the relevant old turns."""

    summary: str
    turns: tuple[tuple[OldTurn, float], ...]  # (turn, similarity), most alike first
    most: int  # turns shown at most
    budget: int  # tokens kept for the recalled turns in each prompt
    summary_budget: int = 0  # tokens kept for the summary, its own share

    @property
    def wanted(self) -> int:
        """Tokens it asks of a prompt: the turns' share, and the summary's if it has one."""
        return self.budget + (self.summary_budget if self.summary else 0)


async def fit_recollection(
    recollection: Recollection,
    before_id: int,
    budget: int,
    cost: Callable[[str], Awaitable[int]],
) -> tuple[str, int]:
    """The recalled text for a prompt whose history starts at `before_id`, and its cost.

    The summary and the turns each have their share of `budget` (in proportion to what
    they were given, when the prompt has less room than asked), and what the turns leave
    unused the summary may take: the turns are fitted within theirs, then the summary into
    the rest up to its own length (`summary_budget`), shortened if it is longer, never left
    out. Only turns older than the prompt's history are shown (the rest are in it already);
    the most alike first while they fit, then shown oldest first.
    """
    spent = await cost(HEADER + FOOTER)
    lines: list[tuple[int, str]] = []
    summary_share = 0
    if recollection.summary and recollection.wanted > 0:
        summary_share = (budget - spent) * recollection.summary_budget // recollection.wanted
    shown = 0
    for turn, _ in recollection.turns:
        in_window = turn.turn_id >= before_id and not turn.elsewhere
        if in_window or shown >= recollection.most:
            continue
        line = _quote(turn)
        line_cost = await cost(line)
        if spent + line_cost <= budget - summary_share:
            lines.append((turn.turn_id, line))
            spent += line_cost
            shown += 1
    if summary_share:
        summary = " ".join(recollection.summary.split())
        room = min(budget - spent, recollection.summary_budget)  # never past its own length
        line, line_cost = await _fitted(f"- Summary of older messages: {summary}", room, cost)
        if line:
            lines.append((-1, line))
            spent += line_cost
    if not lines:
        return "", 0
    body = "\n".join(line for _, line in sorted(lines))
    return f"{HEADER}\n{body}\n{FOOTER}", spent


async def _fitted(line: str, room: int, cost: Callable[[str], Awaitable[int]]) -> tuple[str, int]:
    """`line`, shortened at a word to cost at most `room` ("…" marks the cut); "" if not
    even its start fits."""
    line_cost = await cost(line)
    if line_cost <= room:
        return line, line_cost
    low, high = 0, len(line)  # the longest cut that fits, found by halving
    while low < high:
        middle = (low + high + 1) // 2
        if await cost(_cut(line, middle)) <= room:
            low = middle
        else:
            high = middle - 1
    cut = _cut(line, low)
    return (cut, await cost(cut)) if low > len("- Summary") else ("", 0)


def _cut(line: str, length: int) -> str:
    head = line[:length]
    return (head.rsplit(" ", 1)[0] if " " in head else head) + "…"


def _quote(turn: OldTurn) -> str:
    text = " ".join(turn.content.split())
    if len(text) > QUOTE_CHARS:
        text = text[:QUOTE_CHARS] + "…"
    where = ", in another conversation" if turn.elsewhere else ""
    return f"- ({turn.created_at:%Y-%m-%d %H:%M}{where}) {turn.author or turn.role}: {text}"
