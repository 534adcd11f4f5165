"""One owner per channel (issue 32), on the brain itself: every event of a channel applied in
the order it arrived, edits and deletions that land wherever their message is, a bound on
what a channel may have waiting. The platforms' own tests drive the same paths from
Discord (simcord) and Matrix (Synapse)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from brain.answering import BUSY, STOPPED
from brain.brain import Brain
from brain.channels.events import NewMessage
from brain.config import ChannelsConfig
from brain.messages import Inbound
from brain.models.embedder import Embedder
from tests.fake_openai import Behaviour, FakeOpenAIServer, last_user
from tests.helpers import RecordingOutbox, close_brain, eventually, memory_brain
from tests.load import fake_brain
from tests.test_memory import FACT, summary_or_echo

CHANNEL = "test:room"


def echo(body: dict[str, Any]) -> str:
    return f"You said: {last_user(body)}"


def said(text: str, number: int) -> Inbound:
    """Ann's message `number` in the room (its platform id "test:m<number>")."""
    return Inbound("test", "room", "ann", "Ann", text, message_id=f"m{number}")


def held_server(server: FakeOpenAIServer) -> threading.Event:
    """Every reply waits until the returned event is set; replies echo the user's words."""
    release = threading.Event()
    server.behaviour = Behaviour(reply_for=echo, hold=release)
    return release


def send(brain: Brain, message: Inbound) -> tuple[RecordingOutbox, asyncio.Task[None]]:
    """Stamp `message` now, as an adapter does on arrival, and deliver it in a task."""
    outbox = RecordingOutbox()
    ticket = brain.arrive(message.channel_key, message.source)
    return outbox, asyncio.create_task(ticket.deliver(NewMessage(message, outbox)))


async def stored(brain: Brain) -> list[str]:
    return [t.content for t in reversed(await brain.history.recent(CHANNEL))]


async def test_a_message_deleted_while_it_waits_is_never_answered_nor_stored(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    release = held_server(fake_server)
    brain = fake_brain(fake_server, sqlite_url)
    first, answering = send(brain, said("What is a lighthouse?", 1))
    await eventually(lambda: len(fake_server.requests) == 1)  # the first reply is being written
    second, waiting = send(brain, said("My PIN is 4471, remember it", 2))
    await brain.message_changed("test:m2", None)  # deleted while it waits
    release.set()
    await asyncio.gather(answering, waiting)
    assert first.text == "You said: What is a lighthouse?"
    assert second.messages == [] and second.errors == []  # never answered
    assert len(fake_server.requests) == 1  # never sent to a model
    assert "4471" not in " ".join(await stored(brain))  # never stored
    await close_brain(brain)


async def test_a_message_edited_while_it_waits_is_answered_with_its_new_text(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    release = held_server(fake_server)
    brain = fake_brain(fake_server, sqlite_url)
    _, answering = send(brain, said("What is a lighthouse?", 1))
    await eventually(lambda: len(fake_server.requests) == 1)
    second, waiting = send(brain, said("Whats a lighthuose?", 2))
    await brain.message_changed("test:m2", "What's a lightship?")  # a typo fixed while it waits
    release.set()
    await asyncio.gather(answering, waiting)
    assert second.text == "You said: What's a lightship?"
    assert "Whats a lighthuose?" not in await stored(brain)
    await close_brain(brain)


async def test_an_edit_or_deletion_of_the_message_being_answered_lands_on_its_stored_turn(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    release = held_server(fake_server)
    brain = fake_brain(fake_server, sqlite_url)
    _, answering = send(brain, said("Whats a lighthuose?", 1))
    await eventually(lambda: len(fake_server.requests) == 1)  # its turn is being answered
    editing = asyncio.create_task(brain.message_changed("test:m1", "What's a lighthouse?"))
    release.set()
    await asyncio.gather(answering, editing)
    assert await stored(brain) == ["What's a lighthouse?", "You said: Whats a lighthuose?"]

    release.clear()
    _, answering = send(brain, said("My PIN is 4471", 2))
    await eventually(lambda: len(fake_server.requests) == 2)
    deleting = asyncio.create_task(brain.message_changed("test:m2", None))
    release.set()
    await asyncio.gather(answering, deleting)
    assert "My PIN is 4471" not in await stored(brain)
    await close_brain(brain)


async def test_past_the_cap_the_sender_is_told_busy_and_nothing_else_is_lost_or_reordered(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    release = held_server(fake_server)
    brain = fake_brain(fake_server, sqlite_url, channels_config=ChannelsConfig(max_waiting=20))
    sent = [send(brain, said(f"message {n}", n)) for n in range(25)]  # all at once
    await eventually(lambda: sum(outbox.errors == [BUSY] for outbox, _ in sent) == 5)
    release.set()
    await asyncio.gather(*(task for _, task in sent))
    busy = [n for n, (outbox, _) in enumerate(sent) if outbox.errors == [BUSY]]
    assert busy == [20, 21, 22, 23, 24]  # the last five, each told once
    for n, (outbox, _) in enumerate(sent[:20]):
        assert outbox.text == f"You said: message {n}" and outbox.errors == []
    assert [t for t in await stored(brain) if not t.startswith("You said")] == [
        f"message {n}" for n in range(20)
    ]
    assert len(brain.channels) == 0  # idle again: the channel's owner is gone
    await close_brain(brain)


async def test_a_message_given_up_before_its_turn_never_holds_the_channel(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """A delivery cancelled while an earlier message was still being prepared (an adapter
    stopping its tasks) must not leave a message nobody will answer at the head of the line."""
    fake_server.behaviour = Behaviour(reply_for=echo)
    brain = fake_brain(fake_server, sqlite_url)
    first = brain.arrive(CHANNEL, "test:m1")  # still downloading
    second = brain.arrive(CHANNEL, "test:m2")
    delivering = second.deliver(NewMessage(said("never mind", 2), RecordingOutbox()))
    delivering.send(None)  # runs until it waits for the first message's turn
    with pytest.raises(asyncio.CancelledError):
        delivering.throw(asyncio.CancelledError())
    answered = RecordingOutbox()
    await first.deliver(NewMessage(said("hello", 1), answered))
    later = RecordingOutbox()
    await asyncio.wait_for(brain.handle(said("still there?", 3), later), 30)
    assert (answered.text, later.text) == ("You said: hello", "You said: still there?")
    assert len(brain.channels) == 0
    await close_brain(brain)


async def test_a_slow_reply_in_one_channel_never_delays_another(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    release = held_server(fake_server)
    brain = fake_brain(fake_server, sqlite_url)
    _, slow = send(brain, said("a long question", 1))
    await eventually(lambda: len(fake_server.requests) == 1)
    other = Inbound("test", "elsewhere", "bob", "Bob", "hi", message_id="m9")
    _, quick = send(brain, other)
    await eventually(lambda: len(fake_server.requests) == 2)  # asked at once, not after
    assert not slow.done()
    release.set()
    await asyncio.gather(slow, quick)
    await close_brain(brain)


async def test_a_deleted_message_that_went_into_the_summary_leaves_it(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    fake_server.behaviour = Behaviour(reply_for=summary_or_echo)  # a scripted summarizer
    brain = memory_brain(fake_server, sqlite_url, embedder, summary_every=6)
    memory = brain.memory
    await brain.handle(said(FACT, 0), RecordingOutbox())
    for i in range(1, 25):  # enough to push it out of the window and into a summary
        await brain.handle(said(f"Number {i}: tell me about the sea.", i), RecordingOutbox())
    await memory.summaries_written()
    shown = RecordingOutbox()
    await brain.handle(said("/memory", 99), shown)
    assert "Alba" in shown.text  # the summary was built from the message

    await brain.message_changed("test:m0", None)
    shown = RecordingOutbox()
    await brain.handle(said("/memory", 100), shown)
    assert "Alba" not in shown.text  # the summary built from it went with it
    await close_brain(brain)


async def test_a_reply_being_written_can_be_stopped_and_the_channel_goes_on(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """Issue 36: the brain's stop: the reply in progress ends where it was, its user is
    told, nothing of it is stored (the history keeps complete answers only), and the next
    message is answered as usual."""
    fake_server.behaviour = Behaviour(reply="word " * 400, token_delay_s=0.02)
    brain = fake_brain(fake_server, sqlite_url)
    assert brain.stop(CHANNEL) is False  # nothing being written: nothing to stop
    first, answering = send(brain, said("Tell me a long story", 1))
    await eventually(lambda: "word" in first.text)  # part of it is on screen
    assert brain.stop(CHANNEL) is True
    await answering
    assert first.messages[-1] == STOPPED and first.errors == []
    assert 0 < first.text.count("word") < 400  # it ended where it was
    assert await stored(brain) == ["Tell me a long story"]  # the question only
    fake_server.behaviour = Behaviour(reply_for=echo)
    second, answered = send(brain, said("Are you there?", 2))
    await answered
    assert second.text == "You said: Are you there?"
    await close_brain(brain)
