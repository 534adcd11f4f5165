"""Replies under the writing character's name and picture through a channel webhook
(`discord.webhooks = true`, issue 34 item 6), on simcord: streamed edits go through the
webhook, the picture is the character's, and without Manage Webhooks the replies are normal
messages with one log line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import discord
import pytest
import simcord
from PIL import Image

from adapters.config import DiscordConfig
from adapters.discord import MombotDiscordClient
from brain.brain import Brain
from brain.config import CharacterConfig, EndpointConfig
from brain.history.store import HistoryStore
from brain.models.client import ModelClient
from tests.fake_openai import FakeOpenAIServer
from tests.helpers import close_brain


def seraphina(fake_server: FakeOpenAIServer, sqlite_url: str, picture: Path) -> Brain:
    Image.new("RGB", (64, 64), (40, 120, 60)).save(picture)
    character = CharacterConfig(name="Seraphina", endpoint="f", model="f", avatar=str(picture))
    return Brain(
        characters=[character],
        clients={"f": ModelClient("f", EndpointConfig(base_url=fake_server.base_url))},
        history=HistoryStore(sqlite_url),
    )


def may_not_manage_webhooks(env: Any, guild: Any, client: discord.Client) -> None:
    """The bot's role as invited without Manage Webhooks (simcord gives it all but admin)."""
    (role,) = [r for r in env.backend.get_guild(guild.id).roles.values() if r.managed]
    allowed = discord.Permissions(role.permissions)
    allowed.manage_webhooks = False
    env.backend.edit_role(guild.id, role.id, {"permissions": allowed.value})


async def test_a_reply_streams_through_the_channels_webhook_as_the_character(
    fake_server: FakeOpenAIServer, sqlite_url: str, tmp_path: Path
) -> None:
    fake_server.behaviour.reply = " ".join(f"word{n}" for n in range(60))
    fake_server.behaviour.token_delay_s = 0.01  # long enough to be edited while it streams
    brain = seraphina(fake_server, sqlite_url, tmp_path / "seraphina.png")
    client = MombotDiscordClient(
        brain, DiscordConfig(enabled=True, webhooks=True, edit_interval_s=0.2)
    )
    async with simcord.run(client, settle_timeout=120) as env:
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        await ann.send(general, f"{client.user.mention} tell me about the forest")
        await ann.send(general, f"{client.user.mention} and the river?")
        replies = [m for m in general.history() if m.webhook_id is not None]
        assert [m.author.name for m in replies] == ["Seraphina", "Seraphina"]
        assert replies[0].content.endswith("word59")  # the last edit went through it too
        edits = [r for r in env.http_requests if r.method == "PATCH" and "/messages/" in r.path]
        assert edits and all("/webhooks/" in r.path for r in edits)
        (hook,) = env.backend.webhooks.values()  # one per channel, made once
        made = [r for r in env.http_requests if r.method == "POST" and r.path.endswith("/webhooks")]
        assert len(made) == 1 and made[0].json["avatar"].startswith("data:image/png;base64,")
    await close_brain(brain)


async def test_without_manage_webhooks_replies_are_normal_messages_said_once(
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_server.behaviour.reply = "The forest is quiet."
    brain = seraphina(fake_server, sqlite_url, tmp_path / "seraphina.png")
    client = MombotDiscordClient(brain, DiscordConfig(enabled=True, webhooks=True))
    async with simcord.run(client, settle_timeout=120) as env:
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        may_not_manage_webhooks(env, guild, client)
        with caplog.at_level(logging.WARNING, logger="adapters.discord_webhooks"):
            await ann.send(general, f"{client.user.mention} hello")
            await ann.send(general, f"{client.user.mention} hello again")
        mine = [m for m in general.history() if m.author.id == client.user.id]
        assert [m.content for m in mine] == ["The forest is quiet.", "The forest is quiet."]
        assert len([r for r in caplog.records if "Manage Webhooks" in r.message]) == 1
    await close_brain(brain)


async def test_in_a_thread_the_parent_channels_webhook_is_asked_to_post_there(
    fake_server: FakeOpenAIServer, sqlite_url: str, tmp_path: Path
) -> None:
    """A thread has no webhooks of its own: its parent channel's posts into it, named by
    Discord's `thread_id` parameter. simcord takes the parameter but posts into the parent
    (it does not model it yet), so what is checked is the request, as Discord documents it."""
    fake_server.behaviour.reply = "Deep in the woods."
    brain = seraphina(fake_server, sqlite_url, tmp_path / "seraphina.png")
    config = DiscordConfig(enabled=True, webhooks=True, start_threads=True)
    client = MombotDiscordClient(brain, config)
    async with simcord.run(client, settle_timeout=120) as env:
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        await ann.send(general, f"{client.user.mention} where is the glade?")
        thread = general.threads[0]  # the bot opened a thread on the message
        executed = [r for r in env.http_requests if r.method == "POST" and "/webhooks/" in r.path]
        assert [int(r.params["thread_id"]) for r in executed] == [thread.id]
        assert [r.json["username"] for r in executed] == ["Seraphina"]
    await close_brain(brain)
