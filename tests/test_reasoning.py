"""Reasoning models: thoughts folded away, never inline, never stored, never in the context."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydantic import BaseModel

from adapters.console import DIM, ConsoleOutbox
from brain.brain import Brain
from brain.config import CharacterConfig, EndpointConfig
from brain.history.store import HistoryStore
from brain.messages import Inbound
from brain.models.client import ModelClient
from brain.models.reasoning import ReasoningSplitter, split_reasoning
from tests.fake_openai import Behaviour, FakeOpenAIServer
from tests.helpers import RecordingOutbox, close_brain
from tests.load import fake_brain


@pytest.mark.parametrize("cut", range(1, 40))
def test_think_tags_split_at_any_point_of_the_stream_are_found(cut: int) -> None:
    text = "<think>Two and two: four.</think>\n\nThe answer is 4 <b>bold</b>."
    splitter = ReasoningSplitter()
    shown = splitter.feed(text[:cut]) + splitter.feed(text[cut:]) + splitter.flush()
    assert shown.lstrip() == "The answer is 4 <b>bold</b>."
    assert splitter.reasoning == "Two and two: four."


def test_whole_texts_including_a_block_opened_by_the_template() -> None:
    assert split_reasoning("<think>hmm</think>Yes.") == ("Yes.", "hmm")
    assert split_reasoning("the template opened it</think>\nYes.") == (
        "Yes.",
        "the template opened it",
    )
    assert split_reasoning("a < b and c > d") == ("a < b and c > d", "")
    assert split_reasoning("<think>cut off while thinking") == ("", "cut off while thinking")


@pytest.mark.parametrize(
    "behaviour",
    [
        Behaviour(reply="<think>The user greets me. Keep it short.</think>\n\nHello there!"),
        Behaviour(reply="Hello there!", reasoning="The user greets me. Keep it short."),
    ],
)
async def test_reasoning_is_folded_not_stored_and_not_sent_back(
    behaviour: Behaviour,
    sqlite_url: str,
) -> None:
    server = FakeOpenAIServer(behaviour=behaviour).start()
    brain = fake_brain(server, sqlite_url)
    try:
        first = RecordingOutbox()
        await brain.handle(Inbound("t", "c", "u", "ann", "hi mom"), first)
        assert first.text == "Hello there!"
        assert first.reasoning == ["The user greets me. Keep it short."]
        stored = [t.content for t in reversed(await brain.history.recent("t:c"))]
        assert stored == ["hi mom", "Hello there!"]
        await brain.handle(Inbound("t", "c", "u", "ann", "and again"), RecordingOutbox())
        sent_back = server.requests[-1].body["messages"]
        assert not any("greets" in str(m["content"]) for m in sent_back)  # not in the context
    finally:
        await close_brain(brain)
        server.stop()


async def test_json_answers_after_thinking_still_parse(fake_server: FakeOpenAIServer) -> None:

    class Choice(BaseModel):
        choice: str

    fake_server.behaviour = Behaviour(json_reply='<think>A or B? A.</think>{"choice": "A"}')
    client = ModelClient("f", EndpointConfig(base_url=fake_server.base_url, context_window=4096))
    assert (
        await client.chat_json("fake", [{"role": "user", "content": "A or B?"}], Choice)
    ).choice == "A"
    await client.aclose()


async def test_console_dims_reasoning_in_a_terminal_and_labels_it_in_a_pipe(tmp_path: Path) -> None:
    terminal, pipe = io.StringIO(), io.StringIO()
    await ConsoleOutbox(terminal, tmp_path, dim=True).send_reasoning("because")
    await ConsoleOutbox(pipe, tmp_path).send_reasoning("because")
    assert DIM in terminal.getvalue() and "because" in terminal.getvalue()
    assert pipe.getvalue() == "\n[reasoning] because"


@pytest.mark.parametrize(
    ("kind", "setting", "sent"),
    [
        ("llama.cpp", "off", {"chat_template_kwargs": {"enable_thinking": False}}),
        ("vllm", "high", {"chat_template_kwargs": {"enable_thinking": True}}),
        ("ollama", "off", {"think": False}),
        ("openai", "medium", {"reasoning_effort": "medium"}),
        ("openai", "default", {}),
    ],
)
async def test_each_character_switches_reasoning_with_its_servers_own_knob(
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
    kind: str,
    setting: str,
    sent: dict,
) -> None:

    character = CharacterConfig(name="mom", endpoint="f", model="fake", reasoning=setting)
    endpoint = EndpointConfig(base_url=fake_server.base_url, kind=kind, context_window=4096)
    brain = Brain(
        characters=[character],
        clients={"f": ModelClient("f", endpoint)},
        history=HistoryStore(sqlite_url),
    )
    await brain.handle(Inbound("t", "c", "u", "ann", "hello"), RecordingOutbox())
    body = fake_server.requests[-1].body
    for key in ("chat_template_kwargs", "think", "reasoning_effort"):
        assert body.get(key) == sent.get(key)
    await close_brain(brain)


async def test_a_block_the_template_opened_never_shows_is_never_stored_or_sent_back(
    sqlite_url: str,
) -> None:
    """Issue 17 item 1: a vLLM-style server streams `musings</think>answer` (the chat template
    wrote the opening tag). No user sees the musings, the history keeps only the answer, and
    the next request carries no trace of them; the second reply, now that the bot knows the
    template opens the block, is held back from the first token on."""
    server = FakeOpenAIServer(
        behaviour=Behaviour(reply="secret musings about the sum</think>The answer is 4.")
    ).start()
    character = CharacterConfig(name="mom", endpoint="f", model="fake", persona="You are mom.")
    endpoint = EndpointConfig(base_url=server.base_url, kind="vllm", context_window=4096)
    brain = Brain(
        characters=[character],
        clients={"f": ModelClient("f", endpoint)},
        history=HistoryStore(sqlite_url),
    )
    try:
        for question in ("what is 2+2?", "and 2+2 again?"):
            outbox = RecordingOutbox()
            await brain.handle(Inbound("t", "c", "u", "ann", question), outbox)
            assert outbox.errors == []
            assert outbox.text == "The answer is 4."
            shown = [text for kind, text in outbox.events if kind in ("send", "edit")]
            assert not any("musings" in str(text) for text in shown), shown
            assert outbox.reasoning == ["secret musings about the sum"]
        stored = [t.content for t in reversed(await brain.history.recent("t:c"))]
        assert stored == ["what is 2+2?", "The answer is 4.", "and 2+2 again?", "The answer is 4."]
        sent_back = server.requests[-1].body["messages"]
        assert not any("musings" in str(m["content"]) for m in sent_back)
    finally:
        await close_brain(brain)
        server.stop()


@pytest.mark.parametrize("cut", range(1, 60, 3))
def test_a_lone_closing_tag_in_a_stream_takes_back_what_came_before(cut: int) -> None:
    text = "thinking about it for a while, longer than the hold</think>The answer is 4."
    splitter = ReasoningSplitter(hold=16)
    shown = splitter.feed(text[:cut])
    shown_late = splitter.feed(text[cut:]) + splitter.flush()
    if splitter.lone_close and shown:  # shown too early: the caller is told to take it back
        assert splitter.retracted
    assert splitter.reasoning == "thinking about it for a while, longer than the hold"
    assert shown_late.lstrip() == "The answer is 4."


def test_a_model_that_does_not_reason_is_not_held_back_past_the_hold() -> None:
    splitter = ReasoningSplitter(hold=8)
    assert splitter.feed("Hi") == ""  # still within the hold: it may yet turn out to be reasoning
    assert splitter.feed(" there, friend") == "Hi there, friend"
    assert splitter.feed("!") == "!"  # past the hold: every piece shows at once
    assert splitter.flush() == "" and not splitter.retracted
