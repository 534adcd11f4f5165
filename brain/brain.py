"""The brain: takes what happens in a channel and answers through an outbox.

`Brain` is the boundary and nothing more: it builds the parts, events enter through `arrive`
/ `change` (or `handle` for a message that needs no preparation), each channel's owner
applies them in arrival order (`brain.channels`), `brain.answering` runs the dispatcher's
path for each (an open question's answer, a command, the chat) and turns failures into
words, and the brain stops cleanly. What each path does lives in its own module:
`brain.chat.pipeline`, `brain.images.service`, `brain.commands.builtin`,
`brain.commands.thinking`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from brain.answering import Answering
from brain.channels.dispatcher import Dispatcher
from brain.channels.events import ButtonAnswer, Deletion, Edit, NewMessage
from brain.channels.registry import Channels, Ticket
from brain.channels.stored_changes import StoredChanges
from brain.characters.lorebook import Lore
from brain.characters.runner import CharacterRunner
from brain.chat.mixture import Mixture
from brain.chat.pipeline import ChatPipeline
from brain.commands.builtin import BuiltinCommands
from brain.commands.conversation import ConversationCommands
from brain.commands.registry import CommandRegistry
from brain.config import (
    AttachmentsConfig,
    ChannelsConfig,
    CharacterConfig,
    HistoryConfig,
    ImagesConfig,
    MemoryConfig,
    MixtureConfig,
)
from brain.extensions import Extension, ExtensionContext, Hooks, load_extensions
from brain.history.personas import Personas
from brain.history.store import HistoryStore
from brain.images.jobs import ImageJobs
from brain.images.requests import CoolDown, ImageGenerator, ImagePromptWriter, cool_down_in_chat
from brain.images.service import ImageService
from brain.memory.memory import open_memory
from brain.messages import Inbound
from brain.models.client import ModelClient
from brain.models.embedder import Embedder
from brain.models.usage import TokenTracker
from brain.outbox import Outbox
from brain.questions import OpenQuestions
from brain.routing.router import Classifier, TextOnly
from brain.telemetry import Sources, Telemetry

log = logging.getLogger(__name__)

CANCEL_RETRY_S = 2.0  # shutdown: cancel again after this long


def split_roles(characters: list[CharacterConfig]) -> tuple[list[CharacterConfig], CharacterConfig]:
    """(members, synthesizer): the synthesizer is the one so marked, else the first member."""
    active = [c for c in characters if c.enabled]
    if not active:
        raise ValueError("the brain needs at least one enabled character")
    members = [c for c in active if c.role == "member"]
    synthesizer = next((c for c in active if c.role == "synthesizer"), None)
    if synthesizer is None:
        return members, members[0]
    return members or [synthesizer], synthesizer


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
        channels_config: ChannelsConfig | None = None,
        image_jobs: ImageJobs | None = None,
        channel_lore: dict[str, Lore] | None = None,
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
        self.runner = CharacterRunner(history, clients, channel_lore)
        self.mixture = Mixture(members, synthesizer, self.runner, mixture_config or MixtureConfig())
        by_name = {c.name: c for c in characters}
        writer = ImagePromptWriter(
            self.runner,
            by_name.get(images_config.prompt_character, synthesizer),
            images_config.max_prompt_chars,
        )
        self.questions: OpenQuestions[object] = OpenQuestions()  # what users are asked
        self.personas = Personas(history.engine)  # who each user says they are (/persona)
        self.images = ImageService(
            image_generator,
            images_config,
            history,
            writer,
            synthesizer,
            self.questions,
            image_jobs or ImageJobs(history.engine, instance="local"),
            self.personas,
        )
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
            questions=self.questions,
            memory=self.memory,
            personas=self.personas,
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
        ConversationCommands(self.commands, self.chat, self.personas).register()
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
        dispatcher = Dispatcher(self.commands, self.chat, self.images, self.questions)
        self.answering = Answering(dispatcher, self.commands, self.telemetry, lambda: self.closing)
        channels_config = channels_config or ChannelsConfig()
        max_turn_chars = self.chat.history_config.max_turn_chars
        stored = StoredChanges(history, self.memory, max_turn_chars)
        self.channels = Channels(self.answering, stored.apply, channels_config.max_waiting)
        self._closing = False

    @property
    def extensions(self) -> list[Extension]:
        """The extensions loaded and still enabled."""
        return self.hooks.extensions

    @property
    def closing(self) -> bool:
        """True once shutdown() began: no new messages are taken."""
        return self._closing

    # -- the way in ---------------------------------------------------------------------

    def arrive(self, channel_key: str, source: str = "") -> Ticket:
        """Stamp a message of `channel_key` (platform message `source`) in its channel's
        order. Call it in the platform's callback before anything is awaited, then
        `deliver` a `NewMessage` or `ButtonAnswer` once its files are read, or drop it."""
        return self.channels.arrive(channel_key, source)

    def stop(self, channel_key: str) -> bool:
        """Stop the reply being written in `channel_key` where it is (a platform's stop
        button or command); False when none is being written."""
        return self.channels.stop(channel_key)

    def change(self, source: str) -> Ticket:
        """Stamp an edit or deletion of platform message `source`, as `arrive` does."""
        return self.channels.change(source)

    async def handle(self, message: Inbound, outbox: Outbox) -> None:
        """Answer one message that needs no preparation; returns once it is answered.

        Never raises: failures become a message to the user."""
        with self.arrive(message.channel_key, message.source) as ticket:
            await ticket.deliver(NewMessage(message, outbox))

    async def answer_proposal(self, message: Inbound, outbox: Outbox) -> None:
        """A platform's button or form answering an image proposal or a "should I draw
        that?" question: `message.text` is the answer (see `brain.channels.dispatcher`)."""
        with self.arrive(message.channel_key) as ticket:
            await ticket.deliver(ButtonAnswer(message, outbox))

    async def message_changed(
        self, source: str, text: str | None, ticket: Ticket | None = None
    ) -> None:
        """Platform message `source` was edited (`text`) or deleted (None) there: a waiting
        message takes the new text or is never answered; a stored turn follows. Stamped
        now, unless `ticket` was stamped for it earlier (see `change`)."""
        with ticket or self.change(source) as stamped:
            await stamped.deliver(Deletion(source) if text is None else Edit(source, text))

    # -- shared services --------------------------------------------------------------

    async def cool_down(self, outbox: Outbox) -> None:
        """Wait for a hot GPU before a model job, telling the user in one edited message."""
        await cool_down_in_chat(self.gpu, outbox)

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
        await self._finish(grace_s)
        if self.memory is not None:  # what it had not indexed yet is caught up at next start
            await self.memory.aclose()

    def _running(self) -> set[asyncio.Task[Any]]:
        """The answers (and image renderings) in progress, but not the caller."""
        return set(self.channels.tasks) - {asyncio.current_task()}

    async def _finish(self, grace_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        if running := self._running():
            log.info("shutting down: waiting up to %.0f s for %d replies", grace_s, len(running))
        while (running := self._running()) and (left := deadline - loop.time()) > 0:
            await asyncio.wait(running, timeout=left)  # messages still waiting are answered too
        # Cancel until they end: a library that swallows one cancel must not hold the stop up.
        while running := self._running():
            for task in running:
                task.cancel()
            await asyncio.wait(running, timeout=CANCEL_RETRY_S)
