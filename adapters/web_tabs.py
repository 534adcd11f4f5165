"""The page's tabs: what a tab sends the bot, what every tab of a channel is sent, and the
record of it that a reload replays.

Each WebSocket frame from a tab is one of: a message (words, files, a command), an answer
to an image proposal, an edit or deletion of your own message, stop, regenerate (the last
reply answered again: /retry), or the alternative of a regenerated reply now shown. Each
becomes the same brain event another platform's would. Every event the tabs are sent is
also recorded (`brain.history.transcript`), so a reload shows what was shown.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import re
import uuid
from typing import Any

from aiohttp import web

from adapters.intake import Arrival, Intake, RemoteFile
from adapters.web_outbox import WebOutbox, html
from brain.brain import Brain
from brain.channels.events import ButtonAnswer, ReplyChosen
from brain.channels.registry import Ticket
from brain.history.browsing import shown_turns
from brain.history.transcript import ShownEvent, Transcript

log = logging.getLogger(__name__)

HISTORY_TURNS = 200  # turns shown for a channel that has no record yet (older mombots')
MAX_FILES = 10  # files with one message, as on Discord (the page says so past it)
CONFIRM = "confirm"  # an image proposal's event: open until it is answered
THUMBNAIL = re.compile(r"data:image/jpeg;base64,[A-Za-z0-9+/]+={0,2}")  # made by the page
# The notes a reply is shown with but not stored with (cut short, without a member…).
NOTES_AFTER = re.compile(r"(?:\n{1,2}_\([^\n]*\)_)+\s*$")
MAX_THUMBNAIL = 48_000  # characters: a 160-pixel JPEG is 5 to 15 KB


class Tabs:
    """The open tabs of each channel, the frames they send, and the record of what they
    were shown (`adapters.web_outbox` writes it as it sends)."""

    def __init__(self, brain: Brain, intake: Intake, user_name: str) -> None:
        self.brain = brain
        self.intake = intake
        self.user_name = user_name
        self.transcript = Transcript(brain.history.engine)
        self.writing: set[str] = set()  # replies being written now (their ids)
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def new_id(self) -> str:
        """An id for something shown, unique across restarts (a reload replays old ones)."""
        return uuid.uuid4().hex

    def key(self, channel: str) -> str:
        return f"web:{channel}"

    # -- a tab's frames --------------------------------------------------------------------

    def opened(self, channel: str, socket: web.WebSocketResponse) -> None:
        self._sockets.setdefault(channel, set()).add(socket)

    def closed(self, channel: str, socket: web.WebSocketResponse) -> None:
        tabs = self._sockets.get(channel, set())
        tabs.discard(socket)
        if not tabs:
            self._sockets.pop(channel, None)

    def take(self, channel: str, data: dict[str, Any], message_id: str) -> None:
        """One frame, stamped in the channel's order at once (see `Brain.arrive`)."""
        kind = data.get("type")
        if kind == "stop":  # the reply being written, where it is
            self.brain.stop(self.key(channel))
            return
        if kind in ("edit", "delete"):
            if message_id:
                change = self.intake.change(message_id)
                self._spawn(self._change(channel, data, message_id, change))
            return
        ticket = self.intake.arrive(channel, message_id)
        task = self._spawn(self._take(channel, data, ticket, message_id))
        task.add_done_callback(functools.partial(_drop, ticket))

    def _spawn(self, work: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _take(
        self, channel: str, data: dict[str, Any], ticket: Ticket, message_id: str
    ) -> None:
        """A message (with files), an answer to an image proposal, regenerate, or a chosen
        alternative, from a tab."""
        kind = data.get("type")
        given = data.get("of")
        of = given if isinstance(given, str) else ""
        outbox = WebOutbox(self, channel, alternative_of=of if kind == "regenerate" else "")
        text: str = data["text"] if isinstance(data.get("text"), str) else ""
        files = tuple(_files(data.get("files")))
        arrival = Arrival(
            platform="web",
            channel_id=channel,
            author_id=self.user_name,
            author_name=self.user_name,
            text="/retry" if kind == "regenerate" else text,
            direct=True,  # the person at the page runs the bot: its admin
            files=files,
            message_id=message_id,
        )
        try:
            if kind == "message":
                await self._show_yours(channel, message_id, text, _shown_files(data))
            if kind == "answer":
                await self.transcript.finish_kind(self.key(channel), CONFIRM)
                with ticket:
                    await ticket.deliver(ButtonAnswer(self.intake.inbound(arrival), outbox))
            elif kind == "choose":
                await self._choose(channel, of, ticket, arrival, outbox)
            else:
                await self.intake.handle(arrival, outbox, ticket)
        except Exception:  # one tab's message never stops the page: logged with its traceback
            log.exception("web: could not answer a message")
        finally:
            task = asyncio.current_task()  # cancelled: a shutdown cut the answer off
            await outbox.finish(cut_off=task is not None and task.cancelling() > 0)
            await self.broadcast(channel, {"event": "done"})

    async def _show_yours(
        self, channel: str, message_id: str, text: str, files: list[dict[str, str]]
    ) -> None:
        """Your message, in the record and in the channel's other tabs (the one you typed it
        in shows it already)."""
        event = {"event": "user", "id": message_id, "text": text, "files": files}
        await self.transcript.add(self.key(channel), message_id or self.new_id(), event)
        await self.broadcast(channel, event)

    async def _choose(
        self, channel: str, of: str, ticket: Ticket, arrival: Arrival, outbox: WebOutbox
    ) -> None:
        """The tab flipped to alternative `of` of the last reply: it is the one stored."""
        shown = await self.transcript.find(self.key(channel), of)
        if shown is None or shown.payload.get("event") != "message":
            ticket.drop()
            return
        text = NOTES_AFTER.sub("", str(shown.payload.get("text", "")))
        author = str(shown.payload.get("author", ""))
        if not text.strip():  # a reply shown from an older mombot's turns: nothing to store
            ticket.drop()
            return
        with ticket:
            await ticket.deliver(ReplyChosen(self.intake.inbound(arrival), outbox, text, author))
        event = {"event": "chosen", "of": of}
        await self.transcript.add(self.key(channel), self.new_id(), event)
        await self.broadcast(channel, event)

    async def _change(
        self, channel: str, data: dict[str, Any], message_id: str, ticket: Ticket
    ) -> None:
        """Your message edited (new text) or deleted on the page: the same change as a
        Discord edit or a Matrix redaction; then every tab of the channel shows it."""
        text = data.get("text") if data.get("type") == "edit" else None
        if text is not None and (not isinstance(text, str) or not text.strip()):
            ticket.drop()  # an edit to nothing is not an edit: delete is its own button
            return
        await self.intake.changed(message_id, text, ticket)
        key = self.key(channel)
        if text is None:
            await self.transcript.remove(key, message_id)
            await self.broadcast(channel, {"event": "deleted", "id": message_id})
            return
        shown = await self.transcript.find(key, message_id)
        if shown is not None:
            await self.transcript.update(key, message_id, {**shown.payload, "text": text})
        await self.broadcast(channel, {"event": "edited", "id": message_id, "text": text})

    async def broadcast(self, channel: str, event: dict[str, Any]) -> None:
        """Send an event to every tab open on the channel (a closed tab is skipped)."""
        for socket in list(self._sockets.get(channel, ())):
            try:
                await socket.send_json(event)
            except (ConnectionError, RuntimeError):
                continue

    # -- a reload --------------------------------------------------------------------------

    async def shown(self, channel: str) -> dict[str, Any]:
        """What the channel's tabs were shown, to show again: each event as sent (a reply as
        last edited; one cut off by a restart marked `interrupted`), and whether a reply is
        being written now."""
        key = self.key(channel)
        recorded = await self.transcript.read(key)
        events = (
            [self._as_shown(e) for e in recorded]
            if recorded
            else await _from_turns(self.brain, key)  # recorded by an older mombot: its turns
        )
        return {"events": events, "busy": self.brain.channels.holding(key) > 0}

    def _as_shown(self, shown: ShownEvent) -> dict[str, Any]:
        event = dict(shown.payload)
        if event.get("event") == "message":
            event.pop("text", None)  # the reply's Markdown, kept for /retry's alternatives
        if not shown.finished:
            if event.get("event") == "message" and shown.ref not in self.writing:
                event["interrupted"] = True
        elif event.get("event") == CONFIRM:
            event["answered"] = True
        return event

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for socket in [s for tabs in list(self._sockets.values()) for s in tabs]:
            await socket.close()


async def _from_turns(brain: Brain, key: str) -> list[dict[str, Any]]:
    """A channel's turns as the events that showed them (for a history with no record)."""
    turns = await shown_turns(brain.history, key, HISTORY_TURNS)
    return [
        {"event": "user", "id": t.source, "text": t.typed, "files": [{"name": n} for n in t.files]}
        if t.role == "user"
        else {"event": "message", "id": "", "author": t.author, "html": html(t.content)}
        for t in turns
    ]


def _files(raw: Any) -> list[RemoteFile]:
    """Files the page sent along, base64 in the message: read by the intake like any other."""
    if not isinstance(raw, list):
        return []
    files = []
    for item in raw[:MAX_FILES]:
        if not isinstance(item, dict):
            continue
        try:
            data = base64.b64decode(str(item.get("data", "")), validate=True)
        except ValueError:
            data = b""
        name = str(item.get("name") or "file")[:200]
        kind = str(item.get("type") or "application/octet-stream")[:100]
        declared = item.get("size")  # the page sends a file over the limit without its bytes
        size = declared if isinstance(declared, int) and declared > len(data) else len(data)

        async def read(limit: int, data: bytes = data) -> bytes | None:
            return data if len(data) <= limit else None

        files.append(RemoteFile(name, kind, size, read))
    return files


def _shown_files(data: dict[str, Any]) -> list[dict[str, str]]:
    """The files of a message as your message shows them: each name, and an image's
    thumbnail where the page made one (a small JPEG data: URL; anything else is dropped)."""
    raw = data.get("files")
    shown = []
    for item in raw[:MAX_FILES] if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        file = {"name": str(item.get("name") or "file")[:200]}
        thumb = item.get("thumb")
        if isinstance(thumb, str) and len(thumb) <= MAX_THUMBNAIL and THUMBNAIL.fullmatch(thumb):
            file["thumb"] = thumb
        shown.append(file)
    return shown


def _drop(ticket: Ticket, _task: asyncio.Task[None]) -> None:
    """A tab's message that ended without being delivered gives its place up."""
    ticket.drop()
