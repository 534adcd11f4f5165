"""The memory's privacy boundary on every platform: what a DM (or a console channel) told
the bot comes back there, far out of the window, and never in another room."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nio
import simcord

from adapters.config import ConsoleConfig, DiscordConfig
from adapters.console import ConsoleAdapter
from adapters.discord import MombotDiscordClient
from brain.characters.recall import HEADER
from brain.models.embedder import Embedder
from tests.fake_openai import FakeOpenAIServer
from tests.helpers import (
    chat_filler,
    close_brain,
    eventually_equal,
    last_reply_prompt,
    memory_brain,
)
from tests.matrix_world import Bot, Human, joined, reply_to
from tests.synapse import Synapse

FACT = "Keep this between us: my sister Alba is moving to Valencia."
QUESTION = "Which city is my sister moving to?"


async def test_console_channels_keep_their_memories_apart(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder, tmp_path: Path
) -> None:
    brain = memory_brain(fake_server, sqlite_url, embedder)

    async def session(channel: str, lines: str) -> None:
        adapter = ConsoleAdapter(
            brain,
            ConsoleConfig(channel=channel),
            stdin=io.StringIO(lines),
            stdout=io.StringIO(),
            images_dir=tmp_path / "img",
        )
        await adapter.run()

    await session("home", FACT + "\n")
    await chat_filler(brain.history, "console:home", 40)
    await brain.memory.settle()  # type: ignore[union-attr]
    await session("home", QUESTION + "\n")
    recalled = last_reply_prompt(fake_server)
    assert HEADER in recalled and "my sister Alba" in recalled
    assert recalled.count("Alba") == 1  # recalled once; not in the window
    await session("work", QUESTION + "\n")
    assert "Alba" not in last_reply_prompt(fake_server)
    await close_brain(brain)


async def test_a_discord_dm_is_remembered_in_the_dm_and_nowhere_else(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    brain = memory_brain(fake_server, sqlite_url, embedder)
    client = MombotDiscordClient(brain, DiscordConfig(enabled=True))
    async with simcord.run(client, settle_timeout=120) as env:
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        family = guild.create_text_channel("family")
        ann = env.create_user("ann")
        member = guild.add_member(ann)
        await ann.send_dm(FACT)
        await chat_filler(brain.history, f"discord:{ann.dm_channel.id}", 40)
        await brain.memory.settle()  # type: ignore[union-attr]

        await ann.send_dm(QUESTION)
        recalled = last_reply_prompt(fake_server)
        assert HEADER in recalled and "my sister Alba" in recalled
        for channel in (general, family):  # the same person, in shared channels
            await member.send(channel, f"{client.user.mention} {QUESTION}")
            assert "Alba" not in last_reply_prompt(fake_server)
    await close_brain(brain)


@dataclass
class MatrixDm:
    brain: Any
    human: Human
    bot_id: str
    room: str
    told: str  # the event id of the first message, answered already


@asynccontextmanager
async def matrix_dm(
    server: FakeOpenAIServer,
    sqlite_url: str,
    embedder: Embedder,
    synapse: Synapse,
    folder: Path,
    first: str,
) -> AsyncIterator[MatrixDm]:
    """A bot with memory on Synapse, a person in a DM with it who said `first` (answered)."""
    brain = memory_brain(server, sqlite_url, embedder)
    human, bot = await Bot.with_human(synapse, brain, folder)
    bot_id = bot.config.user_id
    try:
        room = await human.room_with(bot_id)
        await human.wait_for(joined(bot_id))
        told = await human.say(room, first)
        await human.wait_for(reply_to(told, bot_id))
        yield MatrixDm(brain, human, bot_id, room, told)
    finally:
        await bot.stop()
        await human.close()
        await close_brain(brain)


async def test_a_matrix_dm_is_remembered_in_the_dm_and_not_in_a_group_room(
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
    embedder: Embedder,
    synapse: Synapse,
    tmp_path: Path,
) -> None:
    async with matrix_dm(fake_server, sqlite_url, embedder, synapse, tmp_path, FACT) as world:
        brain, human, bot_id, dm = world.brain, world.human, world.bot_id, world.room
        await chat_filler(brain.history, f"matrix:{dm}", 40)
        await brain.memory.settle()  # type: ignore[union-attr]
        asked = await human.say(dm, QUESTION)
        await human.wait_for(reply_to(asked, bot_id))
        recalled = last_reply_prompt(fake_server)
        assert HEADER in recalled and "my sister Alba" in recalled

        group = await human.room_with(bot_id, direct=False)
        await human.wait_for(lambda room, e: room == group and joined(bot_id)(room, e))
        mention = {"m.mentions": {"user_ids": [bot_id]}}
        asked = await human.say(group, QUESTION, **mention)
        await human.wait_for(reply_to(asked, bot_id))
        assert "Alba" not in last_reply_prompt(fake_server)


LOCKER = "My locker code is 4471."
LOCKER_EDITED = "My locker code is 9182."
LOCKER_QUESTION = "What is my locker code?"


async def remembered(brain: Any, channel: str) -> str:
    """What the memory recalls about the locker in a channel, as one string."""
    await brain.memory.settle()
    found = await brain.memory.recall(channel, LOCKER_QUESTION, 10**12)
    return " ".join(turn.content for turn, _ in found.turns)


async def user_turns(brain: Any, channel: str) -> list[str]:
    return [t.content for t in await brain.history.recent(channel) if t.role == "user"]


async def test_a_discord_edit_rewrites_the_turn_and_a_deletion_forgets_it(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    brain = memory_brain(fake_server, sqlite_url, embedder)
    client = MombotDiscordClient(brain, DiscordConfig(enabled=True))
    async with simcord.run(client, settle_timeout=120) as env:
        ann = env.create_user("ann")
        told = await ann.send_dm(LOCKER)
        channel = f"discord:{ann.dm_channel.id}"
        assert "4471" in await remembered(brain, channel)

        await ann.edit(told, LOCKER_EDITED)
        assert await user_turns(brain, channel) == [LOCKER_EDITED]
        assert "9182" in await remembered(brain, channel)
        assert "4471" not in await remembered(brain, channel)

        await ann.delete(told)
        assert await user_turns(brain, channel) == []
        assert await remembered(brain, channel) == ""
        assert await brain.memory.status(channel) == ("", 0)
    await close_brain(brain)


@dataclass
class DiscordRoom:
    brain: Any
    env: Any  # simcord's
    general: Any  # a guild's text channel
    ann: Any  # a member of the guild
    mention: str  # the bot's, to address it there
    channel: str  # the key its history is kept under


@asynccontextmanager
async def discord_general(
    server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> AsyncIterator[DiscordRoom]:
    """A bot with memory on simcord, and Ann in a guild's #general."""
    brain = memory_brain(server, sqlite_url, embedder)
    client = MombotDiscordClient(brain, DiscordConfig(enabled=True))
    try:
        async with simcord.run(client, settle_timeout=120) as env:
            guild = env.create_guild()
            general = guild.create_text_channel("general")
            ann = guild.add_member(env.create_user("ann"))
            key = f"discord:{general.id}"
            yield DiscordRoom(brain, env, general, ann, client.user.mention, key)
    finally:
        await close_brain(brain)


async def test_an_edit_of_a_message_with_a_file_keeps_the_file(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    """Editing a message's text on Discord replaces its text; the file it came with (read
    into the stored turn) stays, as it stays on Discord."""
    async with discord_general(fake_server, sqlite_url, embedder) as room:
        told = await room.ann.send(
            room.general,
            f"{room.mention} Here is my lsit.",
            attachments=[("shopping.txt", b"lentils\ncumin\n")],
        )
        [stored] = await user_turns(room.brain, room.channel)
        assert stored.startswith("Here is my lsit.\n\n[file shopping.txt]") and "cumin" in stored

        await room.ann.edit(told, f"{room.mention} Here is my list.")
        assert await user_turns(room.brain, room.channel) == [stored.replace("lsit", "list")]


async def test_a_message_edited_down_to_the_mention_is_forgotten(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    """Nothing is left of it for the bot: like a message that came empty, it is not kept."""
    async with discord_general(fake_server, sqlite_url, embedder) as room:
        told = await room.ann.send(room.general, f"{room.mention} {LOCKER}")
        assert "4471" in await remembered(room.brain, room.channel)
        await room.ann.edit(told, room.mention)
        assert await user_turns(room.brain, room.channel) == []
        assert await remembered(room.brain, room.channel) == ""


async def test_messages_a_discord_moderator_purges_at_once_are_forgotten(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    """A bulk delete (a moderator's purge: one event for many messages) forgets each."""
    async with discord_general(fake_server, sqlite_url, embedder) as room:
        told = await room.ann.send(room.general, f"{room.mention} {LOCKER}")
        await room.ann.send(room.general, f"{room.mention} Nice weather today.")
        also = await room.ann.send(room.general, f"{room.mention} And my bike lock is 5150.")
        assert "4471" in await remembered(room.brain, room.channel)

        room.env.backend.bulk_delete_messages(room.general.id, [told.id, also.id])
        await room.env.settle()
        assert await user_turns(room.brain, room.channel) == ["Nice weather today."]
        assert "4471" not in await remembered(room.brain, room.channel)


async def test_a_matrix_edit_rewrites_the_turn_and_a_redaction_forgets_it(
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
    embedder: Embedder,
    synapse: Synapse,
    tmp_path: Path,
) -> None:
    async with matrix_dm(fake_server, sqlite_url, embedder, synapse, tmp_path, LOCKER) as world:
        brain, human, told, dm = world.brain, world.human, world.told, world.room
        channel = f"matrix:{dm}"
        assert "4471" in await remembered(brain, channel)

        edit = {
            "msgtype": "m.text",
            "body": f"* {LOCKER_EDITED}",
            "m.new_content": {"msgtype": "m.text", "body": LOCKER_EDITED},
            "m.relates_to": {"rel_type": "m.replace", "event_id": told},
        }
        await human.send(dm, edit)
        await eventually_equal(lambda: user_turns(brain, channel), [LOCKER_EDITED])
        assert "9182" in await remembered(brain, channel)
        assert "4471" not in await remembered(brain, channel)

        await human.client.room_redact(dm, told)
        await eventually_equal(lambda: user_turns(brain, channel), [])
        assert await remembered(brain, channel) == ""


def edit_of(event_id: str, text: str) -> dict[str, Any]:
    return {
        "msgtype": "m.text",
        "body": f"* {text}",
        "m.new_content": {"msgtype": "m.text", "body": text},
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
    }


async def test_on_matrix_only_the_author_edits_and_only_the_author_or_a_moderator_deletes(
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
    embedder: Embedder,
    synapse: Synapse,
    tmp_path: Path,
) -> None:
    """Matrix servers pass on an edit of anyone's message, from anyone: the client must
    check that it comes from the author. Bob cannot rewrite what Ann told the bot (nor delete
    it); Ann, who runs the room, can delete Bob's message."""
    brain = memory_brain(fake_server, sqlite_url, embedder)
    ann, bot = await Bot.with_human(synapse, brain, tmp_path)
    bob = await Human(synapse, tmp_path / "bob").login()
    bot_id = bot.config.user_id
    mention = {"m.mentions": {"user_ids": [bot_id]}}
    try:
        room = await ann.room_with(bot_id, others=[bob.user_id])
        await bob.client.join(room)
        for person in (ann, bob):
            await person.wait_for(lambda r, e: r == room and joined(bot_id)(r, e))
        told = await ann.say(room, LOCKER, **mention)
        await ann.wait_for(reply_to(told, bot_id))
        said = await bob.say(room, "Nice weather today.", **mention)
        await ann.wait_for(reply_to(said, bot_id))
        channel = f"matrix:{room}"

        await bob.send(room, edit_of(told, LOCKER_EDITED))
        # a redaction is checked by the server (the spec asks it to); an edit is not
        assert isinstance(await bob.client.room_redact(room, told), nio.RoomRedactError)
        await ann.client.room_redact(room, said)  # the room's admin
        await eventually_equal(lambda: user_turns(brain, channel), [LOCKER])
        asked = await ann.say(room, LOCKER_QUESTION, **mention)  # after all of the above
        await ann.wait_for(reply_to(asked, bot_id))
        assert await user_turns(brain, channel) == [LOCKER_QUESTION, LOCKER]  # newest first
    finally:
        await bot.stop()
        await ann.close()
        await bob.close()
        await close_brain(brain)
