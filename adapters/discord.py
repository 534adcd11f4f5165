"""The Discord adapter: channels, DMs, threads, native slash commands, streamed edits, files.

Platform I/O only: reads discord.py events and interactions into the shared intake's
`Arrival` (adapters/intake.py applies the access rules, rate limit and attachment limits)
and implements the brain's outbox on top of messages, replies and interaction follow-ups. Slash
commands are built from the brain's platform-free command definitions. Nothing the
bot writes can ping anyone: every send uses `AllowedMentions.none()`.
"""

from __future__ import annotations

import inspect
import logging
import re
from dataclasses import replace
from typing import Any, Literal, Optional

import discord
from discord import app_commands

from adapters.common import SLOW_DOWN, RateLimiter
from adapters.config import DiscordConfig
from adapters.discord_outbox import NO_PINGS, DiscordOutbox, InteractionOutbox
from adapters.discord_webhooks import ChannelWebhooks
from adapters.intake import AccessRules, Arrival, DownloadFailed, Intake, RemoteFile
from brain.brain import Brain
from brain.channels.events import ButtonAnswer, NewMessage
from brain.channels.registry import Ticket
from brain.commands.registry import Arg, CommandSpec
from brain.messages import CommandCall
from brain.redaction import register_secret

log = logging.getLogger(__name__)

_MENTION = re.compile(r"<@!?(\d+)>")
NO_THREAD = "I could not start a thread for this here, so I answer in the channel."


def required_intents() -> discord.Intents:
    """Guild messages and DMs, with message content (a privileged intent to enable)."""
    intents = discord.Intents.default()
    intents.message_content = True
    return intents


def slash_command(spec: CommandSpec, handler: Any) -> app_commands.Command[Any, ..., Any]:
    """A native slash command with typed, described, limited options from a `CommandSpec`."""
    parameters = [
        inspect.Parameter(
            "interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction
        )
    ]
    for arg in spec.args:
        annotation = _annotation(arg)
        default: Any = inspect.Parameter.empty
        if not arg.required:
            annotation, default = Optional[annotation], None  # noqa: UP045 (discord.py reads it)
        parameters.append(
            inspect.Parameter(
                arg.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
            )
        )

    async def callback(interaction: discord.Interaction, **options: Any) -> None:
        await handler(spec, interaction, options)

    # discord.py reads a command's options from its callback's signature, made here from
    # the spec; a function's `__signature__` is honoured by inspect but not declared.
    callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    described = app_commands.describe(**{a.name: a.help[:100] for a in spec.args})(callback)
    return app_commands.Command(name=spec.name, description=spec.help[:100], callback=described)


def _annotation(arg: Arg) -> Any:
    if arg.choices:
        return Literal[arg.choices]
    if arg.type in (int, float) and (arg.min is not None or arg.max is not None):
        return app_commands.Range[arg.type, arg.min, arg.max]
    if arg.type is str and arg.text:
        return app_commands.Range[str, 1, 2000]
    return arg.type


class MombotDiscordClient(discord.Client):
    """A discord.py client wired to the brain through the shared intake."""

    def __init__(self, brain: Brain, config: DiscordConfig) -> None:
        super().__init__(intents=required_intents(), allowed_mentions=NO_PINGS)
        self.brain = brain
        self.config = config
        self.tree = app_commands.CommandTree(self)
        self.rate_limit = RateLimiter(config.rate_limit_messages, config.rate_limit_window_s)
        self.intake = Intake(
            brain,
            "discord",
            lambda: access_rules(config),
            self.rate_limit,
            config.max_attachment_bytes,
        )
        self._reported_lost_jobs = False
        # Replies under each character's name and picture (`discord.webhooks`).
        avatars = {c.name: c.avatar for c in brain.characters if c.avatar}
        self.webhooks = ChannelWebhooks(avatars) if config.webhooks else None
        for spec in brain.commands.specs.values():
            self.tree.add_command(slash_command(spec, self._on_slash))

    async def setup_hook(self) -> None:
        """Sync slash commands: to listed servers at once, else globally."""
        if self.config.guilds:
            for guild_id in self.config.guilds:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()
        log.info("slash commands synced (%s)", "listed servers" if self.config.guilds else "global")

    async def on_ready(self) -> None:
        """Runs after every (re)connect; the lost-image report only after the first."""
        if not self._reported_lost_jobs:
            self._reported_lost_jobs = True
            await self.intake.report_lost_jobs(self._notify)

    async def _notify(self, channel_id: str, text: str) -> None:
        channel = self.get_channel(int(channel_id)) or await self.fetch_channel(int(channel_id))
        if not isinstance(channel, discord.abc.Messageable):  # a category or forum: no messages
            log.warning("discord: cannot write to channel %s", channel_id)
            return
        await channel.send(text, allowed_mentions=NO_PINGS)

    # -- messages ----------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.user is None or message.author.id == self.user.id:
            return
        # Its place in the channel's order, before anything is awaited.
        with self.intake.arrive(str(message.channel.id), str(message.id)) as ticket:
            replied = await self._replied(message)  # fetched once, for addressing and its images
            if not self._addressed(message, replied):
                return
            arrival = Arrival(
                platform="discord",
                channel_id=str(message.channel.id),
                author_id=str(message.author.id),
                author_name=message.author.display_name,
                text=self._strip_mentions(message.content),
                direct=message.guild is None,
                author_groups=_roles(message.author),
                places=_places(message.channel),
                realm=str(message.guild.id) if message.guild is not None else None,
                files=tuple(_remote(item) for item in message.attachments),
                replied_files=tuple(_remote(item) for item in _images_of(replied)),
                message_id=str(message.id),
            )
            outbox = DiscordOutbox(self, message.channel, message)
            if not await self.intake.admit(arrival, outbox):
                return
            channel = message.channel
            if (
                self.config.start_threads
                and isinstance(channel, discord.TextChannel)
                and channel.id not in self.config.answer_channels
            ):  # a thread has its own conversation, new: nothing in it to keep in order with
                try:
                    thread = await message.create_thread(name=arrival.text[:90] or "mombot")
                except discord.HTTPException as exc:  # no permission, rate limited: stay here
                    log.warning("discord: could not start a thread in %s: %s", channel.id, exc)
                    await outbox.send(NO_THREAD)
                else:
                    ticket.drop()
                    arrival = replace(arrival, channel_id=str(thread.id))
                    outbox = DiscordOutbox(self, thread, None)
                    ticket = self.intake.arrive(arrival.channel_id, arrival.message_id)
            try:
                await self.intake.deliver(arrival, outbox, ticket)
            finally:
                await outbox.finish()  # its replies' ⏹ buttons go

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """An edited message: a stored turn of it takes the new text (raw: cached or not)."""
        author = payload.data.get("author") or {}
        content = payload.data.get("content")
        if self.user is None or str(author.get("id")) == str(self.user.id):
            return  # its own streamed edits
        if isinstance(content, str):
            await self.intake.changed(str(payload.message_id), self._strip_mentions(content))

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """A deleted message is forgotten: its stored turn and its memory."""
        await self.intake.changed(str(payload.message_id), None)

    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        for message_id in payload.message_ids:
            await self.intake.changed(str(message_id), None)

    def _addressed(self, message: discord.Message, replied: discord.Message | None) -> bool:
        """Mentioned, a DM, an answer-every-message channel, its own thread, or a reply to it."""
        assert self.user is not None
        channel = message.channel
        if message.guild is None or self.user in message.mentions:
            return True
        if channel.id in self.config.answer_channels:
            return True
        if isinstance(channel, discord.Thread) and channel.owner_id == self.user.id:
            return True
        return replied is not None and replied.author.id == self.user.id

    def _strip_mentions(self, content: str) -> str:
        assert self.user is not None
        own = str(self.user.id)
        return _MENTION.sub(lambda m: "" if m.group(1) == own else m.group(0), content).strip()

    @staticmethod
    async def _replied(message: discord.Message) -> discord.Message | None:
        """The message this one replies to (as sent along, else fetched); None if none or gone."""
        reference = message.reference
        if reference is None or reference.message_id is None:
            return None
        if isinstance(reference.resolved, discord.Message):
            return reference.resolved
        try:
            return await message.channel.fetch_message(reference.message_id)
        except discord.HTTPException:
            return None

    # -- slash commands and buttons -------------------------------------------------------

    async def _on_slash(
        self, spec: CommandSpec, interaction: discord.Interaction, options: dict[str, Any]
    ) -> None:
        arrival = _interaction_arrival(
            interaction, f"/{spec.name}", CommandCall(spec.name, options)
        )
        if not self.intake.rules.allows(arrival):
            await interaction.response.send_message(
                "I'm not allowed to answer you here.", ephemeral=True
            )
            return
        if not self.rate_limit.allow(arrival.author_id):
            await interaction.response.send_message(SLOW_DOWN, ephemeral=True)
            return
        with self.intake.arrive(arrival.channel_id) as ticket:
            await interaction.response.defer(thinking=True)  # within Discord's 3-second window
            outbox = InteractionOutbox(self, interaction)
            if await self.intake.stop_if_asked(arrival, outbox):
                return  # /stop does not wait behind the reply it stops
            try:
                await ticket.deliver(NewMessage(self.intake.inbound(arrival), outbox))
            finally:
                await outbox.finish()

    async def answer_proposal(
        self, interaction: discord.Interaction, answer: str, ticket: Ticket
    ) -> None:
        """A deferred button press (or edit form): the answer goes to the proposal itself."""
        inbound = self.intake.inbound(_interaction_arrival(interaction, answer))
        outbox = InteractionOutbox(self, interaction)
        try:
            await ticket.deliver(ButtonAnswer(inbound, outbox))
        finally:
            await outbox.finish()


def access_rules(config: DiscordConfig) -> AccessRules:
    ids = lambda values: frozenset(str(v) for v in values)  # noqa: E731
    return AccessRules(
        allowed_users=ids(config.allowed_users),
        allowed_groups=ids(config.allowed_roles),
        allowed_places=ids(config.allowed_channels),
        allowed_realms=ids(config.guilds),
        admin_users=ids(config.admin_users),
        admin_groups=ids(config.admin_roles),
    )


def _roles(user: discord.abc.User) -> frozenset[str]:
    return frozenset(str(role.id) for role in getattr(user, "roles", []))


def _places(channel: Any) -> frozenset[str]:
    """The channel and, for a thread, its parent: an allowed channel's threads are allowed."""
    ids = (getattr(channel, "id", None), getattr(channel, "parent_id", None))
    return frozenset(str(i) for i in ids if i is not None)


def _interaction_arrival(
    interaction: discord.Interaction, text: str, command: CommandCall | None = None
) -> Arrival:
    """What a slash command or a button press stands for."""
    user, guild = interaction.user, interaction.guild
    return Arrival(
        platform="discord",
        channel_id=str(interaction.channel_id),
        author_id=str(user.id),
        author_name=user.display_name,
        text=text,
        direct=guild is None,
        author_groups=_roles(user),
        places=_places(interaction.channel),
        realm=str(guild.id) if guild is not None else None,
        command=command,
    )


def _images_of(message: discord.Message | None) -> list[discord.Attachment]:
    """A replied-to message's images (anyone's, the bot's own drawings too)."""
    if message is None:
        return []
    return [a for a in message.attachments if (a.content_type or "").startswith("image/")]


def _remote(item: discord.Attachment) -> RemoteFile:
    """An attachment as the intake reads it: Discord always declares the size."""

    async def read(limit: int) -> bytes | None:
        try:
            data = await item.read()
        except discord.HTTPException as exc:
            raise DownloadFailed(f"attachment {item.id}: {exc}") from exc
        return data if len(data) <= limit else None

    return RemoteFile(item.filename, item.content_type or "", item.size, read)


class DiscordAdapter:
    """Runs the Discord client until it is stopped."""

    def __init__(self, brain: Brain, config: DiscordConfig, token: str) -> None:
        self.client = MombotDiscordClient(brain, config)
        self._token = token
        register_secret(token)

    async def run(self) -> None:
        async with self.client:
            await self.client.start(self._token)

    async def close(self) -> None:
        await self.client.close()
