"""`/persona` (issue 34 item 5): who you are to the bot, per user on every channel of a
platform, kept in the database, read into each prompt after your message and into `/sd me`."""

from __future__ import annotations

from brain.brain import Brain
from brain.config import ImagesConfig
from brain.history.personas import MAX_PERSONA_CHARS
from brain.messages import Inbound
from tests.fake_openai import FakeOpenAIServer
from tests.helpers import RecordingGenerator, RecordingOutbox, close_brain
from tests.load import fake_brain

ANN = "I'm Ann, a beekeeper with red hair and a green raincoat."


def said(brain: Brain, text: str, user: str = "u1", channel: str = "hive") -> Inbound:
    return Inbound("test", channel, user, "Ann" if user == "u1" else "Bob", text, is_admin=True)


async def reply(brain: Brain, text: str, **where: str) -> RecordingOutbox:
    outbox = RecordingOutbox()
    await brain.handle(said(brain, text, **where), outbox)
    return outbox


def last_user_message(server: FakeOpenAIServer) -> str:
    return str(server.requests[-1].body["messages"][-1]["content"])


async def test_a_persona_follows_its_user_into_every_channel_and_survives_a_restart(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    brain = fake_brain(fake_server, sqlite_url)
    assert "no persona yet" in (await reply(brain, "/persona")).text
    assert "know you as" in (await reply(brain, f"/persona {ANN}")).text
    await reply(brain, "What should I plant?")
    about = f"[About Ann, who wrote this: {ANN}]"
    assert last_user_message(fake_server).startswith("What should I plant?")
    assert about in last_user_message(fake_server)
    await reply(brain, "And in the shade?", channel="garden")  # another channel: still her
    assert about in last_user_message(fake_server)
    await reply(brain, "Hello there, friend", user="u2")  # someone else: not hers
    assert "About" not in last_user_message(fake_server)
    await close_brain(brain)

    again = fake_brain(fake_server, sqlite_url)  # a restart: it is in the database
    assert ANN in (await reply(again, "/persona")).text
    too_long = await reply(again, "/persona " + "x" * (MAX_PERSONA_CHARS + 1))
    assert too_long.errors and str(MAX_PERSONA_CHARS) in too_long.errors[0]
    await reply(again, "/persona clear")
    await reply(again, "What should I plant now?")
    assert "About" not in last_user_message(fake_server)
    await close_brain(again)


async def test_sd_me_draws_you_as_your_persona_says(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    fake_server.behaviour.reply = "a beekeeper in a green raincoat"  # the prompt it writes
    brain = fake_brain(
        fake_server,
        sqlite_url,
        image_generator=RecordingGenerator(),
        images_config=ImagesConfig(confirm=False),
    )
    await reply(brain, f"/persona {ANN}")
    await reply(brain, "/sd me")
    asked = [r.body for r in fake_server.requests if "Portray" in str(r.body["messages"])]
    assert asked and f"Ann (who says of themselves: {ANN})" in str(asked[-1]["messages"])
    await close_brain(brain)
