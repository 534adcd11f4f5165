"""Answering one event in its channel's turn, and the one place failures become words.

The channel's owner (`brain.channels.owner`) calls these in arrival order; each runs the
dispatcher's path for the event and turns whatever goes wrong into one line for its user:
a typed error's own text, a short apology for anything else (logged with its traceback),
"restarting" once the brain is stopping. Errors reach users from here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from brain.after_turn import Work, collecting_after_turn
from brain.channels.dispatcher import Dispatcher
from brain.channels.events import Answerable, ButtonAnswer, ReplyChosen
from brain.commands.registry import CommandRegistry
from brain.errors import BadCommand, FeatureUnavailable, MombotError
from brain.messages import Inbound
from brain.models.usage import current_channel
from brain.outbox import Outbox
from brain.telemetry import Telemetry

log = logging.getLogger(__name__)

GENERIC_ERROR = "Sorry, something went wrong on my side. The details are in the bot's log."
SHUTTING_DOWN = "I'm restarting right now; please ask again in a minute."
STOPPED_MID_REPLY = "I was stopped before I could finish this answer; please ask again in a minute."
BUSY = "I'm busy with many messages in this channel; please try again in a moment."
STOPPED = "⏹ Stopped."
NOTHING_TO_STOP = "Nothing is being written here right now."


class Answering:
    """Implements `brain.channels.owner.ChannelWork`: answers, and tells users of failures."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        commands: CommandRegistry,
        telemetry: Telemetry,
        closing: Callable[[], bool],
    ) -> None:
        self.dispatcher = dispatcher
        self.commands = commands
        self.telemetry = telemetry
        self._closing = closing  # whether the brain is stopping

    async def answer(self, event: Answerable) -> list[Work]:
        """Answer a message or button answer in its channel's turn."""
        message, outbox = event.message, event.outbox
        if self._closing():
            await self.tell_error(outbox, SHUTTING_DOWN, "shutdown")
            return []
        if isinstance(event, ButtonAnswer):
            kind = "proposal"
        elif isinstance(event, ReplyChosen):
            kind = "choice"
        else:  # the metrics label
            kind = self.commands.kind_of(message.text, message.command)
        current_channel.set(message.channel_key)
        started = time.monotonic()
        with collecting_after_turn() as later:
            await self._guarded(message, outbox, lambda: self.dispatcher.dispatch(event))
        self.telemetry.observe_reply(kind, time.monotonic() - started)
        return later

    async def after_turn(self, event: Answerable, work: list[Work]) -> None:
        """What an answer left for after its turn (an image rendering), in order."""

        async def steps() -> None:
            for step in work:
                await step()

        await self._guarded(event.message, event.outbox, steps)

    async def refuse_busy(self, event: Answerable) -> None:
        log.info("%s: busy, a message was refused", event.message.channel_key)
        await self.tell_error(event.outbox, BUSY, "busy")

    async def cut_off(self, event: Answerable) -> None:
        await self.tell_error(event.outbox, SHUTTING_DOWN, "shutdown")

    async def stopped(self, event: Answerable) -> None:
        """The reply was stopped by its reader: what was written stays, and is not stored
        (the history keeps complete answers only, as after a shutdown)."""
        log.info("%s: a reply was stopped", event.message.channel_key)
        try:
            await event.outbox.send(STOPPED)
        except Exception:  # the platform's own error, whose types only its adapter knows
            log.exception("could not say that a reply was stopped")

    async def _guarded(
        self, message: Inbound, outbox: Outbox, work: Callable[[], Awaitable[None]]
    ) -> None:
        """Run `work`, turning every failure into a message to the user."""
        try:
            await work()
        except (BadCommand, FeatureUnavailable) as exc:
            log.info("%s: %s: %s", message.channel_key, type(exc).__name__, exc)
            await self.tell_error(outbox, exc.user_message, type(exc).__name__)
        except MombotError as exc:
            log.warning("%s: %s (%s)", message.channel_key, type(exc).__name__, exc)
            await self.tell_error(outbox, exc.user_message, type(exc).__name__)
        except Exception:  # the boundary: a bug is logged with its traceback, the user told
            log.exception("%s: unexpected failure while answering", message.channel_key)
            await self.tell_error(outbox, GENERIC_ERROR, "unexpected")
        except asyncio.CancelledError:
            if self._closing():  # cut off by shutdown: say so (the question is stored already)
                log.info("%s: reply cancelled by shutdown", message.channel_key)
                await self.tell_error(outbox, STOPPED_MID_REPLY, "shutdown")
            raise

    async def tell_error(self, outbox: Outbox, text: str, kind: str) -> None:
        self.telemetry.count_error(kind)
        try:
            await outbox.error(text)
        except Exception:  # the platform's own error, whose types only its adapter knows
            log.exception("could not deliver an error message")
