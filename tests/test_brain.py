"""The brain end to end on the real llama.cpp server: answers, history, trimming, errors."""

from __future__ import annotations

import random
import uuid

import pytest

from bot.embedded import free_port
from brain.brain import Brain
from brain.characters.context import (
    PER_MESSAGE_OVERHEAD,
    PROMPT_OVERHEAD,
    build_prompt,
    reply_reserve,
)
from brain.characters.runner import CUT_SHORT_NOTE, CharacterRunner, Turn
from brain.config import CharacterConfig, EndpointConfig
from brain.history.store import HistoryStore, StoredTurn
from brain.messages import Inbound
from brain.models.client import ModelClient
from brain.models.tokens import estimate_tokens
from brain.text import clean_text
from tests.conftest import MODEL, TEST_N_CTX
from tests.fake_openai import Behaviour, FakeOpenAIServer
from tests.helpers import RecordingOutbox, close_brain
from tests.load import fake_brain

CHARACTER = CharacterConfig(
    name="mom",
    endpoint="local",
    model=MODEL,
    persona="You are mom, a kind assistant.",
    temperature=0,
    max_tokens=24,
)


def inbound(text: str, channel: str = "c1", *, admin: bool = True) -> Inbound:
    return Inbound(
        platform="test",
        channel_id=channel,
        author_id="u1",
        author_name="ann",
        text=text,
        is_admin=admin,
    )


@pytest.fixture
def history(sqlite_url: str) -> HistoryStore:
    return HistoryStore(sqlite_url)


@pytest.fixture
def brain(llama_endpoint: EndpointConfig, history: HistoryStore) -> Brain:
    return Brain(
        characters=[CHARACTER],
        clients={"local": ModelClient("local", llama_endpoint)},
        history=history,
    )


async def test_answers_and_stores_both_turns(brain: Brain, history: HistoryStore) -> None:
    outbox = RecordingOutbox()
    await brain.handle(inbound("Hello, who are you?"), outbox)
    assert outbox.errors == []
    assert outbox.text.strip()
    assert outbox.events[0] == ("typing", None)
    turns = await history.recent("test:c1")
    assert [t.role for t in turns] == ["assistant", "user"]
    assert turns[1].content == "Hello, who are you?" and turns[1].author == "ann"
    stored = turns[0].content  # SmolLM2 often reaches max_tokens: then a note follows the reply
    assert outbox.text in (stored, f"{stored}\n\n{CUT_SHORT_NOTE}")
    await close_brain(brain)


async def test_reset_forgets_only_this_channel(brain: Brain, history: HistoryStore) -> None:
    await history.add("test:c1", "user", "one")
    await history.add("test:c2", "user", "two")
    outbox = RecordingOutbox()
    await brain.handle(inbound("/reset"), outbox)
    assert outbox.messages == ["Forgot this conversation (1 messages)."]
    assert await history.count("test:c1") == 0
    assert await history.count("test:c2") == 1
    await close_brain(brain)


async def test_reset_is_for_admins_only(brain: Brain, history: HistoryStore) -> None:
    await history.add("test:c1", "user", "keep me")
    outbox = RecordingOutbox()
    await brain.handle(inbound("/reset", admin=False), outbox)
    assert outbox.errors == ["Only admins can use /reset here."]
    assert await history.count("test:c1") == 1
    await close_brain(brain)


async def test_bad_command_gets_a_clear_reply_and_nothing_stored(
    brain: Brain, history: HistoryStore
) -> None:
    outbox = RecordingOutbox()
    await brain.handle(inbound("/nonsense now"), outbox)
    assert outbox.errors == [
        "I don't know the command /nonsense. "
        "Commands: /characters, /debug, /greeting, /help, /look, /persona, /reset, /retry, /sd, "
        "/settings, "
        "/stats, /stop"
    ]
    assert await history.count("test:c1") == 0
    await close_brain(brain)


async def test_model_down_user_turn_kept_and_error_told(history: HistoryStore) -> None:
    down = EndpointConfig(
        base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0, context_window=512
    )
    brain = Brain(
        characters=[CHARACTER], clients={"local": ModelClient("local", down)}, history=history
    )
    outbox = RecordingOutbox()
    await brain.handle(inbound("Are you there?"), outbox)
    assert outbox.errors == ["The model server 'local' cannot be reached."]
    turns = await history.recent("test:c1")
    assert [(t.role, t.content) for t in turns] == [("user", "Are you there?")]
    await close_brain(brain)


def test_clean_text_drops_invisible_characters() -> None:
    assert clean_text("he\x00l\u200blo\r\nworld\x1b ") == "hello\nworld"


def long_turn(rng: random.Random, n: int) -> str:
    words = [
        "river",
        "mountain",
        "quantum",
        "bread",
        "violin",
        "orbit",
        "garden",
        "silver",
        "thunder",
        "pixel",
        "harbor",
        "lantern",
        "meadow",
        "cipher",
        "falcon",
    ]
    return f"Turn {n}: " + " ".join(rng.choice(words) for _ in range(120)) + "?"


async def test_80_long_turns_never_exceed_the_context_window(
    llama_endpoint: EndpointConfig, history: HistoryStore
) -> None:
    """n_ctx 512 and ~150-token messages: every turn answers, the newest turns are kept.

    The window overflows from the fourth turn on; 80 turns keep it overflowing on the real
    server (about 3 s a turn on a slow 2-core machine). The paging over thousands of stored
    turns is checked without a server in test_paged_history_keeps_exactly_the_newest_turns_that_fit.
    """
    character = CHARACTER.model_copy(update={"max_tokens": 8})
    client = ModelClient("local", llama_endpoint)
    brain = Brain(characters=[character], clients={"local": client}, history=history)
    rng = random.Random(7)
    channel = f"long-{uuid.uuid4()}"
    for n in range(80):
        outbox = RecordingOutbox()
        await brain.handle(inbound(long_turn(rng, n), channel), outbox)
        assert outbox.errors == [], f"turn {n}: {outbox.errors}"
        assert outbox.text.strip(), f"turn {n}: empty reply"
    assert await history.count(f"test:{channel}") == 160

    # What the next prompt would hold: system, the newest turns in order, the new message.
    next_text = long_turn(rng, 80)
    newest_id = (await history.recent(f"test:{channel}", limit=1))[0].id
    plan = await build_prompt(
        client,
        MODEL,
        window=TEST_N_CTX,
        reserve=reply_reserve(TEST_N_CTX, 8),
        system=character.persona,
        user_text=next_text,
        older_turns=lambda before, limit: history.recent(
            f"test:{channel}", before_id=before, limit=limit
        ),
        before_id=newest_id + 1,
    )
    stored = await history.recent(f"test:{channel}", limit=plan.kept_turns)
    assert plan.kept_turns >= 2
    assert [m["content"] for m in plan.messages[1:-1]] == [t.content for t in reversed(stored)]
    assert stored[0].id == newest_id  # the very newest turn is in
    # and the server accepts that prompt with the reply reserve on top
    reply = await client.chat(MODEL, plan.messages, max_tokens=8, temperature=0)
    assert reply
    await close_brain(brain)


async def test_an_oversized_message_is_cut_to_fit_and_the_user_told(
    brain: Brain, history: HistoryStore
) -> None:
    outbox = RecordingOutbox()
    await brain.handle(inbound("tell me about this " + "blah " * 5000), outbox)
    assert outbox.errors == []
    assert "\n\n_(Your message was too long for me; I read only its beginning.)_" in outbox.text
    await close_brain(brain)


@pytest.mark.parametrize("window", [512, 2048, 8192, 32768])
async def test_paged_history_keeps_exactly_the_newest_turns_that_fit(window: int) -> None:
    """Against a brute-force fill over 3000 turns of very mixed length, read in few pages."""
    rng = random.Random(window)
    turns = [
        StoredTurn(i, "user", "ann", "word " * rng.choice([1, 3, 20, 150])) for i in range(3000)
    ]
    calls: list[int] = []

    async def pager(before: int | None, limit: int) -> list[StoredTurn]:
        calls.append(limit)
        older = [t for t in turns if before is None or t.id < before]
        return list(reversed(older))[:limit]

    client = ModelClient("estimate", EndpointConfig(base_url="http://127.0.0.1:9/v1"))
    plan = await build_prompt(
        client,
        "m",
        window=window,
        reserve=64,
        system="You are mom.",
        user_text="hello",
        older_turns=pager,
        before_id=None,
    )
    budget = (
        window
        - 64
        - PROMPT_OVERHEAD
        - sum(estimate_tokens(t) + PER_MESSAGE_OVERHEAD for t in ("You are mom.", "hello"))
    )
    expected = []
    for turn in reversed(turns):
        cost = estimate_tokens(turn.content) + PER_MESSAGE_OVERHEAD
        if cost > budget:
            break
        budget -= cost
        expected.append(turn.content)
    assert [m["content"] for m in plan.messages[1:-1]] == list(reversed(expected))
    assert plan.kept_turns == len(expected) and len(calls) <= 4, calls
    await client.aclose()


async def test_a_newest_turn_too_big_for_the_window_leaves_the_history_out() -> None:
    """A full first page whose very first turn does not fit: nothing kept, no second read."""
    turns = [StoredTurn(i, "user", "ann", "word " * (5000 if i == 99 else 3)) for i in range(100)]
    calls: list[int] = []

    async def pager(before: int | None, limit: int) -> list[StoredTurn]:
        calls.append(limit)
        return list(reversed(turns))[:limit]

    client = ModelClient("estimate", EndpointConfig(base_url="http://127.0.0.1:9/v1"))
    plan = await build_prompt(
        client,
        "m",
        window=2048,
        reserve=64,
        system="You are mom.",
        user_text="hello",
        older_turns=pager,
        before_id=None,
    )
    assert plan.kept_turns == 0 and [m["role"] for m in plan.messages] == ["system", "user"]
    assert calls == [64]
    await client.aclose()


@pytest.mark.parametrize("hint", [1, 30, 64, 512])
async def test_the_history_read_with_the_turn_gives_the_same_prompt_whatever_its_size(
    sqlite_url: str, hint: int
) -> None:
    """The page read in the insert's trip is sized by a hint: a wrong hint costs a read, not
    a turn."""
    history = HistoryStore(sqlite_url)
    for i in range(300):
        await history.add(
            "t:c", "user" if i % 2 == 0 else "assistant", f"turn {i} " + "word " * (i % 7)
        )
    character = CharacterConfig(name="mom", endpoint="f", model="m", max_tokens=64)
    runner = CharacterRunner(
        history,
        {
            "f": ModelClient(
                "f", EndpointConfig(base_url="http://127.0.0.1:9/v1", context_window=1024)
            )
        },
    )
    reads: list[int] = []
    recent = history.recent

    async def counted(*args: object, **kwargs: object) -> list[StoredTurn]:
        reads.append(1)
        return await recent(*args, **kwargs)  # type: ignore[arg-type]

    history.recent = counted  # type: ignore[method-assign]
    turn_id, page = await history.add_and_recent("t:c", "user", "and now?", "ann", hint)
    assert [t.id for t in page] == list(range(turn_id - 1, max(turn_id - 1 - hint, 0), -1))
    prefetched, _ = await runner.plan(
        character, Turn("t:c", "and now?", turn_id, prefetched=tuple(page), prefetch_size=hint)
    )
    reads_with_prefetch = len(reads)
    plain, _ = await runner.plan(character, Turn("t:c", "and now?", turn_id))
    assert prefetched.messages == plain.messages and 0 < prefetched.kept_turns < 300
    if hint > prefetched.kept_turns:  # the page held every turn that fits: no database read
        assert reads_with_prefetch == 0
    else:  # too small a guess: more pages are read, and the prompt is the same
        assert reads_with_prefetch >= 1
    assert runner.history_page_size("t:c") == prefetched.kept_turns + 8  # the next message's hint
    history.close()


CUT_REPLY = "Paris is the capital of France. It is famous for the Eiffel Tower and its art. It is"


@pytest.mark.parametrize(
    ("reply", "ending"),
    [
        (
            CUT_REPLY,
            "Paris is the capital of France. It is famous for the Eiffel Tower and its art.",
        ),
        (
            "Paris is the capital of France and it is famous for",
            "Paris is the capital of France and it is famous for…",
        ),
    ],
)
async def test_a_reply_cut_by_its_length_limit_ends_visibly(
    sqlite_url: str, reply: str, ending: str
) -> None:
    """Issue 17 item 4: trimmed to its last sentence when that loses little, else "…", and a
    note says why; the stored reply is the one shown, without the note."""
    server = FakeOpenAIServer(behaviour=Behaviour(reply=reply, finish_reason="length")).start()
    brain = fake_brain(server, sqlite_url)
    try:
        outbox = RecordingOutbox()
        await brain.handle(inbound("What is the capital of France, and why is it famous?"), outbox)
        assert outbox.text == f"{ending}\n\n{CUT_SHORT_NOTE}"
        assert (await brain.history.recent("test:c1"))[0].content == ending
    finally:
        await close_brain(brain)
        server.stop()


async def test_a_reply_that_ended_by_itself_gets_no_note(sqlite_url: str) -> None:
    server = FakeOpenAIServer(behaviour=Behaviour(reply=CUT_REPLY)).start()
    brain = fake_brain(server, sqlite_url)
    try:
        outbox = RecordingOutbox()
        await brain.handle(inbound("Say something unfinished."), outbox)
        assert outbox.text == CUT_REPLY  # a model may end that way on purpose
    finally:
        await close_brain(brain)
        server.stop()


async def test_a_prompt_the_server_finds_too_long_is_planned_again_with_more_room(
    sqlite_url: str,
) -> None:
    """The runner's re-plan: the server counts more tokens than the estimate, so the prompt
    is built once more with a quarter of the window spare, and the answer still comes."""
    server = FakeOpenAIServer(
        behaviour=Behaviour(reply="Still here.", mode="too_long_once")
    ).start()
    brain = fake_brain(server, sqlite_url)
    try:
        for i in range(80):  # about 16 000 tokens of history: more than the 8192-token window
            await brain.history.add(
                "test:c1", "user" if i % 2 == 0 else "assistant", f"{i} " + "x" * 600
            )
        outbox = RecordingOutbox()
        await brain.handle(inbound("And now?"), outbox)
        assert outbox.errors == [] and outbox.text == "Still here."
        refused, answered = (r.body["messages"] for r in server.requests)
        assert len(answered) < len(refused)  # fewer history turns the second time
        assert answered[-1] == refused[-1] == {"role": "user", "content": "And now?"}
    finally:
        await close_brain(brain)
        server.stop()
