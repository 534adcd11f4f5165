"""The built-in commands: each a `CommandSpec` and its handler, registered like extensions'.

`/think` is not here: it is the `deep_thinking` extension and registers the same way.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from brain.answering import NOTHING_TO_STOP
from brain.characters.runner import CharacterRunner
from brain.chat.pipeline import ChatPipeline
from brain.commands.registry import Arg, CommandHandler, CommandRegistry, CommandSpec
from brain.config import CharacterConfig, ImagesConfig
from brain.errors import BadCommand
from brain.history.store import HistoryStore
from brain.images.requests import MAX_SEED, CoolDown
from brain.images.service import ImageService
from brain.memory.memory import Memory
from brain.messages import Attachment, CommandCall, Inbound
from brain.models.usage import TokenTracker
from brain.outbox import Outbox
from brain.text import clean_text

NOTHING_TO_LOOK_AT = "I have no image of this conversation to look at: draw one first (/sd)."


class BuiltinCommands:
    """Handlers of /help, /reset, /characters, /stats, /stop, /debug, /look, /sd, and with
    the memory on, /memory and /forget (`brain.commands.conversation` has the ones that
    change how the channel's conversation goes)."""

    def __init__(
        self,
        *,
        registry: CommandRegistry,
        characters: list[CharacterConfig],
        runner: CharacterRunner,
        chat: ChatPipeline,
        images: ImageService,
        history: HistoryStore,
        tracker: TokenTracker,
        gpu: CoolDown | None,
        images_config: ImagesConfig,
        memory: Memory | None = None,
    ) -> None:
        self.registry = registry
        self.characters = characters
        self.runner = runner
        self.chat = chat
        self.images = images
        self.history = history
        self.tracker = tracker
        self.gpu = gpu
        self.images_config = images_config
        self.memory = memory

    def register(self) -> None:
        table = self._table()
        if self.memory is not None:
            table += self._memory_table()
        for spec, handler in table:
            self.registry.register(spec, handler)

    def _memory_table(self) -> list[tuple[CommandSpec, CommandHandler]]:
        forget_args = (
            Arg(
                "text",
                "Forget every message here that contains it.",
                required=True,
                text=True,
                prose=True,
            ),
        )
        return [
            (CommandSpec("memory", "What I remember of this channel."), self.show_memory),
            (
                CommandSpec(
                    "forget",
                    "Forget what was said here about something.",
                    forget_args,
                    admin=True,  # shared channels: admins; a DM's own user is its admin
                ),
                self.forget,
            ),
        ]

    def _table(self) -> list[tuple[CommandSpec, CommandHandler]]:
        sd_args = (
            Arg(
                "prompt",
                "What to draw, or: you, me, scene, last (from this conversation).",
                required=True,
                text=True,
            ),
            Arg("negative", "What to keep out of the image."),
            Arg("steps", "Denoising steps.", type=int, min=1, max=self.images_config.max_steps),
            Arg("size", "WIDTHxHEIGHT, multiples of 8, e.g. 512x512.", metavar="WxH"),
            Arg("seed", "Seed for a repeatable image.", type=int, min=0, max=MAX_SEED),
        )
        return [
            (CommandSpec("help", "Show what I can do."), self.help),
            (CommandSpec("reset", "Forget this channel's conversation.", admin=True), self.reset),
            (CommandSpec("characters", "List the characters who answer here."), self.list_cast),
            (CommandSpec("stats", "Token use and speed per model in this channel."), self.stats),
            (CommandSpec("stop", "Stop the reply being written here."), self.stop),
            (
                CommandSpec(
                    "look",
                    "Ask about the last image I drew here; the vision character looks at it.",
                    (Arg("question", "What you want to know about it.", text=True, prose=True),),
                ),
                self.look,
            ),
            (
                CommandSpec(
                    "debug",
                    "Show (on) or hide (off) each character's proposal and timing here.",
                    (Arg("state", "on or off", required=True, text=True, choices=("on", "off")),),
                    admin=True,  # it changes how the bot behaves for everyone in the channel
                ),
                self.debug,
            ),
            (
                CommandSpec("sd", "Draw an image with Stable Diffusion.", sd_args),
                self.images.sd_command,
            ),
        ]

    async def help(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        await outbox.send(self.registry.help_text())

    async def reset(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        removed = await self.history.clear(message.channel_key)  # its memory goes with it
        if self.memory is not None:
            self.memory.forget_channel(message.channel_key)
        await outbox.send(f"Forgot this conversation ({removed} messages).")

    async def show_memory(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        assert self.memory is not None
        summary, count = await self.memory.status(message.channel_key)
        await outbox.send(
            f"I can search {count} messages people sent in this channel (and nothing from "
            "anywhere else).\n"
            + (
                f"Summary of what fell out of my window: {summary}"
                if summary
                else "No summary yet."
            )
            + "\n`/forget <text>` removes messages that contain it; `/reset` forgets everything."
        )

    async def forget(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        assert self.memory is not None
        text = clean_text(call.args["text"]).strip()
        if len(text) < 3:
            raise BadCommand("Tell me a little more of what to forget (3 characters at least).")
        removed, summary = await self.memory.forget(message.channel_key, text)
        note = " I dropped the summary too, and will write it again." if summary else ""
        await outbox.send(f"Forgot {removed} message(s) containing “{text}”.{note}")

    async def list_cast(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        mixture = self.chat.mixture
        lines = []
        for c in self.characters:
            roles = ["member"] if c in mixture.members else []
            if c is mixture.synthesizer and len(mixture.members) > 1:
                roles.append("synthesizer")
            sees = await self.runner.can_see(c)
            flags = (" · vision" if sees else "") + ("" if c.enabled else " · disabled")
            role = ", ".join(roles) or c.role
            source = f" · card {c.card}" if c.card else ""
            books = len(c.lore.entries) if c.lore else 0
            attached = f" (with {', '.join(c.lorebooks)})" if c.lorebooks else ""
            lore = f" · lorebook entries: {books}{attached}"
            line = f"**{c.name}** ({role}{flags}): {c.model} on {c.endpoint}{source}"
            lines.append(line + (lore if books else ""))
        await outbox.send("Characters:\n" + "\n".join(lines))

    async def stop(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        """Adapters stop a reply at once (`adapters.intake`): a /stop that waited its turn
        like any message finds nothing left to stop."""
        await outbox.send(NOTHING_TO_STOP)

    async def stats(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        parts = [self.tracker.format_channel(message.channel_key)]
        if self.gpu is not None:  # NVML reads block: off the event loop
            parts.append(await asyncio.to_thread(self.gpu.describe))
        generator = self.images.generator
        if generator is not None:
            parts.append(f"Image queue: {generator.length} request(s).")
        await outbox.send("\n\n".join(parts))

    async def debug(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        on = call.args["state"] == "on"
        self.chat.debug[message.channel_key] = on
        await outbox.send(f"Debug view {'on' if on else 'off'} for this channel.")

    async def look(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        """`/look`: the last image drawn here goes to the vision character like an attachment.

        Images are kept out of the text models' context; this is the one way back to one.
        The vision character describes it with the question in mind and the mixture answers,
        exactly as for an image the user attached.
        """
        question = clean_text(call.args.get("question") or "")
        image = await self.history.latest_image(message.channel_key)
        if image is None:
            raise BadCommand(NOTHING_TO_LOOK_AT)
        attachment = Attachment(f"image-{image.turn_id}.png", "image/png", image.png)
        text = question or f"Look at the image you drew: {image.description}"
        looking = replace(message, text=text, attachments=(attachment,), command=None)
        await self.chat.answer(looking, outbox)
