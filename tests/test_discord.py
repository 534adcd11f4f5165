"""The Discord adapter, driven offline by simcord through discord.py's real machinery.

The brain is real; the model is the real SmolLM2 server, except where a test needs a
reply longer than the test model's 512-token window (splitting) or a vision model.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import discord
import pytest
import simcord
from PIL import Image

from adapters.checks import TOKEN_FIX, describe_discord, discord_token_problem
from adapters.common import SLOW_DOWN
from adapters.config import DiscordConfig
from adapters.discord import NO_THREAD, MombotDiscordClient
from adapters.discord_outbox import NOT_YOUR_PROPOSAL
from bot.cli import main
from brain.answering import STOPPED_MID_REPLY
from brain.brain import Brain
from brain.config import CharacterConfig, EndpointConfig, ImagesConfig
from brain.history.store import HistoryStore
from brain.models.client import ModelClient
from brain.routing.question import ASK_WITH_BUTTONS
from tests.conftest import MODEL
from tests.fake_openai import FakeOpenAIServer, last_user, long_slow_reply
from tests.helpers import RecordingGenerator, asking_brain, close_brain, eventually, smollm2_mixture


def real_brain(endpoint: EndpointConfig, sqlite_url: str, **kwargs: Any) -> Brain:
    character = CharacterConfig(
        name="mom",
        endpoint="local",
        model=MODEL,
        temperature=0,
        max_tokens=24,
        persona="You are mom, a kind assistant.",
    )
    return Brain(
        characters=[character],
        clients={"local": ModelClient("local", endpoint)},
        history=HistoryStore(sqlite_url),
        **kwargs,
    )


def fake_server_brain(server: FakeOpenAIServer, sqlite_url: str, **options: Any) -> Brain:
    """One character on the fake server: for replies the test model cannot give."""
    endpoint = EndpointConfig(base_url=server.base_url, context_window=4096)
    return Brain(
        characters=[CharacterConfig(name="mom", endpoint="f", model="fake")],
        clients={"f": ModelClient("f", endpoint)},
        history=HistoryStore(sqlite_url),
        **options,
    )


@asynccontextmanager
async def discord_world(
    brain: Brain, **config: Any
) -> AsyncIterator[tuple[Any, MombotDiscordClient]]:
    client = MombotDiscordClient(brain, DiscordConfig(enabled=True, **config))
    async with simcord.run(client, settle_timeout=120) as env:
        yield env, client
    await close_brain(brain)


def bot_messages(channel: Any, client: discord.Client) -> list[discord.Message]:
    return [m for m in channel.history() if m.author.id == client.user.id]


def writes(env: Any) -> list[Any]:
    """Every REST call that creates or edits a message."""
    return [
        r
        for r in env.http_requests
        if r.method in ("POST", "PATCH")
        and ("/messages" in r.path or "/webhooks/" in r.path)
        and isinstance(r.json, dict)
    ]


@pytest.fixture
def make_brain(llama_endpoint: EndpointConfig, sqlite_url: str) -> Callable[..., Brain]:
    return lambda **kw: real_brain(llama_endpoint, sqlite_url, **kw)


async def test_answers_when_mentioned_and_only_then(make_brain: Callable[..., Brain]) -> None:
    brain = make_brain()
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        await ann.send(general, "just chatting with friends")
        assert bot_messages(general, client) == []
        question = await ann.send(general, f"{client.user.mention} What is the capital of France?")
        replies = bot_messages(general, client)
        assert len(replies) == 1 and replies[0].content.strip()
        assert replies[0].reference is not None and replies[0].reference.message_id == question.id
        turns = await brain.history.recent(f"discord:{general.id}")
        assert turns[1].content == "What is the capital of France?"  # the mention is stripped
        assert turns[1].author == "ann"


async def test_direct_messages_and_other_bots(make_brain: Callable[..., Brain]) -> None:
    brain = make_brain()
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        ann = env.create_user("ann")
        await ann.send_dm("Hello there, how are you?")
        assert [m.author.id for m in ann.dm_channel.history()][-1] == client.user.id
        robot = guild.add_member(env.create_user("robot", bot=True))
        await robot.send(general, f"{client.user.mention} answer me, fellow bot")
        assert bot_messages(general, client) == []


async def test_answer_channels_threads_and_replies_each_keep_their_history(
    make_brain: Callable[..., Brain],
) -> None:
    brain = make_brain()
    async with discord_world(brain, start_threads=True) as (env, client):
        guild = env.create_guild()
        lounge = guild.create_text_channel("lounge")
        general = guild.create_text_channel("general")
        client.config.answer_channels.append(lounge.id)
        ann = guild.add_member(env.create_user("ann"))
        await ann.send(lounge, "Good morning everyone")  # no mention needed here
        assert len(bot_messages(lounge, client)) == 1

        await ann.send(general, f"{client.user.mention} Tell me about cats")
        thread = general.threads[0]  # the bot opened a thread on the message
        assert thread.name == "Tell me about cats"
        assert len(bot_messages(thread, client)) == 1
        await ann.send(thread, "And what about dogs?")  # inside its thread: no mention needed
        assert len(bot_messages(thread, client)) == 2
        assert await brain.history.count(f"discord:{thread.id}") == 4
        assert await brain.history.count(f"discord:{lounge.id}") == 2

    plain = make_brain()
    async with discord_world(plain) as (env, client):
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        await ann.send(general, f"{client.user.mention} Hi, what is a good book?")
        answer = bot_messages(general, client)[0]
        await ann.send(general, "Why that one?", reply_to=answer)  # a reply continues, no mention
        assert len(bot_messages(general, client)) == 2
        other = guild.add_member(env.create_user("bob"))
        mine = await other.send(general, "a message of bob's")
        await ann.send(general, "replying to bob, not the bot", reply_to=mine)
        assert len(bot_messages(general, client)) == 2


async def test_a_thread_that_cannot_be_started_gets_the_answer_in_the_channel_with_a_note(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """Issue 33 defect 4: a failed thread creation (no permission, 429) escaped on_message:
    the user got nothing and their rate-limit slot was spent."""
    brain = fake_server_brain(fake_server, sqlite_url)
    async with discord_world(brain, start_threads=True) as (env, client):
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        env.inject_error(
            "POST", "/channels/*/messages/*/threads", status=403, code=50013, message="Forbidden"
        )
        question = await ann.send(general, f"{client.user.mention} Tell me about cats")
        assert general.threads == []
        assert replies_to(general, client, question) == [
            NO_THREAD,
            "Hello from the fake server.",
        ]
        assert await brain.history.count(f"discord:{general.id}") == 2


async def test_slash_commands_are_typed_limited_and_synced(
    make_brain: Callable[..., Brain],
) -> None:
    brain = make_brain(extensions=["deep_thinking"])
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        channel = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        assert set(ann.available_commands(channel)) >= {
            "help",
            "reset",
            "characters",
            "stats",
            "sd",
            "think",
            "debug",
        }
        think = client.tree.get_command("think").to_dict(client.tree)
        rounds = next(o for o in think["options"] if o["name"] == "rounds")
        assert (rounds["type"], rounds["min_value"], rounds["max_value"], rounds["required"]) == (
            4,
            2,
            20,
            False,
        )
        assert rounds["description"] == "Most rounds (2–20)."
        sd = {o["name"]: o for o in client.tree.get_command("sd").to_dict(client.tree)["options"]}
        assert sd["prompt"]["required"] and sd["steps"]["max_value"] == 50
        assert sd["seed"]["max_value"] == 4294967295 and sd["size"]["type"] == 3
        debug = client.tree.get_command("debug").to_dict(client.tree)["options"][0]
        assert [c["value"] for c in debug["choices"]] == ["on", "off"]

        result = await ann.slash(channel, "characters")
        assert result.acknowledged
        assert "**mom** (member): smollm2-135m on local" in result.response.content


async def test_slash_think_needs_characters_and_reset_needs_admin(
    make_brain: Callable[..., Brain],
) -> None:
    brain = make_brain(extensions=["deep_thinking"])
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        channel = guild.create_text_channel("general")
        admins = guild.create_role("admins")
        ann = guild.add_member(env.create_user("ann"))
        boss = guild.add_member(env.create_user("boss"), roles=[admins])
        client.config.admin_roles.append(admins.id)
        result = await ann.slash(channel, "think", question="Why is the sky blue?")
        assert (
            result.response.content == "⚠️ /think needs at least two characters (see /characters)."
        )
        result = await ann.slash(channel, "reset")
        assert result.response.content == "⚠️ Only admins can use /reset here."
        result = await boss.slash(channel, "reset")
        assert result.response.content.startswith("Forgot this conversation")


async def test_slash_think_shows_progress_by_editing(
    llama_endpoint: EndpointConfig, sqlite_url: str
) -> None:
    brain = smollm2_mixture(llama_endpoint, HistoryStore(sqlite_url), extensions=["deep_thinking"])
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        channel = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        result = await ann.slash(
            channel, "think", question="Tea or coffee in the morning?", rounds=2
        )
        assert result.response.content.startswith("🤔 Round ")  # the status message, edited
        edits = [r for r in env.http_requests if r.method == "PATCH" and "/webhooks/" in r.path]
        assert any("Round 1/2" in (r.json or {}).get("content", "") for r in edits)
        assert result.followups and result.followups[-1].content.strip()


async def test_sd_sends_a_png_with_prompt_and_seed(make_brain: Callable[..., Brain]) -> None:
    generator = RecordingGenerator()
    brain = make_brain(image_generator=generator, images_config=ImagesConfig(default_size="64x64"))
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        ann = guild.add_member(env.create_user("ann"))
        result = await ann.slash(
            channel, "sd", prompt="a lighthouse at dusk", seed=42, size="64x64"
        )
        image_message = result.followups[-1]
        assert image_message.content.startswith("a lighthouse at dusk\n(seed 42, 64x64")
        attachment = image_message.attachments[0]
        assert attachment.filename == "mombot-42.png"
        assert generator.requests[0].seed == 42
        bad = await ann.slash(channel, "sd", prompt="a lighthouse", size="8192x8192")
        assert bad.response.content.startswith("⚠️ `size` 8192x8192 is outside the limits")


async def test_an_image_lost_in_a_crash_is_reported_after_the_restart(
    make_brain: Callable[..., Brain],
) -> None:
    brain = make_brain(image_generator=RecordingGenerator())
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        # What a process killed mid-image leaves behind in the shared database:
        await brain.images.jobs.start(f"discord:{channel.id}", "123", "a lighthouse at dusk")
        restarted = MombotDiscordClient(brain, client.config)
        await env.restart_bot(restarted)
        told = [m.content for m in bot_messages(channel, restarted)]
        assert told == [
            (
                "I was restarted before I could finish the image you asked for "
                "(a lighthouse at dusk). Please ask again."
            )
        ]
        await env.restart_bot(MombotDiscordClient(brain, client.config))
        assert len(bot_messages(channel, restarted)) == 1  # told once, not at every start


async def test_long_replies_split_at_2000_without_breaking_code_and_edits_are_throttled(
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
) -> None:
    code = "\n".join(f"    total += {i}  # step {i}" for i in range(120))
    fake_server.behaviour.reply = (
        f"Here is the code:\n```python\n{code}\n```\nThat is all, @everyone!"
    )
    fake_server.behaviour.token_delay_s = 0.004
    brain = fake_server_brain(fake_server, sqlite_url)
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        started = time.monotonic()
        await ann.send(general, f"{client.user.mention} show me a long loop")
        elapsed = time.monotonic() - started
        replies = [m.content for m in bot_messages(general, client)]
        assert len(replies) >= 2 and all(len(r) <= 2000 for r in replies)
        assert all(r.count("```") % 2 == 0 for r in replies)
        assert replies[1].startswith("```python\n")
        lines = [ln for r in replies for ln in r.splitlines() if "total +=" in ln]
        assert lines == code.splitlines()
        assert replies[-1].endswith("That is all, @everyone!")
        edits = [r for r in env.http_requests if r.method == "PATCH"]
        assert 0 < len(edits) <= elapsed / client.config.edit_interval_s + 2 * len(replies)
        # nothing the bot wrote could ping: every write carries allowed_mentions with no parse
        assert writes(env) and all(w.json["allowed_mentions"]["parse"] == [] for w in writes(env))


async def test_reasoning_is_a_spoiler_or_a_file_never_inline(
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
) -> None:
    fake_server.behaviour.reply = "<think>Short thought.</think>The answer."
    brain = fake_server_brain(fake_server, sqlite_url)
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        await ann.send(general, f"{client.user.mention} quick one")
        assert [m.content for m in bot_messages(general, client)] == [
            "The answer.",
            "💭 ||Short thought.||",
        ]
        long_thought = "step " * 400
        fake_server.behaviour.reply = f"<think>{long_thought}</think>The long answer."
        await ann.send(general, f"{client.user.mention} think hard")
        folded = bot_messages(general, client)[-1]
        assert folded.content == "💭 The model's reasoning:"
        assert folded.attachments[0].filename == "reasoning.txt"
        assert all("step step" not in m.content for m in bot_messages(general, client))


async def test_rate_limit_and_allowlists(make_brain: Callable[..., Brain]) -> None:
    brain = make_brain()
    async with discord_world(brain, rate_limit_messages=2) as (env, client):
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        for text in ("one?", "two?", "three?"):
            await ann.send(general, f"{client.user.mention} {text}")
        replies = [m.content for m in bot_messages(general, client)]
        assert len(replies) == 3 and replies[-1] == SLOW_DOWN
        assert await brain.history.count(f"discord:{general.id}") == 4  # the third was not answered

    brain = make_brain()
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        friends = guild.create_role("friends")
        ann = guild.add_member(env.create_user("ann"))
        bob = guild.add_member(env.create_user("bob"), roles=[friends])
        client.config.allowed_roles.append(friends.id)
        await ann.send(general, f"{client.user.mention} hello?")
        assert bot_messages(general, client) == []
        await bob.send(general, f"{client.user.mention} hello?")
        assert len(bot_messages(general, client)) == 1
        result = await ann.slash(general, "help")
        assert result.ephemeral and result.response.content == "I'm not allowed to answer you here."
        other_guild = env.create_guild()
        client.config.guilds.append(guild.id)
        elsewhere = other_guild.create_text_channel("x")
        carl = other_guild.add_member(env.create_user("carl"))
        await carl.send(elsewhere, f"{client.user.mention} hello?")
        assert bot_messages(elsewhere, client) == []


async def test_allowed_channels_and_allowed_users(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """Only listed channels (a thread counts as its parent), only listed users; DMs too."""
    brain = fake_server_brain(fake_server, sqlite_url)
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        general, lounge = guild.create_text_channel("general"), guild.create_text_channel("lounge")
        ann = guild.add_member(env.create_user("ann"))
        bob = guild.add_member(env.create_user("bob"))
        client.config.allowed_channels.append(general.id)
        await ann.send(lounge, f"{client.user.mention} hello?")
        await ann.send(general, f"{client.user.mention} hello?")
        assert bot_messages(lounge, client) == [] and len(bot_messages(general, client)) == 1
        client.config.allowed_users.append(ann.id)
        await bob.send(general, f"{client.user.mention} and me?")
        await ann.send(general, f"{client.user.mention} and again?")  # the marker: answered
        assert [m.content for m in bot_messages(general, client)] == [
            fake_server.behaviour.reply
        ] * 2
        assert [
            t.author
            for t in await brain.history.recent(f"discord:{general.id}")
            if t.role == "user"
        ] == ["ann", "ann"]  # bob's message never reached the brain


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (40, 30), (0, 0, 255, 128)).save(out, "PNG")
    return out.getvalue()


async def test_attachments_in_and_oversized_refused_before_download(
    fake_server: FakeOpenAIServer,
    llama_endpoint: EndpointConfig,
    sqlite_url: str,
) -> None:
    fake_server.behaviour.reply = "A translucent blue rectangle."
    clients = {
        "local": ModelClient("local", llama_endpoint),
        "eyes": ModelClient(
            "eyes", EndpointConfig(base_url=fake_server.base_url, context_window=4096)
        ),
    }
    characters = [
        CharacterConfig(
            name="eye", endpoint="eyes", model="llava", vision=True, role="synthesizer"
        ),
        CharacterConfig(name="mom", endpoint="local", model=MODEL, max_tokens=24, temperature=0),
    ]
    brain = Brain(characters=characters, clients=clients, history=HistoryStore(sqlite_url))
    async with discord_world(brain, max_attachment_bytes=50_000) as (env, client):
        downloads: list[str] = []
        original_get = env.backend.cdn.get
        env.backend.cdn.get = lambda url: downloads.append(url) or original_get(url)
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        await ann.send(
            general,
            f"{client.user.mention} what is in this picture?",
            attachments=[("shape.png", png_bytes()), ("notes.txt", b"remember the milk")],
        )
        parts = last_user(fake_server.requests[0].body)
        assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
        stored = (await brain.history.recent(f"discord:{general.id}"))[-1].content
        assert "[file notes.txt]\n```\nremember the milk\n```" in stored
        assert "as eye sees it: A translucent blue rectangle." in stored
        assert len(downloads) == 2

        await ann.send(
            general,
            f"{client.user.mention} and this one?",
            attachments=[("huge.txt", b"x" * 60_000)],
        )
        assert len(downloads) == 2  # refused before download
        assert bot_messages(general, client)[-2].content == (
            "huge.txt is too large (58 KB; the limit is 48 KB), so I did not open it."
        )


def test_the_readme_invite_permissions_are_the_ones_the_bot_needs() -> None:
    needed = discord.Permissions(
        view_channel=True,
        send_messages=True,
        send_messages_in_threads=True,
        create_public_threads=True,
        read_message_history=True,
        attach_files=True,
    )
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"permissions={needed.value}" in readme and f"`{needed.value}`" in readme


def button_labels(message: Any) -> list[str]:
    """Button labels of a raw payload's or a discord.py message's components."""
    labels = []
    for row in message.components:
        children = row.get("components", []) if isinstance(row, dict) else row.children
        labels += [c["label"] if isinstance(c, dict) else c.label for c in children]
    return labels


def stored(env: Any, message: Any) -> Any:
    """The message as the simulated Discord holds it now (after the bot's edits)."""
    return env.backend.get_message(message.channel_id, message.id)


async def test_image_proposals_get_buttons_and_an_edit_form_for_their_user_only(
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
) -> None:
    fake_server.behaviour.reply = "a lighthouse at dusk"  # the prompt the character writes
    generator = RecordingGenerator()
    brain = fake_server_brain(
        fake_server,
        sqlite_url,
        image_generator=generator,
        images_config=ImagesConfig(default_size="64x64", confirm=True),
    )
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        ann = guild.add_member(env.create_user("ann"))
        bob = guild.add_member(env.create_user("bob"))
        asked = await ann.slash(channel, "sd", prompt="scene")
        proposal = asked.response
        assert proposal.content.startswith(
            "🎨 I'd draw: a lighthouse at dusk\nDraw it, edit the prompt"
        )
        assert button_labels(proposal) == ["Draw it", "Edit prompt", "Cancel"]

        intruder = await bob.click(proposal, label="Draw it")
        assert intruder.ephemeral and intruder.response.content == NOT_YOUR_PROPOSAL
        assert generator.requests == []

        form = await ann.click(proposal, label="Edit prompt")
        assert form.modal is not None and "a lighthouse at dusk" in str(form.modal)
        drawn = await ann.submit_modal(form, {"prompt": "a lighthouse at night, stormy sea"})
        assert [r.prompt for r in generator.requests] == ["a lighthouse at night, stormy sea"]
        assert drawn.followups[-1].attachments[0].filename.endswith(".png")
        assert button_labels(stored(env, proposal)) == []  # answered: the buttons are gone
        turns = await brain.history.recent(f"discord:{channel.id}")
        assert any(
            t.content == "a lighthouse at night, stormy sea" and t.author == "ann" for t in turns
        )

        await ann.send(
            channel, f"{client.user.mention} /sd me"
        )  # a typed command: the same buttons
        second = bot_messages(channel, client)[-1]
        assert button_labels(second) == ["Draw it", "Edit prompt", "Cancel"]
        cancelled = await ann.click(second, label="Cancel")
        assert cancelled.response.content == "All right, I won't draw it."
        assert len(generator.requests) == 1

        third = (await ann.slash(channel, "sd", prompt="you")).response
        await ann.click(third, label="Draw it")
        assert [r.prompt for r in generator.requests][-1] == "a lighthouse at dusk"


async def test_replying_to_a_drawn_image_shows_it_to_the_vision_character(
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
) -> None:
    fake_server.behaviour.reply = "A red square."
    endpoint = EndpointConfig(base_url=fake_server.base_url, context_window=4096)
    brain = Brain(
        characters=[
            CharacterConfig(name="eye", endpoint="f", model="llava", vision=True),
            CharacterConfig(name="mom", endpoint="f", model="fake", role="synthesizer"),
        ],
        clients={"f": ModelClient("f", endpoint)},
        history=HistoryStore(sqlite_url),
        image_generator=RecordingGenerator(),
        images_config=ImagesConfig(default_size="64x64"),
    )
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        ann = guild.add_member(env.create_user("ann"))
        drawn = (await ann.slash(channel, "sd", prompt="a red square", size="64x64")).followups[-1]
        await ann.send(channel, "what colour is this?", reply_to=drawn.message)  # no mention needed
        seen = [
            last_user(r.body) for r in fake_server.requests if isinstance(last_user(r.body), list)
        ]
        assert len(seen) == 1  # the vision character looked, once
        question, picture = seen[0]
        assert question == {"type": "text", "text": "what colour is this?"}
        assert picture["image_url"]["url"].startswith("data:image/png;base64,")
        assert bot_messages(channel, client)[-1].content == "A red square."
        fetched = [
            r
            for r in env.http_requests
            if r.method == "GET" and r.path.endswith(f"/messages/{drawn.message.id}")
        ]
        assert len(fetched) <= 1  # issue 17 item 16: the replied-to message is fetched once


def replies_to(channel: Any, client: discord.Client, question: discord.Message) -> list[str]:
    """What the bot sent in the channel, each message checked to be a reply to `question`."""
    sent = bot_messages(channel, client)
    assert sent and all(
        m.reference is not None and m.reference.message_id == question.id for m in sent
    ), [(m.content, m.reference) for m in sent]
    return [m.content for m in sent]


async def test_a_note_and_the_answer_after_it_both_reply_to_the_message(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """Issue 22 item 3: no vision here, so a note about the picture, then the answer."""
    fake_server.behaviour.reply = "Here is my answer."
    brain = fake_server_brain(fake_server, sqlite_url)
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        question = await ann.send(
            general,
            f"{client.user.mention} what colour is this?",
            attachments=[("square.png", png_bytes())],
        )
        assert replies_to(general, client, question) == [
            "I can't look at images (square.png): no character with vision is configured.",
            "Here is my answer.",
        ]


async def test_a_think_answer_is_a_reply_too(
    llama_endpoint: EndpointConfig, sqlite_url: str
) -> None:
    """Issue 22 item 3: the status and the answer of a typed /think both reply to it."""
    brain = smollm2_mixture(llama_endpoint, HistoryStore(sqlite_url), extensions=["deep_thinking"])
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        question = await ann.send(
            general, f"{client.user.mention} /think Tea or coffee? --rounds 2"
        )
        status, *answer = replies_to(general, client, question)
        assert status.startswith("🤔 Round ") and answer and answer[0].strip()


async def test_a_stopped_think_says_so_and_the_notice_replies(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """Issue 22 items 3 and 4, on Discord."""
    fake_server.behaviour = long_slow_reply()
    endpoint = EndpointConfig(base_url=fake_server.base_url, context_window=4096)
    characters = [
        CharacterConfig(name=name, endpoint="f", model="fake", role=role)
        for name, role in (("logic", "member"), ("critic", "member"), ("mom", "synthesizer"))
    ]
    brain = Brain(
        characters=characters,
        clients={"f": ModelClient("f", endpoint)},
        history=HistoryStore(sqlite_url),
        extensions=["deep_thinking"],
    )
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        general = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        sending = asyncio.create_task(
            ann.send(general, f"{client.user.mention} /think Tea or coffee? --rounds 2")
        )
        await eventually(lambda: bool(fake_server.requests))  # round 1 is under way
        await brain.shutdown(grace_s=0)
        question = await sending
        assert replies_to(general, client, question) == [
            "🤔 Cut off in round 1/2: I was stopped before I could finish.",
            f"⚠️ {STOPPED_MID_REPLY}",
        ]


def test_check_names_a_malformed_token_without_going_online(
    fake_server: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 22 item 6: `mombot check` says what is wrong with the token's form."""
    bot_id = base64.urlsafe_b64encode(b"123456789012345678").decode().rstrip("=")
    good = f"{bot_id}.GaBcDe.{'x' * 38}"
    assert discord_token_problem(good) is None
    assert discord_token_problem(f'"{good}"') == "the token is not three parts separated by dots"
    assert discord_token_problem(f"aGVsbG8.GaBcDe.{'x' * 38}") == (
        "the token's first part is not a bot's id"
    )
    config = tmp_path / "config.toml"
    config.write_text(
        f'[bot]\ndata_dir = "{tmp_path}"\n'
        f'[endpoints.fake]\nbase_url = "{fake_server.base_url}"\ncontext_window = 4096\n'
        '[[characters]]\nname = "mom"\nendpoint = "fake"\nmodel = "fake"\n'
        '[routing]\nmode = "off"\n[discord]\nenabled = true\n'
    )
    monkeypatch.setenv("MOMBOT_DISCORD_TOKEN", f"Bot {good}")
    assert main(["check", "--config", str(config)]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if "FAILED" in line]
    assert failed == [
        "discord: FAILED — the token starts with 'Bot ': set MOMBOT_DISCORD_TOKEN to the token "
        f"alone. {TOKEN_FIX}"
    ]


async def test_check_reports_the_login_and_a_missing_message_content_intent(
    make_brain: Callable[..., Brain],
) -> None:
    """Issue 22 item 6: logged in (here to simcord, whose application has no intent flags)."""
    async with discord_world(make_brain()) as (env, client):
        findings = await describe_discord(client)
    assert [f.ok for f in findings] == [True, False]
    assert findings[0].line.startswith(
        f"discord: ok — logged in as {client.user.name} (application "
    )
    assert findings[1].line.startswith("discord: FAILED — the Message Content intent is off")


async def test_unsure_the_bot_asks_with_two_buttons_for_the_asking_user_only(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """Issue 19: Draw it / Just answer, for the user who asked; one press, never both."""
    fake_server.behaviour.reply = "a cat on a red roof"
    brain = asking_brain(fake_server, sqlite_url)
    generator = brain.images.generator
    async with discord_world(brain) as (env, client):
        guild = env.create_guild()
        channel = guild.create_text_channel("general")
        ann = guild.add_member(env.create_user("ann"))
        bob = guild.add_member(env.create_user("bob"))
        question = await ann.send(channel, f"{client.user.mention} a cat on a roof")
        (asked,) = replies_to(channel, client, question)
        assert asked == ASK_WITH_BUTTONS
        buttons = bot_messages(channel, client)[-1]
        assert button_labels(buttons) == ["Draw it", "Just answer"]
        intruder = await bob.click(buttons, label="Draw it")
        assert intruder.ephemeral and intruder.response.content == NOT_YOUR_PROPOSAL
        drawn = await ann.click(buttons, label="Draw it")
        assert [r.prompt for r in generator.requests] == ["a cat on a red roof"]
        assert drawn.followups[-1].attachments[0].filename.endswith(".png")
        now = env.backend.get_message(channel.id, buttons.id)
        assert button_labels(now) == []  # answered: the buttons are gone

        fake_server.behaviour.reply = "Dogs love puddles."
        await ann.send(channel, f"{client.user.mention} a dog in the rain")
        second = bot_messages(channel, client)[-1]
        answered = await ann.click(second, label="Just answer")
        assert answered.response.content == "Dogs love puddles."
        assert len(generator.requests) == 1
