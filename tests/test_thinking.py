"""/think: rounds, schema-constrained anonymous votes, early stop, abstentions."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from brain.answering import STOPPED_MID_REPLY
from brain.brain import Brain
from brain.chat.pipeline import EMPTY_REPLY
from brain.commands.thinking import (
    VOTE_INSTRUCTION,
    Ballot,
    RoundResult,
    ballot_confidence,
    vote_schema,
)
from brain.config import CharacterConfig, EndpointConfig
from brain.history.store import HistoryStore
from brain.messages import Inbound
from brain.models.client import ModelClient
from tests.conftest import MODEL
from tests.fake_openai import FakeOpenAIServer, last_user, long_slow_reply
from tests.helpers import RecordingOutbox, close_brain, eventually, smollm2_mixture

NAMES = ["logic", "creativity", "empathy", "knowledge"]


def inbound(text: str) -> Inbound:
    return Inbound("test", "c1", "u1", "ann", text, is_admin=True)


def answering(name: str, best: bool) -> Any:
    """A fake character: answers (BEST if it is the good one), votes for the BEST candidate."""

    def reply(body: dict[str, Any]) -> str:
        if "response_format" not in body:
            return f"{'BEST' if best else 'meh'} answer by {name}"
        candidates = re.findall(r"\[([A-Z])\] (\S+)", last_user(body))
        choice = next((cid for cid, text in candidates if text == "BEST"), candidates[0][0])
        return json.dumps({"choice": choice, "confidence": 9, "rationale": "clearest"})

    return reply


@pytest.fixture
def fleet() -> Iterator[dict[str, FakeOpenAIServer]]:
    servers = {name: FakeOpenAIServer().start() for name in [*NAMES, "mom"]}
    for name in NAMES:
        servers[name].behaviour.reply_for = answering(name, best=(name == "logic"))
    servers["mom"].behaviour.reply = "After thinking it over: the best answer."
    yield servers
    for server in servers.values():
        server.stop()


def make_brain(
    servers: dict[str, FakeOpenAIServer], history: HistoryStore, **settings: Any
) -> Brain:
    clients = {
        n: ModelClient(n, EndpointConfig(base_url=s.base_url, max_retries=0, context_window=4096))
        for n, s in servers.items()
    }
    characters = [
        CharacterConfig(name=n, endpoint=n, model="fake", persona=f"You are {n}.") for n in NAMES
    ]
    characters.append(
        CharacterConfig(
            name="mom", endpoint="mom", model="fake", role="synthesizer", persona="You are mom."
        )
    )
    return Brain(
        characters=characters,
        clients=clients,
        history=history,
        extensions=["deep_thinking"],
        extension_settings={"deep_thinking": {"seed": 1, **settings}},
    )


@pytest.fixture
def history(sqlite_url: str) -> HistoryStore:
    return HistoryStore(sqlite_url)


def answer_requests(server: FakeOpenAIServer) -> list[dict[str, Any]]:
    return [r.body for r in server.requests if "response_format" not in r.body]


async def test_consensus_stops_early_and_the_winner_is_presented(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    brain = make_brain(fleet, history)
    outbox = RecordingOutbox()
    await brain.handle(inbound("/think what is the best way to learn? --rounds 5"), outbox)
    assert outbox.errors == []
    # one round only: four answers and four votes per member server, no round 2
    assert all(len(answer_requests(fleet[n])) == 1 for n in NAMES)
    status = outbox.messages[0]
    assert status.startswith("🤔 Round 1/5: leading logic (")
    assert "votes: logic 3, " in status and "consensus ✅" in status
    final = fleet["mom"].requests[-1].body
    assert "BEST answer by logic" in last_user(final)  # after the question: persona cached
    assert outbox.messages[-1] == "After thinking it over: the best answer."
    turns = await history.recent("test:c1")
    assert [t.content for t in turns] == [
        "After thinking it over: the best answer.",
        "what is the best way to learn?",
    ]
    await close_brain(brain)


async def test_votes_are_anonymous_and_never_for_oneself(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    brain = make_brain(fleet, history)
    await brain.handle(inbound("/think why?"), RecordingOutbox())
    for name in NAMES:
        vote = next(r.body for r in fleet[name].requests if "response_format" in r.body)
        assert vote["response_format"]["type"] == "json_schema"  # the OpenAI shape for kind=openai
        schema = vote["response_format"]["json_schema"]["schema"]
        enum = schema["properties"]["choice"]["enum"]
        assert len(enum) == 3  # four candidates minus its own
        ballot_text = last_user(vote)
        assert f"by {name}" not in ballot_text  # its own answer is not on its ballot
        assert not any(other in ballot_text.split("Candidates:")[0] for other in NAMES)
    await close_brain(brain)


async def test_unparseable_votes_are_abstentions_and_all_rounds_run(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    for name in NAMES:
        inner = fleet[name].behaviour.reply_for

        def broken(body: dict[str, Any], inner: Any = inner) -> str:
            return "Vote: 9/10 for A" if "response_format" in body else inner(body)

        fleet[name].behaviour.reply_for = broken
    brain = make_brain(fleet, history)
    outbox = RecordingOutbox()
    await brain.handle(inbound("/think is it? --rounds 3"), outbox)
    assert outbox.errors == []
    assert all(len(answer_requests(fleet[n])) == 3 for n in NAMES)
    assert "votes: abstained 4" in outbox.messages[0] and "no consensus" in outbox.messages[0]
    # from round 2 on, each member saw the others' previous answers
    second = answer_requests(fleet["creativity"])[1]
    assert "BEST answer by logic" in last_user(second)
    assert "meh answer by creativity" not in last_user(second)
    assert outbox.messages[-1] == "After thinking it over: the best answer."
    await close_brain(brain)


async def test_round_limits_are_enforced(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    brain = make_brain(fleet, history)
    outbox = RecordingOutbox()
    await brain.handle(inbound("/think x --rounds 1000"), outbox)
    assert outbox.errors[0].startswith("`rounds` must be between 2 and 20, not 1000.")
    assert all(server.requests == [] for server in fleet.values())
    await close_brain(brain)


def test_tally_is_confidence_weighted() -> None:
    result = RoundResult(1, {"a": "x", "b": "y", "c": "z"})
    result.ballots = [
        Ballot("b", "a", 1.0),
        Ballot("c", "a", 0.5),
        Ballot("a", "b", 0.5),
        Ballot("d", None, 0.0),
    ]
    shares = result.shares({"a": 1, "b": 1, "c": 1, "d": 1})
    assert shares == {"a": 0.75, "b": 0.25, "c": 0.0}
    assert result.valid_votes() == 3


def test_vote_schema_allows_only_the_candidates() -> None:
    schema = vote_schema(["A", "C"])
    assert schema.model_json_schema()["properties"]["choice"]["enum"] == ["A", "C"]
    with pytest.raises(ValueError):
        schema.model_validate({"choice": "B", "confidence": 5, "rationale": ""})


async def test_think_on_the_real_model(
    llama_endpoint: EndpointConfig, history: HistoryStore
) -> None:
    """SmolLM2 with grammar-constrained votes: progress edits and a final reply, no crash."""
    brain = smollm2_mixture(
        llama_endpoint,
        history,
        members=("logic", "empathy", "critic"),
        member_tokens=24,
        synthesizer_tokens=32,
        extensions=["deep_thinking"],
    )
    outbox = RecordingOutbox()
    await brain.handle(inbound("/think Is it better to walk or cycle to work? --rounds 2"), outbox)
    assert outbox.errors == []
    status_edits = [e for e in outbox.events if e[0] == "edit" and e[1][0] == 0]
    assert status_edits and status_edits[0][1][1].startswith("🤔 Round 1/2")
    assert outbox.messages[-1].strip()
    votes = [s for s in brain.tracker.channel_stats("test:c1") if s.stage.startswith("vote")]
    assert votes and sum(s.calls for s in votes) >= 3
    await close_brain(brain)


class CountingCoolDown:
    """A GPU that is never hot, counting how often a model job asked it first."""

    def __init__(self) -> None:
        self.asked = 0

    async def cool_down(self, report: Any) -> None:
        self.asked += 1

    def describe(self) -> str:
        return "test GPU"


async def test_one_member_failing_in_any_way_does_not_stop_the_thinking(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    """Issue 17 item 10: the mixture survives anything a member raises; /think too."""
    gpu = CountingCoolDown()
    brain = make_brain(fleet, history)
    brain.gpu = gpu  # what every model job waits on when the GPU is hot

    async def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("a bug in a member's client, not a model error")

    brain.clients["creativity"].chat = broken  # type: ignore[method-assign]
    outbox = RecordingOutbox()
    await brain.handle(inbound("/think what is the best way to learn? --rounds 2"), outbox)
    assert outbox.errors == []
    assert outbox.messages[-1] == "After thinking it over: the best answer."
    assert gpu.asked == 2  # before the round, and before the final answer
    await close_brain(brain)


async def test_an_empty_final_answer_says_so_and_is_not_stored(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    fleet["mom"].behaviour.reply = ""
    brain = make_brain(fleet, history)
    outbox = RecordingOutbox()
    await brain.handle(inbound("/think why?"), outbox)
    assert outbox.messages[-1] == EMPTY_REPLY
    assert [t.content for t in await history.recent("test:c1")] == ["why?"]
    await close_brain(brain)


async def test_a_think_cut_off_by_shutdown_says_so_in_its_status(
    fleet: dict[str, FakeOpenAIServer], history: HistoryStore
) -> None:
    """Issue 22 item 4: the status no longer stays at "round 1/2…" when the bot stops."""
    fleet["creativity"].behaviour = long_slow_reply()  # round 1 is still going when we stop
    brain = make_brain(fleet, history)
    outbox = RecordingOutbox()
    thinking = asyncio.create_task(brain.handle(inbound("/think why? --rounds 2"), outbox))
    await eventually(lambda: bool(fleet["creativity"].requests))
    await brain.shutdown(grace_s=0)
    assert thinking.cancelled()
    assert outbox.messages == ["🤔 Cut off in round 1/2: I was stopped before I could finish."]
    assert outbox.errors == [STOPPED_MID_REPLY]
    await close_brain(brain)


@pytest.mark.parametrize(
    ("question", "first", "second"),
    [
        ("Is it better to walk or cycle to work?", "Walk: it is calm.", "Cycle: it is quicker."),
        ("What is 2 + 2?", "4", "5"),
        ("Which is a fruit?", "A carrot.", "An apple."),
    ],
)
async def test_the_real_models_votes_are_valid_ballots(
    llama_client: ModelClient, question: str, first: str, second: str
) -> None:
    """The vote schema is one the server's grammar can hold the model to: SmolLM2 wrote
    confidences of -1 under a 0-to-1 float (llama.cpp's grammar keeps no float bounds),
    and every such vote was an abstention."""
    messages = [
        {"role": "system", "content": f"You are logic.\n\n{VOTE_INSTRUCTION}"},
        {
            "role": "user",
            "content": f"Question: {question}\n\nCandidates:\n\n[A] {first}\n\n[B] {second}",
        },
    ]
    vote = await llama_client.chat_json(MODEL, messages, vote_schema(["A", "B"]), max_tokens=96)
    assert vote.choice in ("A", "B")  # type: ignore[attr-defined]
    assert 0 <= ballot_confidence(vote) <= 1
