"""What the Discord adapter sends: replies, edits, files, spoilers, and proposal buttons.

`DiscordOutbox` implements the brain's outbox on messages and replies, `InteractionOutbox`
on a slash command's follow-ups; `StopButton` is the ⏹ under a reply being written;
`ConfirmView` and `EditPromptModal` are the buttons and
form under an image prompt a character proposed, `DrawOrAnswerView` the two buttons of the
router's "should I draw that?". Nothing sent can ping anyone.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import discord

from adapters.common import SLOW_DOWN
from brain.answering import NOTHING_TO_STOP
from brain.outbox import Capabilities

if TYPE_CHECKING:
    from adapters.discord import MombotDiscordClient

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
DISCORD_LIMIT = 2000
REASONING_SPOILER_CHARS = 1500  # longer reasoning goes into a file
MODAL_TEXT_LIMIT = 4000  # Discord's longest text input
NOT_YOUR_PROPOSAL = "Only the person this was asked of can answer it."


class DiscordOutbox:
    """Replies in a channel: every message is a reply to the user's (a message reference).

    In a busy channel a note, the answer after it, a `/think` result or a "stopped" notice
    would otherwise float unlinked from the question they are about.
    """

    def __init__(
        self,
        client: MombotDiscordClient,
        channel: discord.abc.Messageable,
        reply_to: discord.Message | None,
    ) -> None:
        config = client.config
        self._client = client
        self._channel = channel
        self._question = reply_to  # what every message sent here replies to
        self._channel_key = f"discord:{getattr(channel, 'id', '')}"  # as the intake names it
        self._stoppable: list[discord.Message] = []  # replies showing ⏹ while written
        self.capabilities = Capabilities(
            max_message_length=DISCORD_LIMIT,
            edit_interval_s=config.edit_interval_s,
        )

    async def send(self, text: str) -> discord.Message:
        return await self._post(text)

    async def _post(self, text: str, **extra: Any) -> discord.Message:
        if self._question is not None:
            return await self._question.reply(
                text, mention_author=False, allowed_mentions=NO_PINGS, **extra
            )
        return await self._channel.send(text, allowed_mentions=NO_PINGS, **extra)

    async def send_as(self, author: str, text: str) -> discord.Message:
        """A reply a character is writing (`brain.outbox.AuthoredOutbox`): through the
        channel's webhook under its name and picture (`adapters.discord_webhooks`) where that
        is on, else with a ⏹ button under it while it is written (`StopButton`; `finish`
        takes it away)."""
        webhooks = self._client.webhooks
        if webhooks is not None:
            posted = await webhooks.send(self._channel, author, text, allowed_mentions=NO_PINGS)
            if posted is not None:
                return posted
        message = await self._post(text, view=StopButton(self._client, self._channel_key))
        self._stoppable.append(message)
        return message

    async def finish(self) -> None:
        """The message is answered: the ⏹ buttons go from the replies that had them."""
        for message in self._stoppable:
            try:
                await message.edit(view=None, allowed_mentions=NO_PINGS)
            except discord.HTTPException as exc:  # deleted meanwhile: nothing to tidy
                log.debug("could not remove a stop button: %s", exc)
        self._stoppable.clear()

    async def edit(self, ref: discord.Message, text: str) -> None:
        await ref.edit(content=text, allowed_mentions=NO_PINGS)

    async def send_image(self, data: bytes, filename: str, caption: str) -> discord.Message:
        """An image replies to the question it answers, however late it arrives."""
        if self._question is None:
            return await self._send_file(data, filename, caption)
        file = discord.File(io.BytesIO(data), filename=filename)
        return await self._question.reply(
            caption[:DISCORD_LIMIT], file=file, mention_author=False, allowed_mentions=NO_PINGS
        )

    async def send_reasoning(self, text: str) -> None:
        """A spoiler (click to show); past REASONING_SPOILER_CHARS, a .txt file instead."""
        if len(text) <= REASONING_SPOILER_CHARS:
            await self.send(f"💭 ||{text.replace('||', '| |')}||")
        else:
            await self._send_file(text.encode(), "reasoning.txt", "💭 The model's reasoning:")

    async def _send_file(self, data: bytes, filename: str, caption: str) -> discord.Message:
        file = discord.File(io.BytesIO(data), filename=filename)
        return await self._channel.send(
            caption[:DISCORD_LIMIT], file=file, allowed_mentions=NO_PINGS
        )

    async def typing(self) -> None:
        await self._channel.typing()

    async def error(self, text: str) -> None:
        await self.send(f"⚠️ {text}")

    async def ask_to_confirm(
        self, ref: discord.Message, text: str, prompt: str, user_id: str, timeout_s: float
    ) -> None:
        """The proposal with Draw it / Edit prompt / Cancel buttons (see `ConfirmView`)."""
        view = ConfirmView(self._client, ref, prompt, int(user_id), timeout_s)
        await ref.edit(content=text, view=view, allowed_mentions=NO_PINGS)

    async def ask_draw_or_answer(
        self, text: str, user_id: str, timeout_s: float
    ) -> discord.Message:
        """The router's question with Draw it / Just answer buttons (see `DrawOrAnswerView`)."""
        ref = await self.send(text)
        view = DrawOrAnswerView(self._client, ref, int(user_id), timeout_s)
        await ref.edit(content=text, view=view, allowed_mentions=NO_PINGS)
        return ref


class InteractionOutbox(DiscordOutbox):
    """Answers a deferred interaction: the first follow-up replaces "thinking…"."""

    def __init__(self, client: MombotDiscordClient, interaction: discord.Interaction) -> None:
        # A slash command's channel is one it can answer in; discord.py types it as any channel.
        super().__init__(client, interaction.channel, None)  # type: ignore[arg-type]
        self._interaction = interaction

    async def _post(self, text: str, **extra: Any) -> discord.Message:
        return await self._interaction.followup.send(
            text, wait=True, allowed_mentions=NO_PINGS, **extra
        )

    async def _send_file(self, data: bytes, filename: str, caption: str) -> discord.Message:
        file = discord.File(io.BytesIO(data), filename=filename)
        return await self._interaction.followup.send(
            caption[:DISCORD_LIMIT], file=file, wait=True, allowed_mentions=NO_PINGS
        )

    async def typing(self) -> None:
        return None  # the deferred interaction already shows "thinking…"


class StopButton(discord.ui.View):
    """⏹ under a reply being written: stops it where it is, as `/stop` does (anyone who
    can write in the channel may stop it there, as with `/stop`)."""

    def __init__(self, client: MombotDiscordClient, channel_key: str) -> None:
        super().__init__(timeout=None)  # it goes when the reply ends (`DiscordOutbox.finish`)
        self.client = client
        self.channel_key = channel_key

    @discord.ui.button(label="Stop", emoji="⏹", style=discord.ButtonStyle.secondary)
    async def stop_reply(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        if self.client.brain.stop(self.channel_key):
            await interaction.response.defer()  # the reply says "Stopped" itself
        else:
            await interaction.response.send_message(NOTHING_TO_STOP, ephemeral=True)


class OneUserButtons(discord.ui.View):
    """Buttons only one user may press; a press is that user's typed answer, given to the
    brain directly (never to the command parser). They go away once one is used, or when
    they expire."""

    def __init__(
        self, client: MombotDiscordClient, message: Any, user_id: int, timeout_s: float
    ) -> None:
        super().__init__(timeout=timeout_s)
        self.client = client
        self.message = message
        self.user_id = user_id

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id == self.user_id:
            return True
        await interaction.response.send_message(NOT_YOUR_PROPOSAL, ephemeral=True)
        return False

    async def choose(self, interaction: discord.Interaction, answer: str) -> None:
        # Its place in the channel's order, before anything is awaited.
        with self.client.intake.arrive(str(interaction.channel_id)) as ticket:
            if not self.client.rate_limit.allow(str(interaction.user.id)):
                await interaction.response.send_message(SLOW_DOWN, ephemeral=True)
                return  # the buttons stay for a later press
            self.stop()
            await interaction.response.defer(thinking=True)  # within Discord's 3-second window
            await self.message.edit(view=None)  # answered: no second press
            await self.client.answer_proposal(interaction, answer, ticket)

    async def on_timeout(self) -> None:
        try:
            await self.message.edit(view=None)
        except discord.HTTPException as exc:  # deleted meanwhile: nothing to tidy
            log.debug("could not remove expired buttons: %s", exc)


class DrawItButtons(OneUserButtons):
    """A first button, "Draw it": the user's "yes"."""

    @discord.ui.button(label="Draw it", style=discord.ButtonStyle.success)
    async def draw(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await self.choose(interaction, "yes")


class DrawOrAnswerView(DrawItButtons):
    """The router was unsure: draw the message, or answer it in words ("yes" / "no")."""

    @discord.ui.button(label="Just answer", style=discord.ButtonStyle.secondary)
    async def just_answer(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        await self.choose(interaction, "no")


class ConfirmView(DrawItButtons):
    """Buttons under an image prompt a character wrote: draw it, edit it, or cancel.

    A press is the user's answer to the proposal ("yes", "no", or the edited prompt).
    """

    def __init__(
        self, client: MombotDiscordClient, message: Any, prompt: str, user_id: int, timeout_s: float
    ) -> None:
        super().__init__(client, message, user_id, timeout_s)
        self.prompt = prompt

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
        limit = min(proposal.client.brain.images.config.max_prompt_chars, MODAL_TEXT_LIMIT)
        self.prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label="Prompt",
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            default=proposal.prompt[:limit],
            min_length=1,
            max_length=limit,
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self.proposal.choose(interaction, self.prompt.value)
