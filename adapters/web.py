"""The web adapter: `mombot web`, a chat page in the browser on this machine.

aiohttp serves one page (static files, no build step, nothing from a CDN), the channel's
history and the command list as JSON, and a WebSocket per tab: the tab sends messages,
files and answers to image proposals; the bot sends events (a message, its edits as it
streams, an image, folded reasoning, a status line, the proposals panel, an error).

Every text a model wrote is turned into HTML by its outbox (`adapters.web_outbox`), with
the sanitizer Matrix uses (`adapters.web_html`), and the page's Content-Security-Policy
forbids inline scripts: a reply holding `<script>` or `<img onerror>` stays inert.

Bound to this machine by default. Bound elsewhere it needs MOMBOT_WEB_TOKEN, asked for by
the page once and then kept in an HttpOnly cookie. Either way a request must name this page
as its host (no DNS rebinding), and a WebSocket must come from this page's origin: any other
site the browser has open could otherwise talk to the bot and read its replies.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import itertools
import json
import logging
import re
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from adapters.config import WebConfig
from adapters.intake import Arrival, Intake, RemoteFile
from adapters.web_html import highlight_css
from adapters.web_outbox import WebOutbox, html
from brain.brain import Brain
from brain.channels.events import ButtonAnswer
from brain.channels.registry import Ticket
from brain.history.browsing import recent_channels, shown_turns
from brain.redaction import register_secret

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "web_static"
LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}
CHANNEL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MESSAGE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
COOKIE = "mombot_token"
HISTORY_TURNS = 200  # turns a page shows when it opens a channel
HIGHLIGHT_CSS = highlight_css()
MAX_CHANNELS_LISTED = 100  # the most recently active, in the page's channel list
MAX_FILES = 10  # files with one message, as on Discord (the page says so past it)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class WebError(Exception):
    """The page cannot be served as configured (say why at start)."""


class WebAdapter:
    """The page, its JSON and its WebSockets; one task per message, as the other adapters."""

    def __init__(self, brain: Brain, config: WebConfig, token: str | None = None) -> None:
        if config.host not in LOCAL_HOSTS and not token:
            raise WebError(
                f"web.host is {config.host}, which other machines can reach, and "
                "MOMBOT_WEB_TOKEN is not set. Fix: export a long random token, or keep "
                'web.host = "127.0.0.1"'
            )
        self.brain = brain
        self.config = config
        register_secret(token)  # masked in every log line, like the other platforms' secrets
        self._token = token
        self.intake = Intake(brain, "web", max_attachment_bytes=config.max_attachment_bytes)
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = config.port

    def new_id(self) -> int:
        return next(self._ids)

    # -- serving ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.add_routes(
            [
                web.get("/", self._page),
                web.get("/api/setup", self._setup),
                web.get("/api/history", self._history),
                web.get("/api/channels", self._channels),
                web.get("/static/highlight.css", self._highlight_css),  # before the folder
                web.get("/ws", self._socket),
                web.static("/static", STATIC),
            ]
        )
        return app

    async def start(self) -> str:
        """Listen; returns the page's address."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the real one where port 0 was asked
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        url = f"http://{host}:{self.port}/"
        log.info("web: serving %s%s", url, " (token required)" if self._token else "")
        return url

    async def run(self) -> None:
        """Serve until cancelled (as `mombot run` runs every adapter)."""
        if self._runner is None:
            await self.start()
        await asyncio.Event().wait()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for socket in [s for tabs in list(self._sockets.values()) for s in tabs]:
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """This page's host and origin; the token where one is set; the
        Content-Security-Policy and friends on every response."""
        if not self._our_host(request):
            raise web.HTTPForbidden(text="Unknown host.")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in (
            f"http://{request.host}",
            f"https://{request.host}",
        ):
            raise web.HTTPForbidden(text="Another site may not use this page.")
        if self._token is not None and not self._authorized(request):
            if request.path != "/" and not request.path.startswith("/static/"):
                raise web.HTTPUnauthorized(text="This page needs its token.")
        response = await handler(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def _our_host(self, request: web.Request) -> bool:
        """Bound to this machine, only this machine's names (a rebinding domain is refused)."""
        if self.config.host not in LOCAL_HOSTS:
            return True  # the token guards it
        host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
        return host.strip("[]") in LOCAL_HOSTS

    def _authorized(self, request: web.Request) -> bool:
        given = request.cookies.get(COOKIE) or request.query.get("token", "")
        return self._token is not None and hmac.compare_digest(given.encode(), self._token.encode())

    async def _page(self, request: web.Request) -> web.StreamResponse:
        """The page. A token in the address is taken once: right, it goes into a cookie the
        page's scripts cannot read and the browser is sent on to the plain address (the
        token leaves the address bar and the history); wrong, the page says so (401)."""
        token = request.query.get("token")
        if self._token is None or token is None:
            return web.FileResponse(STATIC / "index.html")
        if not self._authorized(request):
            return web.FileResponse(STATIC / "index.html", status=401)
        # See other: "/" (the #channel=… part stays: browsers keep it across a redirect)
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    async def _setup(self, request: web.Request) -> web.Response:
        """What the page needs first: the commands (for completion), the file limits, and
        how much of a message is kept."""
        specs = self.brain.commands.specs.values()
        commands = [{"name": s.name, "usage": s.usage(), "help": s.help} for s in specs]
        return web.json_response(
            {
                "commands": commands,
                "max_attachment_bytes": self.config.max_attachment_bytes,
                "max_files": MAX_FILES,
                "max_turn_chars": self.brain.chat.history_config.max_turn_chars,
            }
        )

    async def _history(self, request: web.Request) -> web.Response:
        """The channel's conversation as it was shown: replies as rendered Markdown, each
        of your messages as typed, its files by name."""
        turns = await shown_turns(self.brain.history, f"web:{_channel(request)}", HISTORY_TURNS)
        return web.json_response(
            [
                {"role": "user", "id": t.source, "text": t.typed, "files": t.files}
                if t.role == "user"
                else {"role": t.role, "author": t.author, "html": html(t.content)}
                for t in turns
            ]
        )

    async def _highlight_css(self, request: web.Request) -> web.Response:
        """The code blocks' colours, made from Pygments' styles (see `adapters.web_html`)."""
        return web.Response(text=HIGHLIGHT_CSS, content_type="text/css")

    async def _channels(self, request: web.Request) -> web.Response:
        """The page's channels: those with a history here, most recently active first."""
        names = await recent_channels(self.brain.history, "web", MAX_CHANNELS_LISTED)
        return web.json_response([name for name in names if CHANNEL.match(name)])

    # -- a tab -------------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        channel = _channel(request)
        # a message carries its files in base64 (4 bytes for 3), each up to the limit
        largest = MAX_FILES * (self.config.max_attachment_bytes * 4 // 3 + 4) + 65536
        socket = web.WebSocketResponse(max_msg_size=largest, heartbeat=30)
        await socket.prepare(request)
        self._sockets.setdefault(channel, set()).add(socket)
        try:
            async for frame in socket:
                if frame.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(frame.data)
                except ValueError:
                    continue
                if not isinstance(data, dict):
                    continue
                if data.get("type") == "stop":  # the reply being written, where it is
                    self.brain.stop(f"web:{channel}")
                    continue
                message_id = _message_id(data)
                if data.get("type") in ("edit", "delete"):
                    if message_id:  # its place in the channel's order, at once
                        change = self.intake.change(message_id)
                        self._spawn(self._change(channel, data, message_id, change))
                    continue
                ticket = self.intake.arrive(channel, message_id)
                task = self._spawn(self._take(channel, data, ticket))
                task.add_done_callback(functools.partial(_drop, ticket))
        finally:
            tabs = self._sockets.get(channel, set())
            tabs.discard(socket)
            if not tabs:
                self._sockets.pop(channel, None)
        return socket

    def _spawn(self, work: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _take(self, channel: str, data: dict[str, Any], ticket: Ticket) -> None:
        """A message (with files) or an answer to an image proposal, from a tab."""
        outbox = WebOutbox(self, channel)
        text: str = data["text"] if isinstance(data.get("text"), str) else ""
        arrival = Arrival(
            platform="web",
            channel_id=channel,
            author_id=self.config.user_name,
            author_name=self.config.user_name,
            text=text,
            direct=True,  # the person at the page runs the bot: its admin
            files=tuple(_files(data.get("files"))),
            message_id=_message_id(data),
        )
        try:
            if data.get("type") == "answer":
                with ticket:
                    await ticket.deliver(ButtonAnswer(self.intake.inbound(arrival), outbox))
            else:
                await self.intake.handle(arrival, outbox, ticket)
        except Exception:  # one tab's message never stops the page: logged with its traceback
            log.exception("web: could not answer a message")
        finally:
            await self.broadcast(channel, {"event": "done"})

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
        await self.broadcast(
            channel,
            {"event": "deleted", "id": message_id}
            if text is None
            else {"event": "edited", "id": message_id, "text": text},
        )

    async def broadcast(self, channel: str, event: dict[str, Any]) -> None:
        """Send an event to every tab open on the channel (a closed tab is skipped)."""
        for socket in list(self._sockets.get(channel, ())):
            try:
                await socket.send_json(event)
            except (ConnectionError, RuntimeError):
                continue


def _message_id(data: dict[str, Any]) -> str:
    """The id the page gave a message (a UUID), or "" if it gave none that fits."""
    given = data.get("id")
    return given if isinstance(given, str) and MESSAGE_ID.fullmatch(given) else ""


def _channel(request: web.Request) -> str:
    channel = request.query.get("channel", "main")
    if not CHANNEL.match(channel):
        raise web.HTTPBadRequest(text="A channel name is 1 to 64 letters, digits, - or _.")
    return channel


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


def _drop(ticket: Ticket, _task: asyncio.Task[None]) -> None:
    """A tab's message that ended without being delivered gives its place up."""
    ticket.drop()
