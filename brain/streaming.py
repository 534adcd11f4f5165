"""Streaming a reply into chat: batched edits at the platform's rate, split at its length limit.

Every adapter gets the same behaviour from its outbox's `Capabilities`: one
message edited as tokens arrive (no more often than the platform allows), and
text beyond the length limit continued in new messages, cut between paragraphs,
lines or words and never inside a code block without closing and reopening it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

from brain.outbox import Outbox, send_as

FENCE = re.compile(r"^\s*```([^\s`]*)", re.MULTILINE)
CLOSE_FENCE = "\n```"


def split_once(text: str, limit: int) -> tuple[str, str]:
    """Cut `text` into a head of at most `limit` characters and the remaining tail.

    Prefers a paragraph break, then a line break, then a space in the second half of
    the allowed span. If the cut lands inside a ``` block, the head closes the block
    and the tail reopens it with the same language.
    """
    if len(text) <= limit:
        return text, ""
    room = limit - len(CLOSE_FENCE)
    cut = _best_cut(text, room)
    head, tail = text[:cut], text[cut:]
    language = _open_fence_language(head)
    if language is not None:
        return head.rstrip("\n") + CLOSE_FENCE, f"```{language}\n" + tail.lstrip("\n")
    return head.rstrip(), tail.lstrip()


def split_text(text: str, limit: int) -> list[str]:
    """Split a whole text into messages of at most `limit` characters."""
    parts: list[str] = []
    while len(text) > limit:
        head, text = split_once(text, limit)
        parts.append(head)
    if text or not parts:
        parts.append(text)
    return parts


def _best_cut(text: str, room: int) -> int:
    window = text[: room + 1]
    for separator in ("\n\n", "\n", " "):
        at = window.rfind(separator, room // 2)
        if at > 0:
            return at + len(separator) if separator == " " else at
    return room


def with_footer(text: str, footer: str) -> str:
    """`text`, then `footer` (a note) after it: outside any code block `text` left open."""
    if not footer:
        return text
    if _open_fence_language(text) is not None:  # a reply cut off in the middle of code
        text = text.rstrip("\n") + CLOSE_FENCE
    return f"{text}\n\n{footer}" if text else footer


def _open_fence_language(text: str) -> str | None:
    """The language of a ``` block left open at the end of `text`, else None."""
    fences = FENCE.findall(text)
    if len(fences) % 2 == 0:
        return None
    return fences[-1]


Finalizer = Callable[[str], Awaitable[str]]
"""Turns a finished reply into the one to show and store (extensions' post_process hooks)."""
RETRACTED = "💭 …"  # what a message shows once its text turned out to be reasoning


class ReplyStreamer:
    """Shows a growing reply through an outbox, within the platform's limits.

    What is shown is what is stored: `finish` runs the finalizer (and an optional
    transform) on the whole reply before the last edit, so a hook that changes the reply
    changes what people read too.
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        clock: Callable[[], float] = time.monotonic,
        finalize: Finalizer | None = None,
    ) -> None:
        self._outbox = outbox
        self._limit = outbox.capabilities.max_message_length
        self._interval = outbox.capabilities.edit_interval_s
        self._clock = clock
        self._finalize = finalize
        self._full: list[str] = []
        self._current = ""  # text of the message being written
        self._shown = ""  # what the platform shows for it now
        self._ref: object | None = None
        self._done: list[tuple[object, str]] = []  # full messages sent before the current one
        self._last_edit = float("-inf")
        self.author: str | None = None  # the character writing (`brain.outbox.send_as`)

    @property
    def text(self) -> str:
        """The whole reply so far, unsplit."""
        return "".join(self._full)

    async def push(self, delta: str) -> None:
        """Add streamed text; shows it when the platform's edit interval allows."""
        if not delta:
            return
        self._full.append(delta)
        self._current += delta
        await self._roll_over_full_messages()
        if self._interval is not None and self._clock() - self._last_edit >= self._interval:
            await self._show()

    async def retract(self) -> None:
        """What was streamed so far was the model's reasoning, not its reply: take it back."""
        self._full, self._current = [], ""
        if self._ref is not None or self._done:
            await self._show_whole(RETRACTED)

    async def finish(
        self, footer: str = "", *, transform: Callable[[str], str] | None = None
    ) -> str:
        """Show everything that is left (and an optional footer); returns the reply text.

        `transform` and then the finalizer may change the whole reply first; what they
        return is shown (earlier messages edited where needed) and returned.
        """
        reply = self.text
        final = transform(reply) if transform is not None else reply
        if self._finalize is not None and final.strip():
            final = await self._finalize(final)
        if final != reply:
            self._full = [final]
            await self._show_whole(with_footer(final, footer))
            return final
        if footer:
            self._current = with_footer(self._current, footer)
            await self._roll_over_full_messages()
        if self._interval is not None and self._ref is not None:
            wait = self._interval - (self._clock() - self._last_edit)
            if wait > 0 and self._current != self._shown:
                await asyncio.sleep(wait)
        await self._show(force=True)
        return self.text

    async def fold_reasoning(self, text: str) -> None:
        """The model's reasoning, shown the way the platform folds text away."""
        await self._outbox.send_reasoning(text)

    async def _show_whole(self, text: str) -> None:
        """Show `text` in place of everything this streamer sent, editing and adding messages."""
        parts = split_text(text, self._limit)
        sent = [*self._done, *([(self._ref, self._shown)] if self._ref is not None else [])]
        self._done = []
        for index, part in enumerate(parts):
            if index < len(sent):
                ref, shown = sent[index]
                if shown != part and self._interval is not None:
                    await self._outbox.edit(ref, part)
            else:
                ref = await send_as(self._outbox, self.author, part)
            self._done.append((ref, part))
        for ref, shown in sent[len(parts) :]:  # a shorter text: what is left over is emptied
            if self._interval is not None and shown != RETRACTED:
                await self._outbox.edit(ref, RETRACTED)
        self._ref, self._shown = self._done.pop()
        self._current = self._shown
        self._last_edit = self._clock()

    async def _roll_over_full_messages(self) -> None:
        while len(self._current) > self._limit:
            head, tail = split_once(self._current, self._limit)
            self._current = head
            await self._show(force=True)
            if self._ref is not None:
                self._done.append((self._ref, self._shown))
            self._ref, self._shown, self._current = None, "", tail

    async def _show(self, force: bool = False) -> None:
        """Send or edit the current message. Without edits, only complete messages go out."""
        if self._interval is None and not force:
            return
        text = self._current
        if not text.strip() or text == self._shown:
            return
        if self._ref is None:
            self._ref = await send_as(self._outbox, self.author, text)
        else:
            await self._outbox.edit(self._ref, text)
        self._shown = text
        self._last_edit = self._clock()
