"""The brain: takes one neutral message and answers it through an outbox.

`Brain` is the boundary and nothing more: it keeps each channel's messages in order,
dispatches a message to the image service (an answer to a proposal), a command (one
dispatch table for built-ins and extensions) or the chat pipeline, turns typed errors
into chat messages (anything else is logged with its traceback and the user gets a
short apology), and stops cleanly. What each path does lives in its own module:
`brain.chat`, `brain.image_service`, `brain.builtin_commands`, `brain.thinking`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from brain.builtin_commands import BuiltinCommands
from brain.channel_queue import ChannelQueue
from brain.chat import ChatPipeline
from brain.commands import CommandRegistry
from brain.config import (
    AttachmentsConfig,
    CharacterConfig,
    HistoryConfig,
    ImagesConfig,
    MemoryConfig,
    MixtureConfig,
)
from brain.embedder import Embedder
from brain.errors import BadCommand, FeatureUnavailable, MombotError
from brain.extensions import Extension, ExtensionContext, Hooks, load_extensions
from brain.history import HistoryStore
from brain.image_service import ImageService
from brain.images import CoolDown, ImageGenerator, ImagePromptWriter
from brain.llm import ModelClient
from brain.memory import open_memory
from brain.messages import CommandCall, Inbound
from brain.mixture import Mixture
from brain.outbox import Outbox
from brain.routing import Classifier, TextOnly
from brain.runner import CharacterRunner
from brain.telemetry import Sources, Telemetry
from brain.text import clean_text
from brain.usage import TokenTracker, current_channel

log = logging.getLogger(__name__)

CANCEL_RETRY_S = 2.0  # shutdown: cancel again after this long
GENERIC_ERROR = "Sorry, something went wrong on my side. The details are in the bot's log."
SHUTTING_DOWN = "I'm restarting right now; please ask again in a minute."
STOPPED_MID_REPLY = "I was stopped before I could finish this answer; please ask again in a minute."
PROPOSAL_GONE = "That question has expired; ask again."


def split_roles(characters: list[CharacterConfig]) -> tuple[list[CharacterConfig], CharacterConfig]:
    """(members, synthesizer): the synthesizer is the one so marked, else the first member."""
    active = [c for c in characters if c.enabled]
    if not active:
        raise ValueError("the brain needs at least one enabled character")
    members = [c for c in active if c.role == "member"]
    synthesizer = next((c for c in active if c.role == "synthesizer"), None)
    if not members:
        members = [synthesizer]  # type: ignore[list-item]
    return members, synthesizer or members[0]


class Brain:
    """Answers each inbound message, one at a time per channel, and never raises."""

    def __init__(
        self,
        *,
        characters: list[CharacterConfig],
        clients: dict[str, ModelClient],
        history: HistoryStore,
        classifier: Classifier | None = None,
        image_generator: ImageGenerator | None = None,
        history_config: HistoryConfig | None = None,
        mixture_config: MixtureConfig | None = None,
        attachments_config: AttachmentsConfig | None = None,
        images_config: ImagesConfig | None = None,
        extensions: list[str] | None = None,
        extension_settings: dict[str, dict[str, Any]] | None = None,
        gpu: CoolDown | None = None,
        memory_config: MemoryConfig | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.characters = characters
        members, synthesizer = split_roles(characters)
        self.clients = clients
        self.history = history
        self.gpu = gpu
        images_config = images_config or ImagesConfig()
        self.tracker = TokenTracker()
        for client in clients.values():  # every call's usage is filed under its channel
            client.usage_sinks.append(self.tracker.record)
        self.runner = CharacterRunner(history, clients)
        self.mixture = Mixture(members, synthesizer, self.runner, mixture_config or MixtureConfig())
        by_name = {c.name: c for c in characters}
        writer = ImagePromptWriter(
            self.runner,
            by_name.get(images_config.prompt_character, synthesizer),
            images_config.max_prompt_chars,
        )
        self.images = ImageService(image_generator, images_config, history, writer, synthesizer)
        self.telemetry = Telemetry(Sources(self.tracker, self._image_queue_length))
        self.hooks = Hooks(history)
        self.memory = open_memory(memory_config, embedder, history, clients, by_name, synthesizer)
        self.chat = ChatPipeline(
            characters=characters,
            runner=self.runner,
            mixture=self.mixture,
            history=history,
            hooks=self.hooks,
            classifier=classifier or TextOnly(),
            images=self.images if image_generator is not None else None,
            cool_down=self.cool_down,
            history_config=history_config or HistoryConfig(),
            attachments_config=attachments_config or AttachmentsConfig(),
            mixture_config=self.mixture.config,
            memory=self.memory,
        )
        self.commands = CommandRegistry()
        BuiltinCommands(
            registry=self.commands,
            characters=characters,
            runner=self.runner,
            chat=self.chat,
            images=self.images,
            history=history,
            tracker=self.tracker,
            gpu=gpu,
            images_config=images_config,
            memory=self.memory,
        ).register()
        context = ExtensionContext(
            members,
            synthesizer,
            self.runner,
            self.mixture,
            history,
            self.tracker,
            replies=self.chat,
            cool_down=self.cool_down,
        )
        self.hooks.extensions = load_extensions(
            extensions or [], extension_settings or {}, context, self.commands
        )
        self.channel_queue = ChannelQueue()
        self._closing = False
        self._in_flight: set[asyncio.Task[Any]] = set()

    @property
    def extensions(self) -> list[Extension]:
        """The extensions loaded and still enabled."""
        return self.hooks.extensions

    @property
    def closing(self) -> bool:
        """True once shutdown() began: no new messages are taken."""
        return self._closing

    # -- the boundary ---------------------------------------------------------------

    async def handle(self, message: Inbound, outbox: Outbox) -> None:
        """Answer one message. Never raises: failures become a message to the user."""
        kind = self.commands.kind_of(message.text, message.command)  # the metrics label
        await self._guarded(message, outbox, kind, self._dispatch)

    async def answer_proposal(self, message: Inbound, outbox: Outbox) -> None:
        """A platform's button or form answering an image proposal or a "should I draw
        that?" question: `message.text` is the answer.

        It goes to those two only, never to the command parser, so an edited prompt that
        starts with `/word` is a prompt, not a command.
        """

        async def answer(message: Inbound, outbox: Outbox) -> None:
            if not await self._answers_a_question(message, outbox):
                raise BadCommand(PROPOSAL_GONE)

        await self._guarded(message, outbox, "proposal", answer)

    async def message_changed(self, source: str, text: str | None) -> None:
        """A platform message was edited (`text`) or deleted (None) there: its stored turn
        follows, so the history and the memory never keep what its author took back."""
        try:
            if text is None:
                removed = await self.history.forget_source(source)
            else:  # a turn edited down to nothing goes too
                limit = self.chat.history_config.max_turn_chars
                removed = await self.history.rewrite_source(source, clean_text(text)[:limit])
            if self.memory is not None and removed:
                await self.memory.forget_turns(removed)
        except Exception:
            log.exception("could not apply an edit or deletion of %s", source)

    async def _answers_a_question(self, message: Inbound, outbox: Outbox) -> bool:
        """Whether the message answered an open image proposal or route question."""
        return await self.images.answer_proposal(
            message, outbox
        ) or await self.chat.answer_route_question(message, outbox)

    async def _dispatch(self, message: Inbound, outbox: Outbox) -> None:
        if message.command is None and await self._answers_a_question(message, outbox):
            return
        if message.command is not None:
            command: CommandCall | None = self.commands.check(message.command)
        else:
            command = self.commands.parse_text(message.text)
        if command is not None:
            await self.commands.run(command, message, outbox)
        else:
            await self.chat.answer(message, outbox)

    async def _guarded(
        self,
        message: Inbound,
        outbox: Outbox,
        kind: str,
        work: Callable[[Inbound, Outbox], Awaitable[None]],
    ) -> None:
        """Run `work` in the channel's turn (then what it left for after the turn), safely."""
        if self._closing:
            await self._tell_error(outbox, SHUTTING_DOWN, "shutdown")
            return
        current_channel.set(message.channel_key)
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        started = time.monotonic()
        try:
            async with self.channel_queue.turn(message.channel_key) as later:
                await work(message, outbox)
            for step in later:  # e.g. an image rendering: the channel's chat goes on meanwhile
                await step()
        except (BadCommand, FeatureUnavailable) as exc:
            log.info("%s: %s: %s", message.channel_key, type(exc).__name__, exc)
            await self._tell_error(outbox, exc.user_message, type(exc).__name__)
        except MombotError as exc:
            log.warning("%s: %s (%s)", message.channel_key, type(exc).__name__, exc)
            await self._tell_error(outbox, exc.user_message, type(exc).__name__)
        except Exception:
            log.exception("%s: unexpected failure while answering", message.channel_key)
            await self._tell_error(outbox, GENERIC_ERROR, "unexpected")
        except asyncio.CancelledError:
            if self._closing:  # cut off by shutdown(): say so (the question is stored already)
                log.info("%s: reply cancelled by shutdown", message.channel_key)
                await self._tell_error(outbox, STOPPED_MID_REPLY, "shutdown")
            raise
        finally:
            self._in_flight.discard(task)  # type: ignore[arg-type]
            self.telemetry.observe_reply(kind, time.monotonic() - started)

    async def _tell_error(self, outbox: Outbox, text: str, kind: str) -> None:
        self.telemetry.count_error(kind)
        try:
            await outbox.error(text)
        except Exception:
            log.exception("could not deliver an error message")

    # -- shared services --------------------------------------------------------------

    async def cool_down(self, outbox: Outbox) -> None:
        """Wait for a hot GPU before a model job, telling the user in one edited message."""
        if self.gpu is None:
            return
        status: list[Any] = []

        async def report(text: str) -> None:
            if status:
                await outbox.edit(status[0], text)
            else:
                status.append(await outbox.send(text))

        await self.gpu.cool_down(report)

    async def report_lost_image_jobs(
        self, platform: str, notify: Callable[[str, str], Awaitable[None]]
    ) -> int:
        """Tell the users whose image jobs died with an earlier run (see ImageService)."""
        return await self.images.report_lost_jobs(platform, notify)

    def _image_queue_length(self) -> int | None:
        generator = self.images.generator
        return None if generator is None else generator.length

    # -- stopping -----------------------------------------------------------------------

    async def shutdown(self, grace_s: float) -> None:
        """Stop taking messages; let replies in progress finish for `grace_s`, then cancel them.

        New messages get a "restarting" reply. A cancelled reply tells its user so, and is
        not stored, so the history holds only complete answers.
        """
        self._closing = True
        running = self._in_flight - {asyncio.current_task()}
        if running:
            await self._finish(running, grace_s)
        if self.memory is not None:  # what it had not indexed yet is caught up at next start
            await self.memory.aclose()

    async def _finish(self, running: set[asyncio.Task[Any]], grace_s: float) -> None:
        log.info("shutting down: waiting up to %.0f s for %d replies", grace_s, len(running))
        _, unfinished = await asyncio.wait(running, timeout=grace_s)
        # Cancel until they end: a library that swallows one cancel must not hold the stop up.
        while unfinished:
            for task in unfinished:
                task.cancel()
            _, unfinished = await asyncio.wait(unfinished, timeout=CANCEL_RETRY_S)
