"""The character mixture: concurrency, failure isolation, synthesis, trimming per character."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from brain.brain import Brain
from brain.chat.mixture import AGGREGATE_INSTRUCTION
from brain.config import CharacterConfig, EndpointConfig, MixtureConfig
from brain.history.store import HistoryStore
from brain.messages import Inbound
from brain.models.client import ModelClient
from tests.fake_openai import FakeOpenAIServer, last_user, system_of
from tests.helpers import RecordingOutbox, close_brain, smollm2_mixture

NAMES = ["logic", "creativity", "empathy", "knowledge"]
QUESTION = "How should I plan a weekend trip to the mountains?"


def inbound(text: str, channel: str = "c1") -> Inbound:
    return Inbound("test", channel, "u1", "ann", text, is_admin=True)


@pytest.fixture
def fleet() -> Iterator[dict[str, FakeOpenAIServer]]:
    """One fake server per member plus one for the synthesizer: remote GPU boxes."""
    servers = {name: FakeOpenAIServer().start() for name in [*NAMES, "mom"]}
    for name, server in servers.items():
        server.behaviour.reply = f"{name} says: pack layers and check the weather."
    yield servers
    for server in servers.values():
        server.stop()


def make_brain(
    servers: dict[str, FakeOpenAIServer],
    history: HistoryStore,
    *,
    names: list[str] = NAMES,
    timeout_s: float | None = None,
    windows: dict[str, int] | None = None,
    mixture: MixtureConfig | None = None,
) -> Brain:
    clients = {
        name: ModelClient(
            name,
            EndpointConfig(
                base_url=server.base_url,
                max_retries=0,
                context_window=(windows or {}).get(name, 4096),
            ),
        )
        for name, server in servers.items()
    }
    characters = [
        CharacterConfig(
            name=n, endpoint=n, model="fake", persona=f"You are {n}.", timeout_s=timeout_s
        )
        for n in names
    ]
    characters.append(
        CharacterConfig(
            name="mom", endpoint="mom", model="fake", persona="You are mom.", role="synthesizer"
        )
    )
    return Brain(characters=characters, clients=clients, history=history, mixture_config=mixture)


@pytest.fixture
def history(sqlite_url: str) -> HistoryStore:
    return HistoryStore(sqlite_url)


async def test_members_answer_concurrently_and_the_synthesizer_merges(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    for name in NAMES:
        fleet[name].behaviour.request_delay_s = 0.3
    brain = make_brain(fleet, history)
    outbox = RecordingOutbox()
    await brain.handle(inbound(QUESTION), outbox)
    assert outbox.errors == []
    spans = [fleet[name].requests[0] for name in NAMES]
    # every member's request had started before the first one ended: real overlap
    assert max(r.started for r in spans) < min(r.ended for r in spans)
    synth = fleet["mom"].requests
    assert len(synth) == 1 and synth[0].body["stream"] is True
    assert system_of(synth[0].body) == "You are mom."  # its persona alone: cached as is
    # the user's words unchanged, then the numbered proposals and the instruction
    user = last_user(synth[0].body)
    assert user.startswith(QUESTION + "\n\n[Advisors' answers]\n\n")
    for i, name in enumerate(NAMES, start=1):
        assert f"{i}. {name} says: pack layers" in user
    assert user.endswith(f"[{AGGREGATE_INSTRUCTION}]")
    assert synth[0].started >= max(r.ended for r in spans)
    assert outbox.text == "mom says: pack layers and check the weather."
    stored = await history.recent("test:c1")
    assert [t.role for t in stored] == ["assistant", "user"]
    await close_brain(brain)


async def test_failing_members_are_left_out_and_named(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    fleet["logic"].behaviour.mode = "hang"
    fleet["creativity"].behaviour.mode = "http500"
    fleet["empathy"].stop()  # connection refused from now on
    brain = make_brain(fleet, history, timeout_s=0.5)
    outbox = RecordingOutbox()
    await brain.handle(inbound(QUESTION), outbox)
    assert outbox.errors == []
    assert outbox.text.startswith("mom says:")
    assert outbox.text.endswith(
        "_(without logic (timed out), creativity (error), empathy (unreachable))_"
    )
    synthesis_read = last_user(fleet["mom"].requests[0].body)
    assert "knowledge says" in synthesis_read and "logic says" not in synthesis_read
    # the footer is not part of the stored reply
    assert (await history.recent("test:c1"))[
        0
    ].content == "mom says: pack layers and check the weather."
    await close_brain(brain)


async def test_all_members_failing_is_one_clear_error(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    for name in NAMES:
        fleet[name].behaviour.mode = "http500"
    brain = make_brain(fleet, history)
    outbox = RecordingOutbox()
    await brain.handle(inbound(QUESTION), outbox)
    assert outbox.errors == [
        "None of my characters could answer: logic (error), creativity (error), "
        "empathy (error), knowledge (error)."
    ]
    assert fleet["mom"].requests == []
    assert [t.content for t in await history.recent("test:c1")] == [QUESTION]  # user turn kept
    await close_brain(brain)


async def test_one_character_is_plain_chat(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    clients = {"logic": ModelClient("logic", EndpointConfig(base_url=fleet["logic"].base_url))}
    brain = Brain(
        characters=[CharacterConfig(name="logic", endpoint="logic", model="fake")],
        clients=clients,
        history=history,
    )
    outbox = RecordingOutbox()
    await brain.handle(inbound(QUESTION), outbox)
    assert outbox.text == "logic says: pack layers and check the weather."
    assert len(fleet["logic"].requests) == 1
    await close_brain(brain)


async def test_one_member_with_a_separate_synthesizer_is_stored_under_the_member(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    """Issue 17 item 3: the lone member streams the reply, so the reply is the member's."""
    brain = make_brain(fleet, history, names=["logic"])
    outbox = RecordingOutbox()
    await brain.handle(inbound(QUESTION), outbox)
    assert outbox.text == "logic says: pack layers and check the weather."
    assert fleet["mom"].requests == []  # nothing to merge: the synthesizer is not asked
    reply = (await history.recent("test:c1"))[0]
    assert (reply.role, reply.author) == ("assistant", "logic")
    await close_brain(brain)


async def test_greetings_take_the_fast_path(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    brain = make_brain(fleet, history)
    outbox = RecordingOutbox()
    await brain.handle(inbound("hi mom!"), outbox)
    assert outbox.text.startswith("mom says")
    assert all(fleet[name].requests == [] for name in NAMES)
    await close_brain(brain)


async def test_each_character_is_trimmed_to_its_own_window(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    channel = f"trim-{uuid.uuid4()}"
    for i in range(60):
        await history.add(
            f"test:{channel}",
            "user" if i % 2 == 0 else "assistant",
            f"turn {i}: " + "lorem ipsum dolor sit amet " * 8,
        )
    brain = make_brain(fleet, history, windows={"logic": 400, "creativity": 4096})
    await brain.handle(inbound(QUESTION, channel), RecordingOutbox())
    small = fleet["logic"].requests[0].body
    large = fleet["creativity"].requests[0].body
    assert len(small["messages"]) < len(large["messages"])
    assert small["messages"][-1]["content"] == QUESTION
    assert small["messages"][-2]["content"].startswith("turn 59:")  # newest history kept
    # no server token counter here: the safe estimate (3 bytes a token) keeps it in budget
    estimated = sum(len(m["content"].encode()) / 3 + 8 for m in small["messages"]) + 16
    assert estimated + small["max_tokens"] <= 400
    await close_brain(brain)


async def test_debug_mode_shows_proposals_timing_and_tokens(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    brain = make_brain(fleet, history)
    outbox = RecordingOutbox()
    await brain.handle(inbound("/debug on"), outbox)
    await brain.handle(inbound(QUESTION), outbox)
    proposals = next(m for m in outbox.messages if m.startswith("🔍 proposals:"))
    for name in NAMES:
        assert f"**{name}** (" in proposals and f"{name} says" in proposals
    calls = next(m for m in outbox.messages if m.startswith("🔍 calls:"))
    assert "propose · logic (fake)" in calls and "synthesis (fake)" in calls
    await brain.handle(inbound("/stats"), stats := RecordingOutbox())
    assert "fake · propose · logic: 1," in stats.text
    assert "fake · synthesis: 1," in stats.text
    await close_brain(brain)


async def test_characters_command_lists_roles(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    brain = make_brain(fleet, history)
    outbox = RecordingOutbox()
    await brain.handle(inbound("/characters"), outbox)
    assert "**logic** (member): fake on logic" in outbox.text
    assert "**mom** (synthesizer): fake on mom" in outbox.text
    await close_brain(brain)


async def test_real_mixture_on_smollm2(
    llama_endpoint: EndpointConfig, history: HistoryStore
) -> None:
    """Three members and a synthesizer on the real model: an answer, stored, tokens tracked."""
    brain = smollm2_mixture(
        llama_endpoint,
        history,
        members=("logic", "empathy", "critic"),
        member_tokens=24,
        synthesizer_tokens=48,
    )
    outbox = RecordingOutbox()
    await brain.handle(inbound("What is a good way to learn to cook?"), outbox)
    assert outbox.errors == [] and outbox.text.strip()
    stats = brain.tracker.channel_stats("test:c1")
    assert {s.stage for s in stats} == {
        "propose · logic",
        "propose · empathy",
        "propose · critic",
        "synthesis",
    }
    assert all(s.completion_tokens > 0 and s.prompt_tokens > 0 for s in stats)
    await close_brain(brain)


async def test_a_synthesizer_stream_cut_midway_is_an_error_and_not_stored(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    fleet["mom"].behaviour.mode = "cut_stream"
    brain = make_brain(fleet, history)
    outbox = RecordingOutbox()
    await brain.handle(inbound(QUESTION), outbox)
    assert outbox.errors == ["The model server 'mom' gave an answer I could not use."]
    assert [t.role for t in await history.recent("test:c1")] == ["user"]  # no half reply stored
    await close_brain(brain)


async def test_debug_is_a_config_command_for_admins(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    brain = make_brain(fleet, history)
    outbox = RecordingOutbox()
    await brain.handle(Inbound("test", "c1", "u2", "bob", "/debug on", is_admin=False), outbox)
    assert outbox.errors == ["Only admins can use /debug here."]
    await close_brain(brain)


async def test_retry_answers_the_last_message_again_in_place_of_its_reply(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    """/retry (the page's regenerate, any platform's command): every member is asked again
    and the synthesizer merges anew, without the reply it replaces in the prompt; the new
    reply is stored in its place. With nothing said yet it says so."""
    brain = make_brain(fleet, history)
    nothing = RecordingOutbox()
    await brain.handle(inbound("/retry"), nothing)
    assert nothing.errors == ["There is no message here to answer again yet."]
    await brain.handle(inbound(QUESTION), RecordingOutbox())
    fleet["mom"].behaviour.reply = "mom says: take the train."
    again = RecordingOutbox()
    await brain.handle(inbound("/retry"), again)
    assert again.errors == [] and again.text == "mom says: take the train."
    assert all(len(fleet[name].requests) == 2 for name in [*NAMES, "mom"])
    asked = last_user(fleet["mom"].requests[-1].body)
    assert asked.startswith(QUESTION) and "check the weather." not in str(
        fleet["mom"].requests[-1].body["messages"][:-1]
    )
    stored = [(t.role, t.content) for t in reversed(await history.recent("test:c1"))]
    assert stored == [("user", QUESTION), ("assistant", "mom says: take the train.")]
    await close_brain(brain)


async def test_settings_change_this_channels_reply_length_and_members_temperature(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    """/settings (the web page's sliders send it): the reply's length is the synthesizer's
    max_tokens, the temperature the members'; checked with config.toml's bounds, a bad value
    changes nothing; other channels and `default` go back to config.toml."""
    brain = make_brain(fleet, history)
    said = RecordingOutbox()
    await brain.handle(inbound("/settings --length 96 --temperature 0.2"), said)
    assert said.messages == ["Settings here: replies up to 96 tokens; members' temperature 0.2."]
    refused = RecordingOutbox()
    await brain.handle(inbound("/settings --temperature 3"), refused)
    assert refused.errors and "temperature" in refused.errors[0]
    await brain.handle(inbound(QUESTION), RecordingOutbox())
    await brain.handle(inbound(QUESTION, channel="c2"), RecordingOutbox())
    here, elsewhere = fleet["logic"].requests[0].body, fleet["logic"].requests[1].body
    assert here["temperature"] == 0.2 and elsewhere["temperature"] == 0.7
    synthesis = [r.body for r in fleet["mom"].requests]
    assert synthesis[0]["max_tokens"] == 96 and synthesis[1]["max_tokens"] == 256
    assert synthesis[0]["temperature"] == 0.7  # the synthesizer keeps its own
    reset = RecordingOutbox()
    await brain.handle(inbound("/settings default"), reset)
    assert reset.messages == [
        "Settings here: replies up to 256 tokens (config.toml); "
        "members' temperature 0.7 (config.toml)."
    ]
    await close_brain(brain)
