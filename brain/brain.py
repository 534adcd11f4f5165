"""The brain: takes one neutral message, answers it through an outbox.

`Brain.handle` is the single boundary where typed errors become chat messages;
everything else is logged with its traceback and the user gets a short apology.
Messages of one channel are answered one at a time, in order.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict

from brain.chat import ChatResponder
from brain.commands import CommandRegistry, CommandSpec
from brain.config import CharacterConfig, HistoryConfig
from brain.errors import BadCommand, MombotError
from brain.history import HistoryStore
from brain.llm import ModelClient
from brain.messages import CommandCall, Inbound
from brain.outbox import Outbox
from brain.streaming import ReplyStreamer

log = logging.getLogger(__name__)

GENERIC_ERROR = "Sorry, something went wrong on my side. The details are in the bot's log."
# C0/C1 controls except tab and newline, and zero-width/bidi formatting characters.
_INVISIBLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def clean_text(text: str) -> str:
    """Drop control and invisible formatting characters; normalise line ends."""
    return _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


BUILTIN_COMMANDS = (
    CommandSpec("help", "Show what I can do."),
    CommandSpec("reset", "Forget this channel's conversation.", admin=True),
)


class Brain:
    """Routes each inbound message to a command or to chat, and stores the conversation."""

    def __init__(
        self,
        *,
        characters: list[CharacterConfig],
        clients: dict[str, ModelClient],
        history: HistoryStore,
        history_config: HistoryConfig | None = None,
    ) -> None:
        if not characters:
            raise ValueError("the brain needs at least one character")
        self.characters = characters
        self.clients = clients
        self.history = history
        self.history_config = history_config or HistoryConfig()
        self.commands = CommandRegistry()
        for spec in BUILTIN_COMMANDS:
            self.commands.register(spec)
        self._chat = ChatResponder(history, clients)
        self._channel_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def handle(self, message: Inbound, outbox: Outbox) -> None:
        """Answer one message. Never raises: failures become a message to the user."""
        try:
            async with self._channel_locks[message.channel_key]:
                command = message.command or self.commands.parse_text(message.text)
                if command is not None:
                    await self._run_command(command, message, outbox)
                else:
                    await self._answer(message, outbox)
        except BadCommand as exc:
            log.info("%s: bad command: %s", message.channel_key, exc)
            await self._tell_error(outbox, exc.user_message)
        except MombotError as exc:
            log.warning("%s: %s (%s)", message.channel_key, type(exc).__name__, exc)
            await self._tell_error(outbox, exc.user_message)
        except Exception:
            log.exception("%s: unexpected failure while answering", message.channel_key)
            await self._tell_error(outbox, GENERIC_ERROR)

    async def _tell_error(self, outbox: Outbox, text: str) -> None:
        try:
            await outbox.error(text)
        except Exception:
            log.exception("could not deliver an error message")

    async def _answer(self, message: Inbound, outbox: Outbox) -> None:
        text = clean_text(message.text)[: self.history_config.max_turn_chars]
        if not text:
            raise BadCommand("Your message was empty; say something and I'll answer.")
        channel = message.channel_key
        user_turn = await self.history.add(channel, "user", text, message.author_name)
        await outbox.typing()
        character = self.characters[0]
        streamer = ReplyStreamer(outbox)
        reply = await self._chat.reply(
            character, channel=channel, user_text=text, user_turn_id=user_turn, streamer=streamer
        )
        if reply.strip():
            await self.history.add(channel, "assistant", reply, character.name)
        else:
            await outbox.send("_(The model returned an empty answer.)_")

    async def _run_command(self, command: CommandCall, message: Inbound, outbox: Outbox) -> None:
        if command.name == "help":
            await outbox.send(self.commands.help_text())
        elif command.name == "reset":
            removed = await self.history.clear(message.channel_key)
            await outbox.send(f"Forgot this conversation ({removed} messages).")
        else:
            raise BadCommand(f"/{command.name} is not available here.")

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        self.history.close()


