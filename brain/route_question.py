"""Asking when the router is unsure: "Should I draw that?", and the user's answer.

A message the router cannot call (between `routing.sure_text` and `routing.sure_image`)
is neither drawn nor answered yet: the bot asks, in the platform's own way — two buttons
for the asking user on platforms that have them, a plain question elsewhere. The next
message of that user in that channel answers it: yes draws, no answers in words, and
anything else means they carried on (the question is dropped and the new message is
answered as usual). A question is answered once, so the bot never both draws and answers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from brain.bounded import BoundedDict
from brain.messages import Inbound
from brain.outbox import MessageRef, Outbox
from brain.routing import Route
from brain.runner import Turn

ASK = "🎨 Should I draw that? Say **yes** and I'll draw it, or **no** and I'll answer in words."
ASK_WITH_BUTTONS = "🎨 Should I draw that, or just answer in words?"
# A short reply (a few words) that holds one of these answers the question.
ANSWER_WORDS = {"no", "n", "nope", "nah", "not", "don't", "dont", "answer", "words", "text"}
DRAW_WORDS = {"yes", "y", "yeah", "yep", "yup", "ok", "okay", "sure", "please", "draw", "go"}
MOST_WORDS = 5  # longer replies are new messages: the user carried on
QUESTIONS_KEPT = 10_000  # open questions, all channels and users together


@runtime_checkable
class ChoosingOutbox(Protocol):
    """An outbox whose platform has buttons: Draw it / Just answer, for one user only.

    A press comes back to the brain as that user's plain answer ("yes" or "no").
    """

    async def ask_draw_or_answer(self, text: str, user_id: str, timeout_s: float) -> MessageRef:
        """Send `text` with the two buttons, usable by `user_id` for `timeout_s`."""


@dataclass(frozen=True)
class RouteQuestion:
    """A message the bot asked about, waiting for its author's answer."""

    message: Inbound
    turn: Turn
    expires: float


class RouteQuestions:
    """The open "should I draw that?" questions, per (channel, user)."""

    def __init__(self, timeout_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._open: BoundedDict[tuple[str, str], RouteQuestion] = BoundedDict(QUESTIONS_KEPT)

    def __len__(self) -> int:
        return len(self._open)

    async def ask(self, message: Inbound, outbox: Outbox, turn: Turn) -> None:
        key = (message.channel_key, message.author_id)
        self._open[key] = RouteQuestion(message, turn, self._clock() + self.timeout_s)
        if isinstance(outbox, ChoosingOutbox):
            await outbox.ask_draw_or_answer(ASK_WITH_BUTTONS, message.author_id, self.timeout_s)
        else:
            await outbox.send(ASK)

    def take(self, message: Inbound) -> tuple[RouteQuestion, Route] | None:
        """The question this message answers and the route chosen, or None: no question was
        open, it expired, or the user carried on (the question is dropped)."""
        question = self._open.pop((message.channel_key, message.author_id), None)
        if question is None or question.expires < self._clock() or message.attachments:
            return None
        route = choice(message.text)
        return None if route is None else (question, route)


def choice(reply: str) -> Route | None:
    """What a short reply chose: "no thanks", "nah, just answer" → text; "yes please",
    "sure, draw it" → image; None for anything longer or neither (the user carried on)."""
    words = re.findall(r"[a-z']+", reply.lower())
    if not words or len(words) > MOST_WORDS:
        return None
    if ANSWER_WORDS.intersection(words):
        return Route.TEXT
    if words[0] in DRAW_WORDS or "draw" in words:
        return Route.IMAGE
    return None
