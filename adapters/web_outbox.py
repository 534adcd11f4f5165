"""What the web adapter sends: replies, their edits, images, the panel, errors, as JSON.

`WebOutbox` implements the brain's outbox for one message in one channel: each event goes
to every tab open on that channel. Every text a model wrote becomes HTML here
(`adapters.web_html`), so the page never renders Markdown or raw text of its own.
"""

from __future__ import annotations

import base64
from typing import Any, Protocol

from adapters.web_html import markdown_to_html
from brain.outbox import Capabilities


class Tabs(Protocol):
    """The web adapter as its outboxes see it: where a channel's tabs are, and message ids."""

    async def broadcast(self, channel: str, event: dict[str, Any]) -> None: ...

    def new_id(self) -> int: ...


def html(text: str) -> str:
    """Model text as sanitized HTML: Markdown rendered, raw HTML escaped, unsafe tags gone."""
    return markdown_to_html(text)


class WebOutbox:
    """Sends one message's replies to every tab open on its channel, as JSON events."""

    capabilities = Capabilities(max_message_length=100_000, edit_interval_s=0.2)

    def __init__(self, adapter: Tabs, channel: str) -> None:
        self._adapter = adapter
        self._channel = channel

    async def _emit(self, event: dict[str, Any]) -> None:
        await self._adapter.broadcast(self._channel, event)

    async def send(self, text: str) -> int:
        """A message of the bot as a whole (a note, a command's answer): no author shown."""
        return await self.send_as("", text)

    async def send_as(self, author: str, text: str) -> int:
        """A reply `author` wrote, under their name (`brain.outbox.AuthoredOutbox`), as a
        reload shows it from the history."""
        ref = self._adapter.new_id()
        await self._emit({"event": "message", "id": ref, "author": author, "html": html(text)})
        return ref

    async def edit(self, ref: int, text: str) -> None:
        await self._emit({"event": "edit", "id": ref, "html": html(text)})

    async def send_image(self, data: bytes, filename: str, caption: str) -> int:
        ref = self._adapter.new_id()
        source = "data:image/png;base64," + base64.b64encode(data).decode()
        await self._emit({"event": "image", "id": ref, "src": source, "html": html(caption)})
        return ref

    async def send_reasoning(self, text: str) -> None:
        await self._emit({"event": "reasoning", "html": html(text)})

    async def typing(self) -> None:
        await self._emit({"event": "status", "text": "thinking"})

    async def progress(self, text: str) -> None:
        """The status line: who has answered, the /think round (`ProgressOutbox`)."""
        await self._emit({"event": "status", "text": text})

    async def error(self, text: str) -> None:
        await self._emit({"event": "error", "html": html(text)})

    async def details(self, proposals: list[Any], calls: list[Any]) -> None:
        """The panel under the reply: each proposal, its time, and every call's tokens."""
        await self._emit(
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
        self, ref: int, text: str, prompt: str, user_id: str, timeout_s: float
    ) -> None:
        """An image proposal: Draw it / Edit / Cancel under the text (`ConfirmingOutbox`)."""
        await self._emit({"event": "confirm", "id": ref, "html": html(text), "prompt": prompt})
