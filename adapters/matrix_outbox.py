"""What the Matrix adapter sends: replies, threads, edits, folded reasoning, as events.

`MatrixOutbox` implements the brain's outbox for one message in one room (and thread):
every message it sends about the user's message is a real `m.in_reply_to` reply to it (so
in a busy room a note, its follow-up, a `/think` answer or a "stopped" notice never float
unlinked), edits are `m.replace` events, and Markdown becomes the sanitized HTML subset
Matrix clients render.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.matrix_html import markdown_to_html
from brain.outbox import Capabilities

if TYPE_CHECKING:
    from adapters.matrix import MatrixAdapter

NO_MENTIONS: dict[str, Any] = {}  # an empty m.mentions: this event pings nobody (not even @room)
MATRIX_LIMIT = 16000


class MatrixOutbox:
    """Replies in a room (and thread): every message an m.in_reply_to reply, m.replace edits."""

    def __init__(
        self, adapter: MatrixAdapter, room_id: str, reply_to: str | None, thread_root: str | None
    ) -> None:
        self._adapter = adapter
        self._room_id = room_id
        self._question = reply_to  # what every message sent here replies to
        self._thread_root = thread_root
        self._writing: list[str] = []  # replies it started, being written
        self.capabilities = Capabilities(
            max_message_length=MATRIX_LIMIT,
            edit_interval_s=adapter.config.edit_interval_s,
        )

    def _relation(self) -> dict[str, Any]:
        """A reply to the question (inside its thread, if it came in one)."""
        reply_to = self._question
        if self._thread_root is not None:
            relation: dict[str, Any] = {"rel_type": "m.thread", "event_id": self._thread_root}
            if reply_to:
                relation["is_falling_back"] = True
                relation["m.in_reply_to"] = {"event_id": reply_to}
            return {"m.relates_to": relation}
        return {"m.relates_to": {"m.in_reply_to": {"event_id": reply_to}}} if reply_to else {}

    async def send(self, text: str) -> str:
        content = {**text_content(text), **self._relation()}
        return await self._adapter.send(self._room_id, content)

    async def send_as(self, author: str, text: str) -> str:
        """A reply a character is writing (`brain.outbox.AuthoredOutbox`): until its message
        is answered (`finish`), a ⏹ reaction on it stops it (`adapters.matrix_stop`)."""
        event_id = await self.send(text)
        channel = f"{self._room_id}/{self._thread_root}" if self._thread_root else self._room_id
        self._adapter.stop_reactions.writing(event_id, f"matrix:{channel}")
        self._writing.append(event_id)
        return event_id

    def finish(self) -> None:
        """Its message is answered: its replies no longer answer to ⏹."""
        for event_id in self._writing:
            self._adapter.stop_reactions.written(event_id)
        self._writing.clear()

    async def edit(self, ref: str, text: str) -> None:
        new = text_content(text)
        content = {
            "msgtype": new["msgtype"],
            "body": f"* {new['body']}",
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": ref},
            "m.mentions": NO_MENTIONS,
        }
        await self._adapter.send(self._room_id, content)

    async def send_image(self, data: bytes, filename: str, caption: str) -> str:
        return await self._adapter.send_image(
            self._room_id, data, filename, caption, self._relation()
        )

    async def send_reasoning(self, text: str) -> None:
        """A collapsed <details> block; clients without HTML show the plain body."""
        folded = {
            **text_content(f"💭 Reasoning:\n{text}"),
            "formatted_body": (
                f"<details><summary>💭 Reasoning</summary>{markdown_to_html(text)}</details>"
            ),
            **self._relation(),
        }
        await self._adapter.send(self._room_id, folded)

    async def typing(self) -> None:
        await self._adapter.typing(self._room_id)

    async def error(self, text: str) -> None:
        await self.send(f"⚠️ {text}")


def text_content(text: str) -> dict[str, Any]:
    return {
        "msgtype": "m.text",
        "body": text,
        "format": "org.matrix.custom.html",
        "formatted_body": markdown_to_html(text),
        "m.mentions": NO_MENTIONS,
    }
