"""Memory beyond the window: recalled in its own channel only, forgotten on request, summed
up in the background, and kept across a restart (on the real SmolLM2 server too)."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import insert

from bot.embedded import EmbeddedConfig, EmbeddedServer
from brain.brain import Brain
from brain.characters.recall import HEADER
from brain.config import CharacterConfig, EndpointConfig, MemoryConfig
from brain.database.tables import TurnRow
from brain.history.store import HistoryStore
from brain.memory.lexical import search_terms
from brain.memory.vectors import ChannelVectors
from brain.messages import Inbound
from brain.models.client import Message, ModelClient
from brain.models.embedder import Embedder
from tests.conftest import MODEL
from tests.fake_openai import Behaviour, FakeOpenAIServer
from tests.helpers import RecordingOutbox, chat_filler, close_brain, memory_brain

FACT = "My sister is called Alba, and she lives in Valencia."
QUESTION = "What is my sister called again?"
UNWORDED = "Where's my sibling's home, and what's her name?"


def inbound(text: str, channel: str = "room") -> Inbound:
    return Inbound("test", channel, "u1", "ann", text, is_admin=True)


def last_prompt(server: FakeOpenAIServer) -> list[dict[str, Any]]:
    """The messages of the newest reply (streamed; the summary's request is not)."""
    return [r.body for r in server.requests if r.body.get("stream")][-1]["messages"]


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    return request.getfixturevalue("postgres_url")


async def told_then_buried(brain: Brain, channel: str) -> None:
    """The fact told once in `channel`, then enough small talk to push it out of the window."""
    await brain.handle(inbound(FACT, channel), RecordingOutbox())
    await chat_filler(brain.history, f"test:{channel}", 40)
    assert brain.memory is not None
    await brain.memory.settle()


async def test_an_old_fact_comes_back_with_its_time_and_only_in_its_channel(
    fake_server: FakeOpenAIServer, database_url: str, embedder: Embedder
) -> None:
    brain = memory_brain(fake_server, database_url, embedder)
    channel, other = f"a-{id(brain)}", f"b-{id(brain)}"
    await told_then_buried(brain, channel)

    await brain.handle(inbound(QUESTION, channel), RecordingOutbox())
    messages = last_prompt(fake_server)
    history = " ".join(m["content"] for m in messages[1:-1])
    assert "Alba" not in history  # far out of the window...
    asked = messages[-1]["content"]
    assert asked.startswith(HEADER) and asked.endswith(QUESTION)  # ...yet recalled, dated
    assert re.search(r"- \(\d{4}-\d\d-\d\d \d\d:\d\d\) ann: My sister is called Alba", asked)

    await brain.handle(inbound(QUESTION, other), RecordingOutbox())
    assert "Alba" not in str(last_prompt(fake_server))  # another channel: nothing
    await close_brain(brain)


async def test_a_channels_vectors_are_only_touched_in_the_embedders_thread(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder, monkeypatch: Any
) -> None:
    """Recall reads the vectors while new turns are added to them; both happen in the one
    embedder thread, so a search never sees a half-updated buffer (ids from one state,
    vectors from another: wrong turns, or a failed recall)."""
    threads: set[str] = set()
    snapshot = ChannelVectors.snapshot

    def recorded(self: ChannelVectors) -> Any:
        threads.add(threading.current_thread().name)
        return snapshot(self)

    monkeypatch.setattr(ChannelVectors, "snapshot", recorded)
    brain = memory_brain(fake_server, sqlite_url, embedder)
    await told_then_buried(brain, "room")
    await brain.handle(inbound(QUESTION), RecordingOutbox())
    assert "Alba" in last_prompt(fake_server)[-1]["content"]  # recalled
    await brain.handle(inbound("And her new address?"), RecordingOutbox())  # a cached channel
    assert threads and all(name.startswith("embedder") for name in threads), threads
    await close_brain(brain)


async def test_a_message_about_something_else_recalls_nothing(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    brain = memory_brain(fake_server, sqlite_url, embedder)
    await told_then_buried(brain, "room")
    await brain.handle(inbound("How do I reverse a list in Python?"), RecordingOutbox())
    assert HEADER not in str(last_prompt(fake_server))
    await close_brain(brain)


async def test_forget_and_reset_leave_nothing_to_recall(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    brain = memory_brain(fake_server, sqlite_url, embedder)
    await told_then_buried(brain, "room")
    shown = RecordingOutbox()
    await brain.handle(inbound("/memory"), shown)
    assert "I can search 21 messages people sent in this channel" in shown.text

    forgot = RecordingOutbox()
    await brain.handle(inbound("/forget sister"), forgot)
    assert "Forgot 1 message(s)" in forgot.text
    await brain.handle(inbound(QUESTION), RecordingOutbox())
    assert "Alba" not in str(last_prompt(fake_server))
    assert all("Alba" not in t.content for t in await brain.history.recent("test:room", limit=99))

    await brain.handle(inbound("/reset"), RecordingOutbox())
    await brain.handle(inbound("/memory"), shown := RecordingOutbox())
    assert "I can search 0 messages" in shown.text  # the question after /reset is not in
    await close_brain(brain)


async def test_forget_in_a_shared_channel_needs_an_admin(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    brain = memory_brain(fake_server, sqlite_url, embedder)
    await told_then_buried(brain, "room")
    refused = RecordingOutbox()
    await brain.handle(Inbound("test", "room", "u2", "bob", "/forget sister"), refused)
    assert refused.errors == ["Only admins can use /forget here."]
    assert await brain.memory.status("test:room") == ("", 21)  # type: ignore[union-attr]
    await close_brain(brain)


async def test_a_rewritten_turn_is_searched_by_its_new_text(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    brain = memory_brain(fake_server, sqlite_url, embedder)
    turn_id = await brain.history.add("test:room", "user", "The cabin key is with Tom.", "ann")
    await brain.history.update(turn_id, "The cabin key is under the blue flower pot.")
    await chat_filler(brain.history, "test:room", 40)
    await brain.memory.settle()  # type: ignore[union-attr]
    await brain.handle(inbound("Where did we hide the cabin key?"), RecordingOutbox())
    asked = last_prompt(fake_server)[-1]["content"]
    assert "blue flower pot" in asked and "with Tom" not in asked
    await close_brain(brain)


async def test_turns_stored_while_the_memory_was_off_are_indexed_at_start(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    plain = HistoryStore(sqlite_url)  # an older mombot, or [memory] enabled = false
    await plain.add("test:room", "user", FACT, "ann")
    await chat_filler(plain, "test:room", 40)
    plain.close()
    brain = memory_brain(fake_server, sqlite_url, embedder)
    await brain.memory.settle()  # type: ignore[union-attr]
    assert await brain.memory.status("test:room") == ("", 21)  # type: ignore[union-attr]
    await brain.handle(inbound(QUESTION), RecordingOutbox())
    assert "Alba" in last_prompt(fake_server)[-1]["content"]
    await close_brain(brain)


def summary_or_echo(body: dict[str, Any]) -> str:
    if "You keep the memory of a chat" in body["messages"][0]["content"]:
        return "Ann's sister Alba lives in Valencia."
    return "Noted."


async def test_the_summary_is_written_in_the_background_and_shown(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    fake_server.behaviour = Behaviour(reply_for=summary_or_echo)
    brain = memory_brain(fake_server, sqlite_url, embedder, summary_every=6)
    await brain.handle(inbound(FACT), RecordingOutbox())
    for i in range(24):  # through the brain, so it knows where the window starts
        await brain.handle(
            inbound(f"Number {i}: tell me something about the sea."), outbox := RecordingOutbox()
        )
        assert outbox.errors == []
    await brain.memory.summaries_written()  # type: ignore[union-attr]
    summaries = [r.body for r in fake_server.requests if "memory of a chat" in str(r.body)]
    assert summaries and FACT in summaries[0]["messages"][1]["content"]
    assert "Noted." in summaries[0]["messages"][1]["content"]  # both sides are summed up

    shown = RecordingOutbox()
    await brain.handle(inbound("/memory"), shown)
    assert (
        "Summary of what fell out of my window: Ann's sister Alba lives in Valencia." in shown.text
    )
    await brain.handle(inbound("Anything else about the sea?"), RecordingOutbox())
    assert (
        "- Summary of older messages: Ann's sister Alba" in last_prompt(fake_server)[-1]["content"]
    )
    await close_brain(brain)


class RecordingClient(ModelClient):
    """The real client, noting every streamed prompt it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prompts: list[list[Message]] = []

    def stream_chat(self, model: str, messages: list[Message], **kwargs: Any) -> Any:
        self.prompts.append(messages)
        return super().stream_chat(model, messages, **kwargs)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def window_1024(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[EmbeddedServer]:
    """The real llama-server with SmolLM2 and a 1024-token window (the session's has 512),
    asking for its key as mombot's own does."""
    log_path = tmp_path_factory.mktemp("llama1024") / "server.log"
    server = EmbeddedServer(EmbeddedConfig(n_ctx=1024, parallel=2), log_path)
    await server.start()
    yield server
    await server.stop()


async def test_a_fact_told_once_is_in_the_prompt_after_150_turns_and_a_restart(
    window_1024: EmbeddedServer, tmp_path: Path, embedder: Embedder
) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    endpoint = EndpointConfig(
        base_url=window_1024.base_url, kind="llama.cpp", context_window=1024, timeout_s=120
    )
    mom = CharacterConfig(
        name="mom", endpoint="local", model=MODEL, persona="You are mom.", max_tokens=24
    )

    def start_bot() -> Brain:
        return Brain(
            characters=[mom.model_copy(update={"temperature": 0})],
            clients={"local": RecordingClient("local", endpoint, api_key=window_1024.api_key)},
            history=HistoryStore(url),
            memory_config=MemoryConfig(),
            embedder=Embedder(embedder.model_path),  # a new process loads its own
        )

    first = start_bot()
    await first.handle(inbound(FACT, "home"), RecordingOutbox())
    await chat_filler(first.history, "test:home", 160)
    await first.handle(inbound("Thanks for the chat today!", "home"), told := RecordingOutbox())
    assert told.errors == []
    await first.shutdown(5)
    await close_brain(first)

    second = start_bot()
    await second.handle(inbound(QUESTION, "home"), answered := RecordingOutbox())
    assert answered.errors == [] and answered.text.strip()
    prompt = second.clients["local"].prompts[-1]  # type: ignore[attr-defined]
    window = " ".join(m["content"] for m in prompt[1:-1])
    assert len(prompt) > 4 and "Alba" not in window  # the window holds only recent small talk
    assert "ann: My sister is called Alba" in prompt[-1]["content"]

    # Asked in words the fact does not use (name/called, home/lives): found by its meaning.
    assert not set(search_terms(UNWORDED)) & set(search_terms(FACT))
    await second.handle(inbound(UNWORDED, "home"), RecordingOutbox())
    prompt = second.clients["local"].prompts[-1]  # type: ignore[attr-defined]
    assert "ann: My sister is called Alba" in prompt[-1]["content"]

    await second.handle(inbound(QUESTION, "elsewhere"), RecordingOutbox())
    assert "Alba" not in str(second.clients["local"].prompts[-1])  # type: ignore[attr-defined]
    await close_brain(second)


async def test_a_failing_memory_never_costs_a_reply(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder, caplog: Any
) -> None:
    brain = memory_brain(fake_server, sqlite_url, embedder)
    await told_then_buried(brain, "room")

    def broken(*_: Any) -> Any:
        raise OSError("the disk went away")

    brain.memory.store.old_turns = broken  # type: ignore[union-attr, method-assign]
    answered = RecordingOutbox()
    await brain.handle(inbound(QUESTION), answered)
    assert answered.errors == [] and "Hello from the fake server." in answered.text
    assert "recall failed; answering without the memory" in caplog.text
    await close_brain(brain)


async def test_indexing_that_fails_catches_up_instead_of_stopping(
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
    embedder: Embedder,
    caplog: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("brain.memory.indexing.RETRY_S", 0.01)
    brain = memory_brain(fake_server, sqlite_url, embedder)
    memory = brain.memory
    assert memory is not None
    await memory.settle()
    store_vectors = memory.store.put_vectors
    failures = [OSError("database is locked")]

    def flaky(rows: Any) -> None:
        if failures:
            raise failures.pop()
        store_vectors(rows)

    memory.store.put_vectors = flaky  # type: ignore[method-assign]
    await brain.history.add("test:room", "user", FACT, "ann")
    await memory.settle()
    assert "indexing failed; catching up" in caplog.text
    assert await memory.status("test:room") == ("", 1)  # found again in the database
    await close_brain(brain)


async def test_forget_takes_any_number_of_matching_messages(
    fake_server: FakeOpenAIServer, database_url: str, embedder: Embedder
) -> None:
    """More than one statement takes: PostgreSQL's protocol carries at most 65 535 values."""
    brain = memory_brain(fake_server, database_url, embedder)
    channel = f"test:many-{uuid.uuid4().hex}"
    rows = [
        {"channel": channel, "role": "user", "author": "ann", "content": f"pizza night {i}"}
        for i in range(70_000)
    ]
    with brain.history.engine.begin() as connection:
        connection.execute(insert(TurnRow), rows)
    forgot = RecordingOutbox()
    await brain.handle(inbound("/forget pizza", channel.removeprefix("test:")), forgot)
    assert forgot.errors == [] and "Forgot 70000 message(s)" in forgot.text
    assert await brain.history.count(channel) == 0
    await close_brain(brain)


async def test_the_summary_is_not_counted_again_while_the_window_start_stays(
    fake_server: FakeOpenAIServer, sqlite_url: str, embedder: Embedder
) -> None:
    brain = memory_brain(fake_server, sqlite_url, embedder, summary_every=1000)
    memory = brain.memory
    assert memory is not None
    reads: list[tuple[int, int]] = []
    turns_between = memory.store.turns_between

    def counted(channel: str, after: int, before: int, limit: int) -> Any:
        reads.append((after, before))
        return turns_between(channel, after, before, limit)

    memory.store.turns_between = counted  # type: ignore[method-assign]
    for i in range(30):
        await brain.handle(inbound(f"Number {i}: tell me about the sea."), RecordingOutbox())
        await memory.summaries_written()
    assert reads  # counted when the window start moved...
    assert len(reads) == len(set(reads))  # ...and never twice for the same range
    assert len(reads) < 15
    await close_brain(brain)


def test_a_cached_text_evicted_while_new_ones_are_encoded_is_still_returned(
    embedder: Embedder,
) -> None:
    """Issue 33 defect 2: a text found in the cache when the batch began was evicted while
    the new ones were stored, then read back (KeyError); the memory's batch failed."""
    texts = [f"text {i} {uuid.uuid4()}" for i in range(64)]  # fill the recent-texts cache
    for text in texts:
        embedder.encode([text])
    both = embedder.encode([texts[0], "a text never seen before"])
    assert both.shape == (2, 384)
    assert abs(float(both[0] @ embedder.encode_one(texts[0])) - 1.0) < 1e-5
