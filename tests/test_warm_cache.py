"""Warm prompt caches: each character pinned to its own server slot, prompts laid out so
that what changes comes last, and a history start that does not creep forward."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

from adapters.console import CLEAR_LINE, ConsoleOutbox
from brain.brain import Brain
from brain.characters.context import KEEP_ON_TRIM, build_prompt
from brain.config import CharacterConfig, EndpointConfig
from brain.history.store import HistoryStore, StoredTurn
from brain.messages import Inbound
from brain.models.client import Message, ModelClient
from brain.models.dialects import CACHE_REUSE_MIN_TOKENS
from brain.models.slots import SlotPins
from brain.models.usage import Usage
from tests.conftest import MODEL
from tests.fake_openai import FakeOpenAIServer
from tests.helpers import RecordingOutbox, close_brain

PERSONAS = {
    "logic": "You are Logic. Reason step by step and give a precise answer.",
    "critic": "You are the Critic. Point out pitfalls, then give the answer that holds up.",
    "mom": "You are mom, a warm, practical and kind assistant. Answer clearly and briefly.",
}

TRAIL_WORDS = "path ridge creek meadow summit boulder pine valley trail marker".split()


def inbound(text: str, channel: str = "c1") -> Inbound:
    return Inbound("test", channel, "u1", "ann", text, is_admin=True)


def characters(endpoint: str) -> list[CharacterConfig]:
    return [
        CharacterConfig(
            name=name,
            endpoint=endpoint,
            model=MODEL,
            persona=persona,
            temperature=0,
            max_tokens=24,
            role="synthesizer" if name == "mom" else "member",
        )
        for name, persona in PERSONAS.items()
    ]


def test_characters_take_slots_in_order_and_other_calls_the_spare_one() -> None:
    pins = SlotPins()
    assert pins.slot_for("logic", 4) == 0
    assert pins.slot_for("critic", 4) == 1
    assert pins.slot_for("logic", 4) == 0  # pinned: the same slot every time
    assert pins.slot_for(None, 4) == 3  # routing, votes: never a character's cache
    assert pins.slot_for("mom", 4) == 2
    assert pins.slot_for("extra", 4) is None  # more characters than slots: server's choice
    assert pins.slot_for("logic", 1) is None  # one slot: nothing to choose


async def test_each_character_is_sent_to_its_own_slot(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """On a llama.cpp server (it tells its slots in /props), every request names its slot."""
    fake_server.props = {"default_generation_settings": {"n_ctx": 4096}, "total_slots": 4}
    endpoint = EndpointConfig(base_url=fake_server.base_url, kind="llama.cpp")
    client = ModelClient("local", endpoint)
    brain = Brain(
        characters=characters("local"), clients={"local": client}, history=HistoryStore(sqlite_url)
    )
    for text in ("What should we pack for a hike?", "And what about food for the kids?"):
        await brain.handle(inbound(text), RecordingOutbox())
    slots: dict[str, set[int]] = {}
    for request in fake_server.requests:
        persona = request.body["messages"][0]["content"]
        name = next(n for n, p in PERSONAS.items() if persona.startswith(p))
        slots.setdefault(name, set()).add(request.body["id_slot"])
        assert request.body["cache_prompt"] is True
    # one slot each, every time, none shared, and not the spare (slot 3)
    assert all(len(taken) == 1 for taken in slots.values())
    assert sorted(slot for taken in slots.values() for slot in taken) == [0, 1, 2]
    await close_brain(brain)


async def test_the_synthesizer_reads_the_proposals_after_the_history(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """Its system prompt is its persona alone, so persona and history stay cached."""
    endpoint = EndpointConfig(base_url=fake_server.base_url, kind="openai")
    brain = Brain(
        characters=characters("local"),
        clients={"local": ModelClient("local", endpoint)},
        history=HistoryStore(sqlite_url),
    )
    channel = f"c-{uuid.uuid4()}"
    for text in ("What should we pack for a hike?", "And what about food for the kids?"):
        await brain.handle(inbound(text, channel), RecordingOutbox())
    synthesis = [r.body for r in fake_server.requests if r.body.get("stream")][-1]
    messages = synthesis["messages"]
    assert messages[0] == {"role": "system", "content": PERSONAS["mom"]}
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]
    assert messages[1]["content"] == "What should we pack for a hike?"
    last = messages[-1]["content"]
    assert last.startswith("And what about food for the kids?\n\n[Advisors' answers]\n\n1. ")
    assert "2. " in last and last.endswith("as a single assistant.]")
    await close_brain(brain)


async def test_a_full_window_is_cut_back_by_half_then_keeps_its_start() -> None:
    """Once the history outgrows the window it is cut to about half its budget; the next
    messages start from the same turn (the cached prefix) until it outgrows it again."""
    turns: list[StoredTurn] = []
    client = ModelClient("estimate", EndpointConfig(base_url="http://127.0.0.1:9/v1"))

    async def plan_next(floor: int | None) -> tuple[int | None, int, int]:
        async def pager(before: int | None, limit: int) -> list[StoredTurn]:
            older = [t for t in turns if before is None or t.id < before]
            return list(reversed(older))[:limit]

        plan = await build_prompt(
            client,
            "m",
            window=1000,
            reserve=200,
            system="You are mom.",
            user_text="next",
            older_turns=pager,
            before_id=None,
            floor=floor,
        )
        return plan.oldest_kept, plan.kept_turns, plan.prompt_tokens

    floor = None
    starts: list[int | None] = []
    for n in range(60):
        turns.append(StoredTurn(n, "user" if n % 2 == 0 else "assistant", "a", "word " * 40))
        floor, kept, _ = await plan_next(floor)
        starts.append(floor)
        assert turns[-1].id == n and kept >= 1  # the newest turn is always in
    # the start moved only a few times over 60 turns, never one turn per message
    moves = sum(1 for a, b in zip(starts, starts[1:], strict=False) if a != b)
    assert 2 <= moves <= 12
    # right after a cut the history holds about half of its budget
    cut = next(i for i in range(1, 60) if starts[i] != starts[i - 1])
    turns_after_cut = cut - starts[cut] + 1  # type: ignore[operator]
    assert turns_after_cut * 48 <= 780 * KEEP_ON_TRIM + 48
    # with no floor the window is filled, as before
    _, kept_full, _ = await plan_next(None)
    assert kept_full > turns_after_cut
    await client.aclose()


async def test_the_second_message_reads_only_what_is_new(
    llama_endpoint: EndpointConfig, sqlite_url: str
) -> None:
    """On the real llama-server: on the next message, each character's persona and the
    history come from its slot's cache; the server reads only the new turns."""
    client = ModelClient("local", llama_endpoint)
    usages: list[Usage] = []
    client.usage_sinks.append(usages.append)
    brain = Brain(
        characters=characters("local"), clients={"local": client}, history=HistoryStore(sqlite_url)
    )
    channel = f"c-{uuid.uuid4()}"
    question = "What should we pack for a weekend hike?"
    await brain.handle(inbound(question, channel), RecordingOutbox())
    first = {u.stage: u for u in usages}
    usages.clear()
    await brain.handle(inbound("And what food for the kids?", channel), RecordingOutbox())
    second = {u.stage: u for u in usages}
    assert set(second) == {"propose · logic", "propose · critic", "synthesis"}
    for stage in ("propose · logic", "propose · critic"):
        # a member's whole first prompt (persona, question) comes from its slot's cache:
        # only the reply and the new message are read
        usage = second[stage]
        assert usage.cached_tokens is not None, stage
        assert usage.cached_tokens >= first[stage].prompt_tokens - 4, stage
        assert usage.processed_tokens <= usage.prompt_tokens - first[stage].prompt_tokens + 4
    # the synthesizer's persona and the first question are cached too (its proposals came
    # after them, so only they and what is new are read again)
    synthesis = second["synthesis"]
    before_proposals = await client.count_tokens(
        MODEL, PERSONAS["mom"]
    ) + await client.count_tokens(MODEL, question)
    assert synthesis.cached_tokens is not None
    assert synthesis.cached_tokens >= before_proposals
    await close_brain(brain)


async def test_turns_kept_after_a_cut_are_not_read_again(llama_client: ModelClient) -> None:
    """On the real llama-server: when the history is cut back, the turns kept come from the
    slot's cache, moved to their new place, instead of being read again."""
    usages: list[Usage] = []
    llama_client.usage_sinks.append(usages.append)
    system: Message = {"role": "system", "content": PERSONAS["mom"]}
    turns: list[Message] = [
        {
            "role": "user" if n % 2 == 0 else "assistant",
            "content": f"Note {n}: " + " ".join(f"{word}{n}" for word in TRAIL_WORDS * 3),
        }
        for n in range(5)
    ]
    kept = turns[2:]  # the window was cut: the two oldest turns are gone
    first = [system, *turns, {"role": "user", "content": "Which note was first?"}]
    after_cut = [system, *kept, {"role": "user", "content": "And which note was last?"}]
    for messages in (first, after_cut):
        await llama_client.chat(MODEL, messages, max_tokens=1, temperature=0, cache_key="mom")
    kept_tokens = sum([await llama_client.count_tokens(MODEL, m["content"]) for m in kept])
    assert kept_tokens >= 2 * CACHE_REUSE_MIN_TOKENS  # worth moving
    cut = usages[-1]
    assert cut.processed_tokens < cut.prompt_tokens - kept_tokens, cut


async def test_a_terminal_status_line_is_replaced_by_the_reply(tmp_path: Path) -> None:
    out = io.StringIO()
    outbox = ConsoleOutbox(out, tmp_path, labels=True, live=True)
    await outbox.progress("logic …  critic …")
    await outbox.progress("logic ✓  critic …")
    ref = await outbox.send_as("mom", "Pack")
    await outbox.edit(ref, "Pack layers.")
    outbox.close()
    screen = out.getvalue()
    assert screen.index("logic ✓  critic …") < screen.index(CLEAR_LINE + "mom> Pack layers.")
    assert screen.endswith("mom> Pack layers.")


async def test_piped_output_has_no_status_line(tmp_path: Path) -> None:
    out = io.StringIO()
    outbox = ConsoleOutbox(out, tmp_path)
    await outbox.typing()
    await outbox.progress("logic ✓")
    ref = await outbox.send("Pack")
    await outbox.edit(ref, "Pack layers.")
    outbox.close()
    assert out.getvalue() == "Pack layers."
