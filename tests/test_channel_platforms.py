"""One owner per channel (issue 32) on the platforms people use: what they do while a slow
reply is being written — delete or edit the message that waits behind it, send a picture
and a quick question — lands where it should, on Discord (simcord) and Matrix (Synapse)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import discord
import nio
import pytest
import simcord
from PIL import Image

import adapters.matrix_media
from adapters.config import DiscordConfig
from adapters.discord import MombotDiscordClient
from adapters.intake import Intake
from brain.answering import NOTHING_TO_STOP, STOPPED
from brain.models.embedder import Embedder
from tests.fake_openai import Behaviour, FakeOpenAIServer, last_user, long_slow_reply
from tests.helpers import close_brain, eventually, memory_brain
from tests.load import fake_brain
from tests.matrix_world import Bot, Human, joined, reply_to
from tests.synapse import Synapse
from tests.test_discord import button_labels

LOCKER = "My locker code is 4471."
LOCKER_QUESTION = "What is my locker code?"


def echo(body: dict[str, Any]) -> str:
    return f"You said: {last_user(body)}"


def echo_first_line(body: dict[str, Any]) -> str:
    """A short echo: a reply that outlasts Discord's edit interval makes its last edit wait
    (a sleep), and under simcord a sleep waits for the bot to settle, which a message waiting
    its turn behind that reply (a plain future, not a wait simcord recognizes) never lets it
    do; in real time it ends after the interval. The ordering tested here does not need it."""
    return f"You said: {last_user(body).splitlines()[0]}"


def hold_replies(server: FakeOpenAIServer) -> threading.Event:
    """Every reply waits until the returned event is set, then echoes the user's words."""
    release = threading.Event()
    server.behaviour = Behaviour(reply_for=echo, hold=release)
    return release


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (20, 120, 200)).save(out, "PNG")
    return out.getvalue()


def finished(intake: Intake, name: str) -> list[tuple[Any, ...]]:
    """Records the calls of the intake's `name` once each has returned."""
    calls: list[tuple[Any, ...]] = []
    original = getattr(intake, name)

    async def recording(*args: Any) -> None:
        await original(*args)
        calls.append(args)

    setattr(intake, name, recording)
    return calls


def started(intake: Intake, name: str, when: Callable[..., bool]) -> asyncio.Event:
    """Set as soon as the intake's `name` is called with arguments that match `when`."""
    called = asyncio.Event()
    original = getattr(intake, name)

    async def marking(*args: Any) -> None:
        if when(*args):
            called.set()
        await original(*args)

    setattr(intake, name, marking)
    return called


async def user_turns(brain: Any, channel: str) -> list[str]:
    return [t.content for t in reversed(await brain.history.recent(channel)) if t.role == "user"]


async def recalled(brain: Any, channel: str) -> str:
    await brain.memory.settle()
    found = await brain.memory.recall(channel, LOCKER_QUESTION, 10**12)
    return " ".join(turn.content for turn, _ in found.turns)


# -- Discord ------------------------------------------------------------------------------
# Ann acts through simcord's backend (the fake Discord), as Discord delivers her messages,
# edits and deletions, without waiting for the bot: simcord's own `send_dm` and `delete` wait
# until the bot is idle, and here the bot is busy writing a reply on purpose.


def dm(env: Any, ann: Any, content: str, files: list[tuple[str, bytes]] | None = None) -> int:
    """Ann writes in her DM with the bot; returns the message's id."""
    channel = ann.dm_channel.id
    stored = env.backend.store_attachments(channel, files) if files else None
    return int(env.backend.create_message(channel, ann.id, content, attachments=stored).id)


async def waiting_behind_a_reply(
    env: Any, ann: Any, brain: Any, server: FakeOpenAIServer, text: str
) -> int:
    """Ann asks a first question, whose reply is then being written (held), and sends `text`,
    which waits its turn; returns the waiting message's id."""
    dm(env, ann, "What is a lighthouse?")
    await eventually(lambda: len(server.requests) == 1)  # its reply is being written
    waiting = dm(env, ann, text)
    channel = f"discord:{ann.dm_channel.id}"
    await eventually(lambda: brain.channels.holding(channel) == 2)  # it waits its turn
    return waiting


def bot_messages(ann: Any, client: discord.Client) -> list[Any]:
    return [m for m in ann.dm_channel.history() if m.author.id == client.user.id]


def bot_replies(ann: Any, client: discord.Client) -> list[str]:
    return [m.content for m in bot_messages(ann, client)]


async def test_discord_a_message_deleted_while_it_waits_is_never_answered_stored_or_recalled(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    release = hold_replies(fake_server)
    brain = memory_brain(fake_server, sqlite_url, embedder)
    client = MombotDiscordClient(brain, DiscordConfig(enabled=True))
    async with simcord.run(client, settle_timeout=120) as env:
        ann = env.create_user("ann")
        channel = f"discord:{ann.dm_channel.id}"
        told = await waiting_behind_a_reply(env, ann, brain, fake_server, LOCKER)
        deletions = finished(client.intake, "changed")
        env.backend.delete_message(ann.dm_channel.id, told)
        await eventually(lambda: len(deletions) == 1)  # deleted while it waits
        release.set()
        await eventually(lambda: bot_replies(ann, client) != [])
        await env.settle()
        assert bot_replies(ann, client) == ["You said: What is a lighthouse?"]  # never answered
        assert len(fake_server.requests) == 1  # never sent to a model
        assert await user_turns(brain, channel) == ["What is a lighthouse?"]  # never stored
        assert "4471" not in await recalled(brain, channel)  # never embedded or recalled
    await close_brain(brain)


async def test_discord_a_message_edited_while_it_waits_is_answered_with_its_new_text(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    release = hold_replies(fake_server)
    brain = memory_brain(fake_server, sqlite_url, embedder)
    client = MombotDiscordClient(brain, DiscordConfig(enabled=True))
    async with simcord.run(client, settle_timeout=120) as env:
        ann = env.create_user("ann")
        channel = f"discord:{ann.dm_channel.id}"
        typo = await waiting_behind_a_reply(env, ann, brain, fake_server, "Whats a lighthuose?")
        edits = finished(client.intake, "changed")
        env.backend.edit_message(ann.dm_channel.id, typo, {"content": "What's a lightship?"})
        await eventually(lambda: len(edits) == 1)  # the typo fixed while it waits
        release.set()
        await eventually(lambda: len(bot_replies(ann, client)) == 2)
        await env.settle()
        assert bot_replies(ann, client) == [
            "You said: What is a lighthouse?",
            "You said: What's a lightship?",
        ]
        assert await user_turns(brain, channel) == ["What is a lighthouse?", "What's a lightship?"]
    await close_brain(brain)


async def test_discord_a_picture_then_a_quick_text_are_answered_and_stored_in_that_order(
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_server.behaviour = Behaviour(reply_for=echo_first_line)
    brain = memory_brain(fake_server, sqlite_url, embedder)
    client = MombotDiscordClient(brain, DiscordConfig(enabled=True))
    downloaded = asyncio.Event()
    read = discord.Attachment.read

    async def slow_read(self: discord.Attachment, **kwargs: Any) -> bytes:
        await downloaded.wait()  # a slow media server, or a large file
        return await read(self, **kwargs)

    monkeypatch.setattr(discord.Attachment, "read", slow_read)
    text_ready = started(client.intake, "deliver", lambda arrival, *_: not arrival.files)
    async with simcord.run(client, settle_timeout=120) as env:
        ann = env.create_user("ann")
        dm(env, ann, "look at my bike", [("bike.png", png_bytes())])
        dm(env, ann, "what colour is it?")
        await text_ready.wait()  # the text is ready to answer while the picture still downloads
        downloaded.set()
        await eventually(lambda: len(bot_replies(ann, client)) == 3)
        await env.settle()
        turns = await user_turns(brain, f"discord:{ann.dm_channel.id}")
        assert [t.split("\n")[0] for t in turns] == ["look at my bike", "what colour is it?"]
        replies = bot_replies(ann, client)
        assert replies[0].startswith("I can't look at images")  # the picture's turn came first
        assert replies[-1] == "You said: what colour is it?"  # answered last
    await close_brain(brain)


# -- Matrix -------------------------------------------------------------------------------


async def matrix_dm(
    brain: Any, synapse: Synapse, folder: Path, *, encrypted: bool = False
) -> tuple[Human, Bot, str, Callable[[], Awaitable[None]]]:
    """Ann in a direct chat with the bot; returns (ann, bot, room, stop)."""
    human, bot = await Bot.with_human(synapse, brain, folder)
    room = await human.room_with(bot.config.user_id, encrypted=encrypted)
    await human.wait_for(joined(bot.config.user_id))

    async def stop() -> None:
        await bot.stop()
        await human.close()
        await close_brain(brain)

    return human, bot, room, stop


async def test_matrix_a_message_redacted_while_it_waits_is_never_answered_stored_or_recalled(
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
    embedder: Embedder,
    synapse: Synapse,
    tmp_path: Path,
) -> None:
    release = hold_replies(fake_server)
    brain = memory_brain(fake_server, sqlite_url, embedder)
    human, bot, room, stop = await matrix_dm(brain, synapse, tmp_path)
    try:
        channel = f"matrix:{room}"
        bot_id = bot.config.user_id
        first = await human.say(room, "What is a lighthouse?")
        await eventually(lambda: len(fake_server.requests) == 1)  # its reply is being written
        told = await human.say(room, LOCKER)
        await eventually(lambda: brain.channels.holding(channel) == 2)  # it waits its turn
        redactions = finished(bot.adapter.intake, "changed")
        await human.client.room_redact(room, told)
        await eventually(lambda: len(redactions) == 1)  # redacted while it waits
        release.set()
        await human.wait_for(reply_to(first, bot_id))
        later = await human.say(room, "Thanks!")  # answered after: nothing was left waiting
        await human.wait_for(reply_to(later, bot_id))
        assert [last_user(r.body) for r in fake_server.requests] == [
            "What is a lighthouse?",
            "Thanks!",
        ]
        assert await user_turns(brain, channel) == ["What is a lighthouse?", "Thanks!"]
        assert "4471" not in await recalled(brain, channel)
    finally:
        await stop()


async def test_matrix_a_picture_then_a_quick_text_are_answered_and_stored_in_that_order(
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
    embedder: Embedder,
    synapse: Synapse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_server.behaviour = Behaviour(reply_for=echo)
    brain = memory_brain(fake_server, sqlite_url, embedder)
    human, bot, room, stop = await matrix_dm(brain, synapse, tmp_path)
    downloaded = asyncio.Event()
    fetch = adapters.matrix_media.fetch_capped

    async def slow_fetch(*args: Any) -> bytes | None:
        await downloaded.wait()  # a slow media server, or a large file
        return await fetch(*args)

    monkeypatch.setattr(adapters.matrix_media, "fetch_capped", slow_fetch)
    text_ready = started(bot.adapter.intake, "handle", lambda arrival, *_: not arrival.files)
    try:
        bot_id = bot.config.user_id
        where = await human.upload(png_bytes(), "bike.png")
        picture = await human.send(
            room, {"msgtype": "m.image", "body": "look at my bike", "filename": "bike.png", **where}
        )
        text = await human.say(room, "what colour is it?")
        await text_ready.wait()  # the text is ready to answer while the picture still downloads
        downloaded.set()
        await human.wait_for(reply_to(text, bot_id))
        await human.wait_for(reply_to(picture, bot_id))
        turns = await user_turns(brain, f"matrix:{room}")
        assert [t.split("\n")[0] for t in turns] == ["look at my bike", "what colour is it?"]
    finally:
        await stop()


# -- stopping a reply ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def telling_a_long_story(
    server: FakeOpenAIServer, sqlite_url: str
) -> AsyncIterator[tuple[Any, Any, MombotDiscordClient, Any]]:
    """(env, ann, client, brain): Ann's DM with the bot, its reply to "Tell me a long story"
    being written (its first words are on screen)."""
    server.behaviour = long_slow_reply()
    brain = fake_brain(server, sqlite_url)
    client = MombotDiscordClient(brain, DiscordConfig(enabled=True))
    async with simcord.run(client, settle_timeout=120) as env:
        ann = env.create_user("ann")
        dm(env, ann, "Tell me a long story")
        await eventually(lambda: any("word" in r for r in bot_replies(ann, client)))
        yield env, ann, client, brain
    await close_brain(brain)


async def test_discord_stop_ends_the_reply_being_written_at_once(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """Issue 36: `!stop` (or `/stop`) does not wait its turn behind the reply it stops: the
    reply ends where it was, is marked stopped, and nothing of it is stored."""
    async with telling_a_long_story(fake_server, sqlite_url) as (env, ann, client, brain):
        dm(env, ann, "!stop")
        await eventually(lambda: STOPPED in bot_replies(ann, client))
        await env.settle()
        replies = bot_replies(ann, client)
        assert replies[-1] == STOPPED and 0 < replies[0].count("word") < 400
        assert await user_turns(brain, f"discord:{ann.dm_channel.id}") == ["Tell me a long story"]
        dm(env, ann, "!stop")  # nothing being written now
        await eventually(lambda: bot_replies(ann, client)[-1] == NOTHING_TO_STOP)


async def test_discord_the_stop_button_under_a_reply_stops_it_and_goes_when_it_ends(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """Issue 36: a ⏹ button on the streaming message. Pressed, the reply ends where it was,
    is marked stopped and not stored; once a reply ends, its button is gone."""
    async with telling_a_long_story(fake_server, sqlite_url) as (env, ann, client, brain):
        (streaming,) = bot_messages(ann, client)
        assert button_labels(streaming) == ["Stop"]
        # The press is dispatched at once; simcord's click then waits for the bot to be idle.
        pressed = asyncio.create_task(ann.click(streaming, label="Stop"))
        await eventually(lambda: STOPPED in bot_replies(ann, client))
        await pressed
        await env.settle()
        written = bot_messages(ann, client)[0]  # as the simulated Discord holds it now
        assert (
            written.id == streaming.id
            and button_labels(written) == []
            and 0 < written.content.count("word") < 400
        )
        assert await user_turns(brain, f"discord:{ann.dm_channel.id}") == ["Tell me a long story"]


async def test_matrix_stop_ends_the_reply_being_written_at_once(
    fake_server: FakeOpenAIServer, sqlite_url: str, synapse: Synapse, tmp_path: Path
) -> None:
    fake_server.behaviour = long_slow_reply()
    brain = fake_brain(fake_server, sqlite_url)
    human, bot, room, stop = await matrix_dm(brain, synapse, tmp_path)
    try:
        bot_id = bot.config.user_id
        asked = await human.say(room, "Tell me a long story")
        await eventually(
            lambda: bool(fake_server.requests) and fake_server.requests[0].words_sent > 5
        )
        await human.say(room, "!stop")
        stopped = await human.wait_for(
            lambda _, e: e.sender == bot_id and getattr(e, "body", "") == STOPPED
        )
        assert stopped.source["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == asked
        assert await user_turns(brain, f"matrix:{room}") == ["Tell me a long story"]
    finally:
        await stop()


async def test_matrix_a_stop_reaction_on_the_reply_being_written_stops_it(
    fake_server: FakeOpenAIServer, sqlite_url: str, synapse: Synapse, tmp_path: Path
) -> None:
    """Issue 36: Matrix has no buttons; ⏹ as a reaction on the streaming reply stops it where
    it is (marked stopped, not stored), in an encrypted DM as clients send it."""
    fake_server.behaviour = long_slow_reply()
    brain = fake_brain(fake_server, sqlite_url)
    human, bot, room, stop = await matrix_dm(brain, synapse, tmp_path, encrypted=True)
    try:
        bot_id = bot.config.user_id
        asked = await human.say(room, "Tell me a long story")
        streaming = await human.wait_for(
            lambda _, e: e.sender == bot_id and "word" in getattr(e, "body", "")
        )
        await human.react(room, streaming.event_id, "⏹️")
        stopped = await human.wait_for(
            lambda _, e: e.sender == bot_id and getattr(e, "body", "") == STOPPED
        )
        assert stopped.source["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == asked
        assert fake_server.requests[0].words_sent < 400  # cut off, not written to its end
        assert await user_turns(brain, f"matrix:{room}") == ["Tell me a long story"]
    finally:
        await stop()


# -- personas (issue 34 item 5) -------------------------------------------------------------

PERSONA = "I'm Ann, a beekeeper with red hair."


def last_prompt_ends_with_about(server: FakeOpenAIServer, name: str = "ann") -> bool:
    return f"[About {name}, who wrote this: {PERSONA}]" in str(
        server.requests[-1].body["messages"][-1]
    )


async def test_discord_a_persona_set_in_a_dm_follows_its_user_into_a_server_channel(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    fake_server.behaviour.reply = "Noted."
    brain = fake_brain(fake_server, sqlite_url)
    client = MombotDiscordClient(brain, DiscordConfig(enabled=True))
    async with simcord.run(client, settle_timeout=120) as env:
        ann = env.create_user("ann")
        await ann.send_dm(f"!persona {PERSONA}")
        assert "know you as" in bot_replies(ann, client)[-1]
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        member = guild.add_member(ann)
        await member.send(general, f"{client.user.mention} what flowers do bees like?")
        assert last_prompt_ends_with_about(fake_server)
    await close_brain(brain)


async def test_matrix_a_persona_reaches_the_prompt_in_an_encrypted_dm(
    fake_server: FakeOpenAIServer, sqlite_url: str, synapse: Synapse, tmp_path: Path
) -> None:
    fake_server.behaviour.reply = "Noted."
    brain = fake_brain(fake_server, sqlite_url)
    human, bot, room, stop = await matrix_dm(brain, synapse, tmp_path, encrypted=True)
    try:
        bot_id = bot.config.user_id
        await human.say(room, f"!persona {PERSONA}")
        await human.wait_for(
            lambda _, e: e.sender == bot_id and "know you as" in getattr(e, "body", "")
        )
        asked = await human.say(room, "what flowers do bees like?")
        await human.wait_for(reply_to(asked, bot_id))
        text = str(fake_server.requests[-1].body["messages"][-1])
        assert f"who wrote this: {PERSONA}]" in text  # after "[About <her display name>, "
    finally:
        await stop()


async def test_matrix_the_bots_name_in_each_room_follows_the_writing_character(
    fake_server: FakeOpenAIServer, sqlite_url: str, synapse: Synapse, tmp_path: Path
) -> None:
    """Issue 34 item 6 (optional): with matrix.name_from_character, the bot's per-room
    display name (its m.room.member state) is the synthesizer's, here "mom"."""
    brain = fake_brain(fake_server, sqlite_url)
    human, bot = await Bot.with_human(synapse, brain, tmp_path, name_from_character=True)
    try:
        bot_id = bot.config.user_id
        room = await human.room_with(bot_id)
        await human.wait_for(joined(bot_id))
        named = await human.wait_for(
            lambda r, e: (
                r == room
                and isinstance(e, nio.RoomMemberEvent)
                and e.state_key == bot_id
                and (e.content or {}).get("displayname") == "mom"
            )
        )
        assert named.membership == "join"
        assert human.client.rooms[room].user_name(bot_id) == "mom"
    finally:
        await bot.stop()
        await human.close()
        await close_brain(brain)
