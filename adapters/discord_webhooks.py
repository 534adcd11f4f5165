"""Replies under the writing character's name and picture on Discord, through a webhook.

With `discord.webhooks = true`, a reply a character writes is posted by a webhook of its
channel (one per channel, "mombot", made on first use and found again after a restart) with
the character's name as the message's username and its picture (`avatar`, a card's) as the
webhook's own; in a thread, by its parent channel's webhook. Where the bot lacks Manage
Webhooks (or the channel has none: a DM), replies stay normal messages, said once per
channel in the log. What a webhook cannot do: reply to the question (the message is not
linked) and carry the ⏹ button (`/stop` or `!stop` stop it).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import discord

from brain.bounded import BoundedDict

log = logging.getLogger(__name__)

WEBHOOK_NAME = "mombot"
KNOWN_CHANNELS = 4096  # channels whose webhook (or its absence) is remembered


class ChannelWebhooks:
    """Each channel's webhook, made or found once, and the picture it shows."""

    def __init__(self, avatars: dict[str, str]) -> None:
        self._avatar_files = avatars  # character name → its picture's file
        self._pictures: dict[str, bytes | None] = {}
        self._hooks: BoundedDict[int, discord.Webhook | None] = BoundedDict(KNOWN_CHANNELS)
        self._showing: BoundedDict[int, str] = BoundedDict(KNOWN_CHANNELS)  # whose picture
        self._lock = asyncio.Lock()

    async def send(
        self, channel: Any, author: str, text: str, **options: Any
    ) -> discord.WebhookMessage | None:
        """Post `text` as `author` in `channel`; None where no webhook can be used."""
        parent, thread = _parent_and_thread(channel)
        if parent is None:
            return None
        webhook = await self._webhook(parent, author)
        if webhook is None:
            return None
        await self._show_picture(parent.id, webhook, author)
        extra = {"thread": thread} if thread is not None else {}
        return await webhook.send(text, username=author, wait=True, **extra, **options)

    async def _webhook(self, parent: discord.TextChannel, author: str) -> discord.Webhook | None:
        """The channel's webhook: found (made by an earlier run) or made now with `author`'s
        picture; None where the bot may not manage webhooks (said once)."""
        async with self._lock:  # one lookup per channel, however many replies start at once
            if parent.id in self._hooks:
                return self._hooks.touch(parent.id)
            try:
                found = [w for w in await parent.webhooks() if w.name == WEBHOOK_NAME and w.token]
                if found:
                    hook: discord.Webhook | None = found[0]
                else:
                    picture = await self._picture(author)
                    hook = await parent.create_webhook(name=WEBHOOK_NAME, avatar=picture)
                    self._showing[parent.id] = author
            except discord.Forbidden:
                log.warning(
                    "discord: no Manage Webhooks permission in #%s: replies there are sent "
                    "as normal messages",
                    parent.name,
                )
                hook = None
            self._hooks[parent.id] = hook
            return hook

    async def _show_picture(self, channel_id: int, webhook: discord.Webhook, author: str) -> None:
        """The webhook shows the picture of the character writing (changed only when the
        writer changes: normally one per channel, the synthesizer)."""
        if self._showing.get(channel_id) == author:
            return
        self._showing[channel_id] = author
        picture = await self._picture(author)
        if picture is None:
            return
        try:
            await webhook.edit(avatar=picture)
        except discord.HTTPException as exc:  # the name still says who writes
            log.warning("discord: could not change the webhook's picture: %s", exc)

    async def _picture(self, author: str) -> bytes | None:
        if author not in self._pictures:
            path = self._avatar_files.get(author)
            self._pictures[author] = (
                await asyncio.to_thread(Path(path).read_bytes) if path else None
            )
        return self._pictures[author]


def _parent_and_thread(channel: Any) -> tuple[discord.TextChannel | None, Any]:
    """The channel a webhook lives in, and the thread to post in (if any)."""
    if isinstance(channel, discord.Thread):
        parent = channel.parent
        return (parent, channel) if isinstance(parent, discord.TextChannel) else (None, None)
    if isinstance(channel, discord.TextChannel):
        return channel, None
    return None, None  # a DM or a group: no webhooks there
