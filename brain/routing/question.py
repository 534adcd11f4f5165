"""Asking when the router is unsure: "Should I draw that?", and the user's answer.

A message the router cannot call (between `routing.sure_text` and `routing.sure_image`)
is neither drawn nor answered yet: the bot asks, in the platform's own way — two buttons
for the asking user on platforms that have them, a plain question elsewhere. The question
is the channel's (`brain.questions`): the next message of that user there answers
it when it is a yes or a no (yes draws, no answers in words); a command runs as a command;
anything else means they carried on (the question is dropped and the new message answered
as usual). A question is answered once, so the bot never both draws and answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from brain.characters.runner import Turn
from brain.messages import Inbound
from brain.outbox import Outbox
from brain.questions import OpenQuestions, yes_or_no
from brain.routing.router import Route

ASK = "🎨 Should I draw that? Say **yes** and I'll draw it, or **no** and I'll answer in words."
ASK_WITH_BUTTONS = "🎨 Should I draw that, or just answer in words?"


@runtime_checkable
class ChoosingOutbox(Protocol):
    """An outbox whose platform has buttons: Draw it / Just answer, for one user only.

    A press comes back to the brain as that user's plain answer ("yes" or "no").
    """

    async def ask_draw_or_answer(self, text: str, user_id: str, timeout_s: float) -> object:
        """Send `text` with the two buttons, usable by `user_id` for `timeout_s`."""


@dataclass(frozen=True)
class RouteQuestion:
    """A message the bot asked about, waiting for its author's answer."""

    message: Inbound
    turn: Turn


async def ask(
    questions: OpenQuestions[object], message: Inbound, outbox: Outbox, turn: Turn, timeout_s: float
) -> None:
    """Ask whether to draw `message` (stored as `turn`); its author's answer settles it."""
    questions.open(message.channel_key, message.author_id, RouteQuestion(message, turn), timeout_s)
    if isinstance(outbox, ChoosingOutbox):
        await outbox.ask_draw_or_answer(ASK_WITH_BUTTONS, message.author_id, timeout_s)
    else:
        await outbox.send(ASK)


def choice(reply: str) -> Route | None:
    """What a short reply chose: "no thanks", "nah, just answer" → text; "yes please",
    "sure, draw it" → image; None for anything longer or neither (the user carried on)."""
    said = yes_or_no(reply)
    return None if said is None else (Route.IMAGE if said else Route.TEXT)
