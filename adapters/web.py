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
import hmac
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import WSMsgType, web

from adapters.config import WebConfig
from adapters.intake import Intake
from adapters.web_html import highlight_css
from adapters.web_tabs import MAX_FILES, Tabs
from brain.brain import Brain
from brain.history.browsing import recent_channels
from brain.redaction import register_secret

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "web_static"
LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}
CHANNEL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MESSAGE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
COOKIE = "mombot_token"
HIGHLIGHT_CSS = highlight_css()
MAX_CHANNELS_LISTED = 100  # the most recently active, in the page's channel list
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
        self.tabs = Tabs(brain, self.intake, config.user_name)
        self._runner: web.AppRunner | None = None
        self.port = config.port

    # -- serving ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.add_routes(
            [
                web.get("/", self._page),
                web.get("/api/setup", self._setup),
                web.get("/api/history", self._history),
                web.get("/api/channels", self._channels),
                web.get("/api/settings", self._settings),
                web.get("/avatars/{name}", self._avatar),
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
        await self.tabs.close()
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
                "avatars": {
                    c.name: f"/avatars/{quote(c.name)}" for c in self.brain.characters if c.avatar
                },
            }
        )

    async def _avatar(self, request: web.Request) -> web.StreamResponse:
        """A character's picture (its card's), shown beside its name on its messages."""
        name = request.match_info["name"]
        character = next((c for c in self.brain.characters if c.name == name), None)
        if character is None or not character.avatar:
            raise web.HTTPNotFound(text="No such picture.")
        return web.FileResponse(character.avatar, headers={"Content-Type": "image/png"})

    async def _history(self, request: web.Request) -> web.Response:
        """What the channel's tabs were shown, to show again (`adapters.web_tabs`)."""
        return web.json_response(await self.tabs.shown(_channel(request)))

    async def _settings(self, request: web.Request) -> web.Response:
        """The panel's values for a channel: the debug view, the reply length and the
        members' temperature as they are now, and /think's rounds where it is loaded. The
        panel changes them by sending the commands (`/debug`, `/settings`, `/think`), so
        they are checked in one place."""
        key = f"web:{_channel(request)}"
        chat, mixture = self.brain.chat, self.brain.mixture
        tuned = mixture.tuning.get(key)
        think = self.brain.commands.specs.get("think")
        rounds = next((a for a in think.args if a.name == "rounds"), None) if think else None
        return web.json_response(
            {
                "debug": chat.debug.get(key, chat.mixture_config.debug),
                "length": tuned.length or mixture.synthesizer.max_tokens,
                "temperature": tuned.temperature
                if tuned.temperature is not None
                else mixture.members[0].temperature,
                "rounds": None
                if rounds is None
                else {"default": rounds.default, "min": rounds.min, "max": rounds.max},
            }
        )

    async def _highlight_css(self, request: web.Request) -> web.Response:
        """The code blocks' colours, made from Pygments' styles (see `adapters.web_html`)."""
        return web.Response(text=HIGHLIGHT_CSS, content_type="text/css")

    async def _channels(self, request: web.Request) -> web.Response:
        """The page's channels: those with a history here, most recently active first."""
        shown = await self.tabs.transcript.channels("web:", MAX_CHANNELS_LISTED)
        talked = await recent_channels(self.brain.history, "web", MAX_CHANNELS_LISTED)
        names = dict.fromkeys([key.removeprefix("web:") for key in shown] + talked)
        listed = [name for name in names if CHANNEL.match(name)]
        return web.json_response(listed[:MAX_CHANNELS_LISTED])

    # -- a tab -------------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        channel = _channel(request)
        # a message carries its files in base64 (4 bytes for 3), each up to the limit
        largest = MAX_FILES * (self.config.max_attachment_bytes * 4 // 3 + 4) + 65536
        socket = web.WebSocketResponse(max_msg_size=largest, heartbeat=30)
        await socket.prepare(request)
        self.tabs.opened(channel, socket)
        try:
            async for frame in socket:
                if frame.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(frame.data)
                except ValueError:
                    continue
                if isinstance(data, dict):
                    self.tabs.take(channel, data, _message_id(data))
        finally:
            self.tabs.closed(channel, socket)
        return socket


def _message_id(data: dict[str, Any]) -> str:
    """The id the page gave a message (a UUID), or "" if it gave none that fits."""
    given = data.get("id")
    return given if isinstance(given, str) and MESSAGE_ID.fullmatch(given) else ""


def _channel(request: web.Request) -> str:
    channel = request.query.get("channel", "main")
    if not CHANNEL.match(channel):
        raise web.HTTPBadRequest(text="A channel name is 1 to 64 letters, digits, - or _.")
    return channel
