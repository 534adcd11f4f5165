"""What the web adapter sends: replies, their edits, images, the panel, errors, as JSON.

`WebOutbox` implements the brain's outbox for one message in one channel: each event goes
to every tab open on that channel, and into the channel's record (`brain.history.transcript`)
so that a reload shows it again — a streamed reply as last edited, saved at most once a
second while it streams and once more when its message is answered (`finish`). Every text a
model wrote becomes HTML here (`adapters.web_html`), so the page never renders Markdown or
raw text of its own.
"""

from __future__ import annotations

import base64
import time
from typing import Any, Protocol

from adapters.web_html import markdown_to_html
from brain.history.transcript import Transcript
from brain.outbox import Capabilities

SAVE_EVERY_S = 1.0  # a streaming reply's record is brought up to date at most this often


class Tabs(Protocol):
    """The page's tabs as an outbox sees them (`adapters.web_tabs.Tabs`)."""

    transcript: Transcript
    writing: set[str]  # replies being written now

    async def broadcast(self, channel: str, event: dict[str, Any]) -> None: ...

    def new_id(self) -> str: ...

    def key(self, channel: str) -> str: ...


def html(text: str) -> str:
    """Model text as sanitized HTML: Markdown rendered, raw HTML escaped, unsafe tags gone."""
    return markdown_to_html(text)


class WebOutbox:
    """Sends one message's replies to every tab open on its channel, as JSON events."""

    capabilities = Capabilities(max_message_length=100_000, edit_interval_s=0.2)

    def __init__(self, tabs: Tabs, channel: str, alternative_of: str = "") -> None:
        self._tabs = tabs
        self._channel = channel
        self._key = tabs.key(channel)
        # Answering again (/retry from the page): the reply is another version of this one.
        self._alternative_of = alternative_of
        self._sent: dict[str, dict[str, Any]] = {}  # messages sent, as last edited
        self._saved_at: dict[str, float] = {}

    async def _emit(self, event: dict[str, Any]) -> None:
        await self._tabs.broadcast(self._channel, event)

    async def _shown(self, event: dict[str, Any], *, finished: bool = True) -> str:
        """Send `event` and record it; returns its id (made here where it has none)."""
        ref = str(event.setdefault("id", self._tabs.new_id()))
        await self._emit(event)
        await self._tabs.transcript.add(self._key, ref, event, finished=finished)
        return ref

    async def send(self, text: str) -> str:
        """A message of the bot as a whole (a note, a command's answer): no author shown."""
        return await self.send_as("", text)

    async def send_as(self, author: str, text: str) -> str:
        """A reply `author` wrote, under their name (`brain.outbox.AuthoredOutbox`)."""
        event = {"event": "message", "author": author, "html": html(text)}
        if author and self._alternative_of:  # the first reply: the new version
            event["alternative_of"], self._alternative_of = self._alternative_of, ""
        ref = self._tabs.new_id()
        self._tabs.writing.add(ref)
        await self._emit({"id": ref, **event})
        # Recorded with its Markdown: a version of a reply answered again is stored from it.
        self._sent[ref] = {"id": ref, **event, "text": text}
        self._saved_at[ref] = time.monotonic()
        await self._tabs.transcript.add(self._key, ref, self._sent[ref], finished=False)
        return ref

    async def edit(self, ref: str, text: str) -> None:
        rendered = html(text)  # once: a streaming reply is edited every 0.2 s
        await self._emit({"event": "edit", "id": ref, "html": rendered})
        sent = self._sent.get(ref)
        if sent is None:
            return
        sent.update(html=rendered, text=text)
        if time.monotonic() - self._saved_at[ref] >= SAVE_EVERY_S:
            self._saved_at[ref] = time.monotonic()
            await self._tabs.transcript.update(self._key, ref, sent)

    async def finish(self, *, cut_off: bool = False) -> None:
        """Its message is answered, or `cut_off` by a shutdown: what it sent is recorded as
        it ends. A reply cut off (or never finished: the process was killed) stays unfinished
        in the record, and a reload marks it interrupted."""
        for ref, sent in self._sent.items():
            await self._tabs.transcript.update(self._key, ref, sent, finished=not cut_off)
            self._tabs.writing.discard(ref)
        self._sent.clear()

    async def send_image(self, data: bytes, filename: str, caption: str) -> str:
        source = "data:image/png;base64," + base64.b64encode(data).decode()
        return await self._shown({"event": "image", "src": source, "html": html(caption)})

    async def send_reasoning(self, text: str) -> None:
        await self._shown({"event": "reasoning", "html": html(text)})

    async def typing(self) -> None:
        await self._emit({"event": "status", "text": "thinking"})

    async def progress(self, text: str) -> None:
        """The status line: who has answered, the /think round (`ProgressOutbox`)."""
        await self._emit({"event": "status", "text": text})

    async def error(self, text: str) -> None:
        await self._shown({"event": "error", "html": html(text)})

    async def details(self, proposals: list[Any], calls: list[Any]) -> None:
        """The panel under the reply: each proposal, its time, and every call's tokens."""
        await self._shown(
            {
                "event": "details",
                "proposals": [
                    {
                        "character": p.character,
                        "seconds": round(p.seconds, 1),
                        "html": html(p.text) if p.ok else "",
                        "error": "" if p.ok else (p.error or "empty answer"),
                    }
                    for p in proposals
                ],
                "calls": [
                    {
                        "stage": c.stage,
                        "model": c.model,
                        "prompt_tokens": c.prompt_tokens,
                        "completion_tokens": c.completion_tokens,
                        "seconds": round(c.seconds, 2),
                    }
                    for c in calls
                ],
            }
        )

    async def ask_to_confirm(
        self, ref: str, text: str, prompt: str, user_id: str, timeout_s: float
    ) -> None:
        """An image proposal: Draw it / Edit / Cancel under the text (`ConfirmingOutbox`);
        open in the record until it is answered."""
        event = {"event": "confirm", "of": ref, "html": html(text), "prompt": prompt}
        await self._shown(event, finished=False)
