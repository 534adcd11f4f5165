"""The Discord adapter: channels, DMs, threads, native slash commands, streamed edits, files.

Turns discord.py events and interactions into `Inbound` messages and implements
the brain's outbox on top of messages, replies and interaction follow-ups. Slash
commands are built from the brain's platform-free command definitions. Nothing the
bot writes can ping anyone: every send uses `AllowedMentions.none()`.
"""

from __future__ import annotations

import inspect
import io
import logging
import re
from typing import Any, Literal, Optional

import discord
from discord import app_commands

from adapters.common import SLOW_DOWN, RateLimiter
from adapters.config import DiscordConfig
from brain.brain import Brain
from brain.commands import Arg, CommandSpec
from brain.messages import Attachment, CommandCall, Inbound
from brain.outbox import Capabilities, MessageRef
from brain.redaction import register_secret

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
DISCORD_LIMIT = 2000
_MENTION = re.compile(r"<@!?(\d+)>")


def required_intents() -> discord.Intents:
    """Guild messages and DMs, with message content (a privileged intent to enable)."""
    intents = discord.Intents.default()
    intents.message_content = True
    return intents


REASONING_SPOILER_CHARS = 1500  # longer reasoning goes into a file
MODAL_TEXT_LIMIT = 4000  # Discord's longest text input
NOT_YOUR_PROPOSAL = "Only the person this image was proposed to can answer it."


class DiscordOutbox:
    """Replies in a channel: the first message answers the user's, the rest follow."""

    def __init__(self, client: MombotDiscordClient, channel: discord.abc.Messageable,
                 reply_to: discord.Message | None) -> None:
        config = client.config
        self._client = client
        self._channel = channel
        self._reply_to = reply_to
        self.capabilities = Capabilities(
            max_message_length=DISCORD_LIMIT, edit_interval_s=config.edit_interval_s,
            markdown=True, max_upload_bytes=10 * 1024 * 1024,
        )  # fmt: skip

    async def send(self, text: str) -> MessageRef:
        if self._reply_to is not None:
            reply_to, self._reply_to = self._reply_to, None
            return await reply_to.reply(text, mention_author=False, allowed_mentions=NO_PINGS)
        return await self._channel.send(text, allowed_mentions=NO_PINGS)

    async def edit(self, ref: MessageRef, text: str) -> None:
        await ref.edit(content=text, allowed_mentions=NO_PINGS)

    async def send_image(self, data: bytes, filename: str, caption: str) -> MessageRef:
        return await self._send_file(data, filename, caption)

    async def send_reasoning(self, text: str) -> None:
        """A spoiler (click to show); past REASONING_SPOILER_CHARS, a .txt file instead."""
        if len(text) <= REASONING_SPOILER_CHARS:
            await self.send(f"💭 ||{text.replace('||', '| |')}||")
        else:
            await self._send_file(text.encode(), "reasoning.txt", "💭 The model's reasoning:")

    async def _send_file(self, data: bytes, filename: str, caption: str) -> MessageRef:
        file = discord.File(io.BytesIO(data), filename=filename)
        return await self._channel.send(caption[:DISCORD_LIMIT], file=file, allowed_mentions=NO_PINGS)

    async def typing(self) -> None:
        await self._channel.typing()

    async def error(self, text: str) -> None:
        await self.send(f"⚠️ {text}")

    async def ask_to_confirm(self, ref: MessageRef, text: str, prompt: str, user_id: str,
                             timeout_s: float) -> None:
        """The proposal with Draw it / Edit prompt / Cancel buttons (see `ConfirmView`)."""
        view = ConfirmView(self._client, ref, prompt, int(user_id), timeout_s)
        await ref.edit(content=text, view=view, allowed_mentions=NO_PINGS)


class InteractionOutbox(DiscordOutbox):
    """Answers a deferred interaction: the first follow-up replaces "thinking…"."""

    def __init__(self, client: MombotDiscordClient, interaction: discord.Interaction) -> None:
        super().__init__(client, interaction.channel, None)  # type: ignore[arg-type]
        self._interaction = interaction

    async def send(self, text: str) -> MessageRef:
        return await self._interaction.followup.send(text, wait=True, allowed_mentions=NO_PINGS)

    async def _send_file(self, data: bytes, filename: str, caption: str) -> MessageRef:
        file = discord.File(io.BytesIO(data), filename=filename)
        return await self._interaction.followup.send(
            caption[:DISCORD_LIMIT], file=file, wait=True, allowed_mentions=NO_PINGS
        )

    async def typing(self) -> None:
        return None  # the deferred interaction already shows "thinking…"


class ConfirmView(discord.ui.View):
    """Buttons under an image prompt a character wrote: draw it, edit it, or cancel.

    Only the user the prompt was written for may press them. A press becomes that user's
    plain answer to the brain ("yes", "no", or the edited prompt), the same path as typing
    it; the buttons go away once one is used, or when the proposal expires.
    """

    def __init__(self, client: MombotDiscordClient, message: Any, prompt: str, user_id: int,
                 timeout_s: float) -> None:
        super().__init__(timeout=timeout_s)
        self.client = client
        self.message = message
        self.prompt = prompt
        self.user_id = user_id

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id == self.user_id:
            return True
        await interaction.response.send_message(NOT_YOUR_PROPOSAL, ephemeral=True)
        return False

    async def choose(self, interaction: discord.Interaction, answer: str) -> None:
        if not self.client.rate_limit.allow(str(interaction.user.id)):
            await interaction.response.send_message(SLOW_DOWN, ephemeral=True)
            return  # the buttons stay for a later press
        self.stop()
        await interaction.response.defer(thinking=True)  # within Discord's 3-second window
        await self.message.edit(view=None)  # answered: no second press
        await self.client.answer_proposal(interaction, answer)

    async def on_timeout(self) -> None:
        try:
            await self.message.edit(view=None)
        except discord.HTTPException as exc:  # deleted meanwhile: nothing to tidy
            log.debug("could not remove expired buttons: %s", exc)

    @discord.ui.button(label="Draw it", style=discord.ButtonStyle.success)
    async def draw(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await self.choose(interaction, "yes")

    @discord.ui.button(label="Edit prompt", style=discord.ButtonStyle.primary)
    async def edit_prompt(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        await interaction.response.send_modal(EditPromptModal(self))

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        await self.choose(interaction, "no")


class EditPromptModal(discord.ui.Modal, title="Edit the image prompt"):
    """A form holding the proposed prompt, limited as the brain limits prompts."""

    def __init__(self, proposal: ConfirmView) -> None:
        super().__init__(timeout=proposal.timeout)
        self.proposal = proposal
        limit = min(proposal.client.brain.images_config.max_prompt_chars, MODAL_TEXT_LIMIT)
        self.prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label="Prompt", custom_id="prompt", style=discord.TextStyle.paragraph,
            default=proposal.prompt[:limit],
            min_length=1, max_length=limit,
        )  # fmt: skip
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self.proposal.choose(interaction, self.prompt.value)


def slash_command(spec: CommandSpec, handler: Any) -> app_commands.Command[Any, ..., Any]:
    """A native slash command with typed, described, limited options from a `CommandSpec`."""
    parameters = [inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    annotation=discord.Interaction)]
    for arg in spec.args:
        annotation = _annotation(arg)
        default: Any = inspect.Parameter.empty
        if not arg.required:
            annotation, default = Optional[annotation], None
        parameters.append(inspect.Parameter(arg.name, inspect.Parameter.KEYWORD_ONLY,
                                            annotation=annotation, default=default))

    async def callback(interaction: discord.Interaction, **options: Any) -> None:
        await handler(spec, interaction, options)

    callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    described = app_commands.describe(**{a.name: a.help[:100] for a in spec.args})(callback)
    return app_commands.Command(name=spec.name, description=spec.help[:100], callback=described)


def _annotation(arg: Arg) -> Any:
    if arg.choices:
        return Literal[arg.choices]  # type: ignore[valid-type]
    if arg.type in (int, float) and (arg.min is not None or arg.max is not None):
        return app_commands.Range[arg.type, arg.min, arg.max]  # type: ignore[misc]
    if arg.type is str and arg.text:
        return app_commands.Range[str, 1, 2000]
    return arg.type


class MombotDiscordClient(discord.Client):
    """A discord.py client wired to the brain."""

    def __init__(self, brain: Brain, config: DiscordConfig) -> None:
        super().__init__(intents=required_intents(), allowed_mentions=NO_PINGS)
        self.brain = brain
        self.config = config
        self.tree = app_commands.CommandTree(self)
        self.rate_limit = RateLimiter(config.rate_limit_messages, config.rate_limit_window_s)
        self._reported_lost_jobs = False
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
            await self.brain.report_lost_image_jobs("discord", self._notify)

    async def _notify(self, channel_id: str, text: str) -> None:
        channel = self.get_channel(int(channel_id)) or await self.fetch_channel(int(channel_id))
        await channel.send(text, allowed_mentions=NO_PINGS)  # type: ignore[union-attr]

    # -- access ----------------------------------------------------------------------

    def _allowed(self, user: discord.abc.User, channel: Any, guild: discord.Guild | None) -> bool:
        cfg = self.config
        if guild is not None and cfg.guilds and guild.id not in cfg.guilds:
            return False
        if guild is not None and cfg.allowed_channels:
            ids = {getattr(channel, "id", None), getattr(channel, "parent_id", None)}
            if not ids & set(cfg.allowed_channels):
                return False
        if cfg.allowed_users or cfg.allowed_roles:
            roles = {r.id for r in getattr(user, "roles", [])}
            if user.id not in cfg.allowed_users and not roles & set(cfg.allowed_roles):
                return False
        return True

    def _is_admin(self, user: discord.abc.User, guild: discord.Guild | None) -> bool:
        if guild is None:  # a DM is the user's own conversation
            return True
        roles = {r.id for r in getattr(user, "roles", [])}
        return user.id in self.config.admin_users or bool(roles & set(self.config.admin_roles))

    # -- messages ----------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.user is None or message.author.id == self.user.id:
            return
        if not await self._addressed(message):
            return
        if not self._allowed(message.author, message.channel, message.guild):
            log.info("ignored message from %s: not allowed", message.author.id)
            return
        outbox = DiscordOutbox(self, message.channel, message)
        if not self.rate_limit.allow(str(message.author.id)):
            await outbox.send(SLOW_DOWN)
            return
        channel: discord.abc.Messageable = message.channel
        if (
            self.config.start_threads
            and isinstance(channel, discord.TextChannel)
            and channel.id not in self.config.answer_channels
        ):
            title = self._strip_mentions(message.content)[:90] or "mombot"
            channel = await message.create_thread(name=title)
            outbox = DiscordOutbox(self, channel, None)
        attachments, notes = await self._download(message.attachments)
        if not attachments:  # replying to a picture asks about it: the vision character sees it
            attachments, more = await self._download(await self._replied_images(message))
            notes += more
        if notes:
            await outbox.send("\n".join(notes))
            if not attachments and not self._strip_mentions(message.content):
                return
        inbound = Inbound(
            platform="discord",
            channel_id=str(channel.id),  # a thread has its own conversation
            author_id=str(message.author.id),
            author_name=message.author.display_name,
            text=self._strip_mentions(message.content),
            message_id=str(message.id),
            reply_to=str(message.reference.message_id) if message.reference else None,
            is_direct=message.guild is None,
            is_admin=self._is_admin(message.author, message.guild),
            attachments=tuple(attachments),
        )
        await self.brain.handle(inbound, outbox)

    async def _addressed(self, message: discord.Message) -> bool:
        """Mentioned, a DM, an answer-every-message channel, its own thread, or a reply to it."""
        assert self.user is not None
        channel = message.channel
        if message.guild is None or self.user in message.mentions:
            return True
        if channel.id in self.config.answer_channels:
            return True
        if isinstance(channel, discord.Thread) and channel.owner_id == self.user.id:
            return True
        if message.reference is not None and message.reference.message_id is not None:
            replied = message.reference.resolved
            if not isinstance(replied, discord.Message):
                try:
                    replied = await channel.fetch_message(message.reference.message_id)
                except discord.HTTPException:
                    return False
            return replied.author.id == self.user.id
        return False

    def _strip_mentions(self, content: str) -> str:
        assert self.user is not None
        own = str(self.user.id)
        return _MENTION.sub(lambda m: "" if m.group(1) == own else m.group(0), content).strip()

    async def _replied_images(self, message: discord.Message) -> list[discord.Attachment]:
        """The images of the message this one replies to (anyone's, the bot's own drawings too)."""
        reference = message.reference
        if reference is None or reference.message_id is None:
            return []
        replied = reference.resolved
        if not isinstance(replied, discord.Message):
            try:
                replied = await message.channel.fetch_message(reference.message_id)
            except discord.HTTPException:
                return []
        return [a for a in replied.attachments if (a.content_type or "").startswith("image/")]

    async def _download(
        self, items: list[discord.Attachment]
    ) -> tuple[list[Attachment], list[str]]:
        """Fetch attachments within the size limit; refuse bigger ones before downloading."""
        files, notes = [], []
        for item in items:
            if item.size > self.config.max_attachment_bytes:
                notes.append(
                    f"{item.filename[:80]} is too large ({item.size // 1024} KB; the limit is "
                    f"{self.config.max_attachment_bytes // 1024} KB), so I did not open it."
                )
                continue
            try:
                data = await item.read()
            except discord.HTTPException as exc:
                log.warning("could not download attachment %s: %s", item.id, exc)
                notes.append(f"I could not download {item.filename[:80]}; please try again.")
                continue
            files.append(Attachment(item.filename, item.content_type or "", data))
        return files, notes

    # -- slash commands ------------------------------------------------------------------

    async def _on_slash(self, spec: CommandSpec, interaction: discord.Interaction,
                        options: dict[str, Any]) -> None:
        user, guild = interaction.user, interaction.guild
        if not self._allowed(user, interaction.channel, guild):
            await interaction.response.send_message("I'm not allowed to answer you here.", ephemeral=True)
            return
        if not self.rate_limit.allow(str(user.id)):
            await interaction.response.send_message(SLOW_DOWN, ephemeral=True)
            return
        await interaction.response.defer(thinking=True)  # within Discord's 3-second window
        command = CommandCall(spec.name, options)
        inbound = self._interaction_inbound(interaction, f"/{spec.name}", command)
        await self.brain.handle(inbound, InteractionOutbox(self, interaction))

    async def answer_proposal(self, interaction: discord.Interaction, answer: str) -> None:
        """A deferred button press (or edit form) on a proposal, as the user's typed answer."""
        inbound = self._interaction_inbound(interaction, answer)
        await self.brain.handle(inbound, InteractionOutbox(self, interaction))

    def _interaction_inbound(self, interaction: discord.Interaction, text: str,
                             command: CommandCall | None = None) -> Inbound:
        """The message an interaction stands for: a slash command or a button's answer."""
        user, guild = interaction.user, interaction.guild
        return Inbound(
            platform="discord",
            channel_id=str(interaction.channel_id),
            author_id=str(user.id),
            author_name=user.display_name,
            text=text,
            is_direct=guild is None,
            is_admin=self._is_admin(user, guild),
            command=command,
        )


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
