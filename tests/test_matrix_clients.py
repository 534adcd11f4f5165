"""Matrix as current clients speak it (issue 22), against the real Synapse: captions, files,
replies that are replies, a stopped /think, what a direct room is, `mombot check`, and
what `mombot run` writes to stderr."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import nio
import pytest
import pytest_asyncio

from bot.cli import main
from brain.answering import STOPPED_MID_REPLY
from brain.brain import Brain
from brain.config import CharacterConfig, EndpointConfig
from brain.history.store import HistoryStore
from brain.models.client import ModelClient
from brain.routing.question import ASK
from tests.fake_openai import FakeOpenAIServer, last_user, long_slow_reply
from tests.helpers import asking_brain, close_brain, eventually
from tests.load import fake_brain
from tests.matrix_world import Bot, Human, joined, new_id, png, reply_to
from tests.synapse import Synapse

World = tuple[Human, Bot, FakeOpenAIServer]


@pytest_asyncio.fixture
async def world(
    synapse: Synapse, fake_server: FakeOpenAIServer, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[World]:
    """The bot on one character of the fake model server (no vision), and a person."""
    fake_server.behaviour.reply = "Here is my answer."
    brain = fake_brain(fake_server, sqlite_url)
    human, bot = await Bot.with_human(synapse, brain, tmp_path)
    yield human, bot, fake_server
    await bot.stop()
    await human.close()
    await close_brain(brain)


def another_reply_to(
    event_id: str, bot_id: str, *seen: nio.Event
) -> Callable[[str, nio.Event], bool]:
    """A reply to `event_id` other than those already seen."""
    ids = {e.event_id for e in seen}
    return lambda r, e: reply_to(event_id, bot_id)(r, e) and e.event_id not in ids


async def direct_room(human: Human, bot: Bot, **options: Any) -> str:
    room = await human.room_with(bot.config.user_id, **options)
    await human.wait_for(lambda r, e: r == room and joined(bot.config.user_id)(r, e))
    return room


async def test_an_image_caption_is_the_question_and_every_message_about_it_replies(
    world: World,
) -> None:
    """Items 1 and 3: `body` is the caption when `filename` names the file; the note about
    the picture and the answer after it both reply to the message."""
    human, bot, server = world
    bot_id = bot.config.user_id
    room = await direct_room(human, bot)
    data = png()
    where = await human.upload(data, "square.png")
    info = {"mimetype": "image/png", "size": len(data), "w": 48, "h": 32}
    sent = await human.send(
        room,
        {
            "msgtype": "m.image",
            "body": "What colour is this square?",
            "filename": "square.png",
            "info": info,
            **where,
        },
    )
    note = await human.wait_for(reply_to(sent, bot_id))
    assert note.body == (
        "I can't look at images (square.png): no character with vision is configured."
    )
    answer = await human.wait_for(another_reply_to(sent, bot_id, note))
    assert answer.body == "Here is my answer."
    assert last_user(server.requests[-1].body).startswith("What colour is this square?")


@pytest.mark.parametrize("encrypted", [False, True])
async def test_files_are_read_and_audio_and_video_get_a_note(world: World, encrypted: bool) -> None:
    """Item 2: m.file (plain and encrypted) reaches the model; m.audio and m.video are told."""
    human, bot, server = world
    bot_id = bot.config.user_id
    room = await direct_room(human, bot, encrypted=encrypted)
    text = b"remember the milk"
    where = await human.upload(text, "notes.txt", encrypted=encrypted, content_type="text/plain")
    info = {"mimetype": "text/plain", "size": len(text)}
    sent = await human.send(room, {"msgtype": "m.file", "body": "notes.txt", "info": info, **where})
    await human.wait_for(reply_to(sent, bot_id))
    assert "[file notes.txt]\n```\nremember the milk\n```" in last_user(server.requests[-1].body)
    for msgtype, name, mimetype in (("m.audio", "voice.ogg", "audio/ogg"),
                                    ("m.video", "clip.mp4", "video/mp4")):  # fmt: skip
        where = await human.upload(b"\0" * 64, name, encrypted=encrypted, content_type=mimetype)
        content = {"msgtype": msgtype, "body": name, "info": {"mimetype": mimetype}, **where}
        sent = await human.send(room, content)
        note = await human.wait_for(reply_to(sent, bot_id))
        assert note.body == (
            f"I can't read {name} ({mimetype}): send images (PNG, JPEG, WebP, GIF) or text files."
        )
    assert len(server.requests) == 1  # nothing but the text file reached the model


def thinking_brain(server: FakeOpenAIServer, sqlite_url: str) -> Brain:
    """Two members and a synthesizer on one fake server, with /think."""
    characters = [
        CharacterConfig(name=name, endpoint="fake", model="fake", role=role)
        for name, role in (("logic", "member"), ("critic", "member"), ("mom", "synthesizer"))
    ]
    endpoint = EndpointConfig(base_url=server.base_url, context_window=8192)
    return Brain(
        characters=characters,
        clients={"fake": ModelClient("fake", endpoint)},
        history=HistoryStore(sqlite_url),
        extensions=["deep_thinking"],
    )


async def test_a_stopped_think_says_so_in_its_status_and_the_notice_replies(
    synapse: Synapse, fake_server: FakeOpenAIServer, sqlite_url: str, tmp_path: Path
) -> None:
    """Items 3 and 4: shut down mid-/think, the status is edited to say it was cut off,
    and the "stopped" notice replies to the question."""
    fake_server.behaviour = long_slow_reply()
    brain = thinking_brain(fake_server, sqlite_url)
    human, bot = await Bot.with_human(synapse, brain, tmp_path)
    bot_id = bot.config.user_id
    room = await direct_room(human, bot)
    asked = await human.say(room, "/think Tea or coffee? --rounds 2")
    status = await human.wait_for(reply_to(asked, bot_id))
    assert status.body == "🤔 Thinking about it: round 1/2…"
    await eventually(lambda: bool(fake_server.requests))  # round 1 is under way
    await brain.shutdown(grace_s=0)
    edit = await human.wait_for(
        lambda _, e: (
            e.sender == bot_id
            and e.source["content"].get("m.relates_to", {}).get("event_id") == status.event_id
        )
    )
    assert edit.source["content"]["m.new_content"]["body"] == (
        "🤔 Cut off in round 1/2: I was stopped before I could finish."
    )
    notice = await human.wait_for(another_reply_to(asked, bot_id, status))
    assert notice.body == f"⚠️ {STOPPED_MID_REPLY}"
    await bot.stop()
    await human.close()
    await close_brain(brain)


async def put_m_direct(bot: Bot, content: dict[str, list[str]]) -> None:
    """Set the bot account's m.direct, as another client of that account would."""
    client = bot.adapter.client
    url = f"{bot.config.homeserver}/_matrix/client/v3/user/{client.user_id}/account_data/m.direct"
    headers = {"Authorization": f"Bearer {client.access_token}"}
    async with aiohttp.ClientSession() as http, http.put(url, json=content, headers=headers) as r:
        assert r.status == 200, await r.text()


async def until(condition: Callable[[], Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_m_direct_decides_and_the_bot_marks_the_direct_chats_it_accepts(
    world: World,
) -> None:
    """Item 5: the account's m.direct is the room's DM status; an is_direct invite the bot
    accepts goes into it, as clients do."""
    human, bot, _ = world
    bot_id = bot.config.user_id
    group = await direct_room(human, bot, direct=False)  # two members, invited as a group
    unaddressed = await human.say(group, "just thinking out loud")
    mentioned = await human.say(group, "hello?", **{"m.mentions": {"user_ids": [bot_id]}})
    await human.wait_for(reply_to(mentioned, bot_id))
    assert not any(reply_to(unaddressed, bot_id)(r, e) for r, e in human.events)

    await put_m_direct(bot, {human.user_id: [group]})  # marked as a DM from another client

    async def marked() -> bool:
        return bot.adapter.direct_rooms.is_direct(group, 2)

    await until(marked)
    now = await human.say(group, "and now, without a mention?")
    await human.wait_for(reply_to(now, bot_id))

    direct = await direct_room(human, bot)  # invited with is_direct

    async def listed() -> bool:
        response = await bot.adapter.client.list_direct_rooms()
        return direct in getattr(response, "rooms", {}).get(human.user_id, [])

    await until(listed)


async def test_a_room_joined_without_an_invite_counts_by_its_size(
    world: World, synapse: Synapse, tmp_path: Path
) -> None:
    """Item 5: with neither m.direct nor an invite, two members make a direct room; a third
    member makes it a group room."""
    human, bot, _ = world
    bot_id = bot.config.user_id
    response = await human.client.room_create(preset=nio.RoomPreset.public_chat)
    assert isinstance(response, nio.RoomCreateResponse), response
    room = response.room_id
    assert isinstance(await bot.adapter.client.join(room), nio.JoinResponse)
    await human.wait_for(lambda r, e: r == room and joined(bot_id)(r, e))
    hello = await human.say(room, "hello, just the two of us")
    await human.wait_for(reply_to(hello, bot_id))

    friend = await Human(synapse, tmp_path / "friends").login()
    await friend.client.join(room)
    await human.wait_for(
        lambda r, e: (
            r == room and isinstance(e, nio.RoomMemberEvent) and e.state_key == friend.user_id
        )
    )
    unaddressed = await human.say(room, "now we are three")
    mentioned = await human.say(room, "right?", **{"m.mentions": {"user_ids": [bot_id]}})
    await human.wait_for(reply_to(mentioned, bot_id))
    assert not any(reply_to(unaddressed, bot_id)(r, e) for r, e in human.events)
    await friend.close()


def check_config(tmp_path: Path, synapse: Synapse, server: FakeOpenAIServer, user_id: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[endpoints.fake]\nbase_url = "{server.base_url}"\ncontext_window = 4096\n'
        '[[characters]]\nname = "mom"\nendpoint = "fake"\nmodel = "fake"\n'
        '[routing]\nmode = "off"\n'
        f'[matrix]\nenabled = true\nhomeserver = "{synapse.url}"\nuser_id = "{user_id}"\n'
    )
    return config


async def test_check_logs_in_to_matrix_and_names_what_fails(
    synapse: Synapse,
    fake_server: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Item 6: `mombot check` reaches the homeserver, logs in and reports encryption; a
    wrong password or an unreachable homeserver is one clear line and a failing exit."""
    bot_id = synapse.register(f"mombot{new_id()}")
    config = check_config(tmp_path, synapse, fake_server, bot_id)
    monkeypatch.setenv("MOMBOT_MATRIX_PASSWORD", "wrong")
    assert await asyncio.to_thread(main, ["check", "--config", str(config)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if "FAILED" in line] == [
        f"matrix ({synapse.url}): FAILED — login failed: M_FORBIDDEN Invalid username or password. "
        "Fix: check matrix.user_id and MOMBOT_MATRIX_PASSWORD or MOMBOT_MATRIX_ACCESS_TOKEN"
    ]
    monkeypatch.setenv("MOMBOT_MATRIX_PASSWORD", "password")
    assert await asyncio.to_thread(main, ["check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"matrix ({synapse.url}): ok — logged in as {bot_id} (device " in out
    assert "  encryption available" in out and out.endswith("check: all good\n")

    unreachable = check_config(tmp_path, synapse, fake_server, bot_id)
    unreachable.write_text(unreachable.read_text().replace(synapse.url, "http://127.0.0.1:9"))
    assert await asyncio.to_thread(main, ["check", "--config", str(unreachable)]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and failed[0].startswith(
        "matrix (http://127.0.0.1:9): FAILED — cannot reach the homeserver ("
    )


def test_run_keeps_stderr_to_warnings_and_the_log_file_has_everything(
    synapse: Synapse, fake_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    """Item 7: under `mombot run`, matrix-nio's line per event stays in the log file."""
    bot_id = synapse.register(f"mombot{new_id()}")
    config = check_config(tmp_path, synapse, fake_server, bot_id)
    log = tmp_path / "data" / "mombot.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), "run"],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "MOMBOT_MATRIX_PASSWORD": "password"},
    )
    try:
        deadline = time.monotonic() + 120
        while "answering from now on" not in (log.read_text() if log.exists() else ""):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.2)  # polling the log file for a line, not waiting for time to pass
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert " INFO " in log.read_text()
    assert "INFO" not in err and f"mombot: running on Matrix; the full log is {log}" in err


async def test_notices_emotes_stickers_locations_and_reactions_get_no_reply(world: World) -> None:
    """The README's list of what is ignored, each sent in a direct room before a question
    (one reply at a time per room, in order: an answer to any would come first)."""
    human, bot, server = world
    bot_id = bot.config.user_id
    room = await direct_room(human, bot)
    ignored = [
        await human.send(room, {"msgtype": "m.notice", "body": "a notice from another bot"}),
        await human.send(room, {"msgtype": "m.emote", "body": "waves"}),
        await human.send(
            room, {"msgtype": "m.location", "body": "here", "geo_uri": "geo:51.5,-0.1"}
        ),
    ]
    for event_type, content in (
        ("m.sticker", {"body": "a cat", "url": "mxc://example.org/cat", "info": {}}),
        ("m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": ignored[0],
                                         "key": "👍"}}),
    ):  # fmt: skip
        response = await human.client.room_send(room, event_type, content)
        assert isinstance(response, nio.RoomSendResponse), response
        ignored.append(response.event_id)
    asked = await human.say(room, "and a question")
    await human.wait_for(reply_to(asked, bot_id))
    assert not any(
        reply_to(event_id, bot_id)(r, e) for event_id in ignored for r, e in human.events
    )
    assert len(server.requests) == 1


async def test_unsure_the_bot_asks_and_a_reply_decides(
    synapse: Synapse, fake_server: FakeOpenAIServer, sqlite_url: str, tmp_path: Path
) -> None:
    """Issue 19 on Matrix: a plain question, answered by the user's next message."""
    fake_server.behaviour.reply = "a cat on a red roof"
    brain = asking_brain(fake_server, sqlite_url)
    generator = brain.images.generator
    human, bot = await Bot.with_human(synapse, brain, tmp_path)
    bot_id = bot.config.user_id
    room = await direct_room(human, bot)
    sent = await human.say(room, "a cat on a roof")
    asked = await human.wait_for(reply_to(sent, bot_id))
    assert asked.body == ASK
    yes = await human.say(room, "yes")
    image = await human.wait_for(
        lambda _, e: isinstance(e, nio.RoomMessageImage) and e.sender == bot_id
    )
    assert image.source["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == yes
    assert [r.prompt for r in generator.requests] == ["a cat on a red roof"]

    fake_server.behaviour.reply = "Dogs love puddles."
    await human.say(room, "a dog in the rain")
    no = await human.say(room, "no")
    answer = await human.wait_for(reply_to(no, bot_id))
    assert answer.body == "Dogs love puddles." and len(generator.requests) == 1
    await bot.stop()
    await human.close()
    await close_brain(brain)
