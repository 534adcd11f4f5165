"""What the bot asked someone and is waiting for: an open route question or image proposal.

One map for every channel and user, bounded, each question with its expiry: a channel whose
owner went idle may still have a question open. A user has at most one open question per
channel; a newer one replaces it. What an answer means is decided in one place
(`brain.channels.dispatcher`): a command is always a command, a yes or no answers, and
anything else carries on as a new message and drops the question.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from brain.bounded import BoundedDict

QUESTIONS_KEPT = 10_000  # open questions, all channels and users together
MOST_WORDS = 5  # longer replies are new messages: the user carried on
NO_WORDS = {"no", "n", "nope", "nah", "not", "don't", "dont", "cancel", "stop"}
NO_WORDS |= {"answer", "words", "text"}  # "no, just answer in words"
YES_WORDS = {"yes", "y", "yeah", "yep", "yup", "ok", "okay", "sure", "please", "draw", "go"}

Asked = TypeVar("Asked")


def yes_or_no(reply: str) -> bool | None:
    """What a short reply said: "no thanks", "nah, just answer" → False; "yes please",
    "sure, draw it" → True; None for anything longer or neither (the user carried on)."""
    words = re.findall(r"[a-z']+", reply.lower())
    if not words or len(words) > MOST_WORDS:
        return None
    if NO_WORDS.intersection(words):
        return False
    if words[0] in YES_WORDS or "draw" in words:
        return True
    return None


@dataclass(frozen=True)
class _Open(Generic[Asked]):
    asked: Asked
    expires: float


class OpenQuestions(Generic[Asked]):
    """The open questions, per (channel, user), until answered, replaced or expired."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, limit: int = QUESTIONS_KEPT
    ) -> None:
        self.clock = clock
        self._open: BoundedDict[tuple[str, str], _Open[Asked]] = BoundedDict(limit)

    def __len__(self) -> int:
        return len(self._open)

    def open(self, channel: str, user_id: str, asked: Asked, timeout_s: float) -> None:
        """`user_id` was asked `asked` in `channel`; it waits `timeout_s` for the answer."""
        self._prune()
        self._open[channel, user_id] = _Open(asked, self.clock() + timeout_s)

    def peek(self, channel: str, user_id: str) -> Asked | None:
        """The question open for this user here, left open; None if none (or expired)."""
        found = self._open.get((channel, user_id))
        return None if found is None or found.expires < self.clock() else found.asked

    def take(self, channel: str, user_id: str) -> Asked | None:
        """The question open for this user here, closed; None if none (or expired)."""
        asked = self.peek(channel, user_id)
        self._open.pop((channel, user_id), None)
        return asked

    def _prune(self) -> None:
        now = self.clock()
        for key in [key for key, found in self._open.items() if found.expires < now]:
            del self._open[key]
