"""The memory's search: the database's own full-text index (SQLite FTS5, PostgreSQL
tsvector), fused with the dense search; corrections ranked first; vectors of another
encoder replaced in the background. On both databases, with the real encoder."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from sqlalchemy import delete, insert, select

from brain.database.tables import TURNS, VECTORS, MemoryVectorRow, TurnRow
from brain.history.store import HistoryStore
from brain.memory.lexical import LexicalSearch, search_terms
from brain.memory.memory import Memory
from brain.memory.vectors import ChannelVectors
from brain.models.embedder import Embedder
from tests.fake_openai import FakeOpenAIServer
from tests.helpers import chat_filler, close_brain, memory_brain

END = 10**12  # before every turn


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    return request.getfixturevalue("postgres_url")


def unique() -> str:
    return f"test:{uuid.uuid4().hex[:10]}"  # the PostgreSQL test database outlives a run


async def test_the_database_finds_a_turn_by_its_rare_words_in_its_channel_only(
    database_url: str,
) -> None:
    history = HistoryStore(database_url)
    search = LexicalSearch(history.engine)
    room, other = unique(), unique()
    flight = await history.add(room, "user", "My flight number home is KL1234, seat 14C.", "ann")
    await history.add(room, "user", "We should plan the flights for the summer.", "ann")
    await history.add(room, "assistant", "Flight KL1234 leaves at noon.", "mom")  # not a user's
    await history.add(other, "user", "KL1234 is also my cousin's flight.", "bob")

    found = search.search(room, "which seat was it on KL1234?", END, 10)
    assert list(found) == [flight]  # the assistant's turn and the other room's are not searched
    assert 0 < found[flight] < 1
    assert search.search(room, "which seat was it on KL1234?", flight, 10) == {}  # only older
    assert search.search(room, "what is it, and where was I?", END, 10) == {}  # no rare words
    history.close()


async def test_deleted_and_edited_turns_are_searched_as_they_are_now(database_url: str) -> None:
    history = HistoryStore(database_url)
    search = LexicalSearch(history.engine)
    room = unique()
    edited = await history.add(room, "user", "The locker code is 5580.", "ann")
    deleted = await history.add(room, "user", "The locker at the pool is number 12.", "ann")
    await history.update(edited, "The gate code is 7731.")
    with history.engine.begin() as connection:
        connection.execute(delete(TurnRow).where(TURNS.id == deleted))

    assert search.search(room, "locker?", END, 10) == {}
    assert list(search.search(room, "the gate?", END, 10)) == [edited]
    history.close()


@pytest.mark.parametrize(
    "message",
    ['"unbalanced', "NEAR(a b)", "a* OR -b AND c:d", "it's (really) ^weird'", "x' | '!y", "\\"],
)
async def test_a_message_is_never_read_as_search_syntax(sqlite_url: str, message: str) -> None:
    history = HistoryStore(sqlite_url)
    room = unique()
    turn = await history.add(room, "user", "weird really unbalanced near", "ann")
    found = LexicalSearch(history.engine).search(room, message, END, 10)
    assert set(found) <= {turn}
    assert search_terms("What is my SISTER called, again?") == ["sister", "called"]
    history.close()


async def test_a_correction_is_recalled_with_what_it_corrects_and_ranked_first(
    fake_server: FakeOpenAIServer, database_url: str, embedder: Embedder
) -> None:
    """The newer message says little on its own ("moved to Thursday"), but it is much like
    the turn it corrects: both come back, the newer first, each with its date."""
    brain = memory_brain(fake_server, database_url, embedder)
    memory = brain.memory
    assert isinstance(memory, Memory)
    room = unique()
    old = await brain.history.add(room, "user", "The team offsite is on Tuesday the 12th.", "ann")
    await brain.history.add(room, "user", "I'm reading a novel about lighthouses.", "ann")
    new = await brain.history.add(room, "user", "Actually the offsite moved to Thursday.", "ann")
    await memory.settle()

    recalled = await memory.recall(room, "When is the team offsite now?", END)
    assert [turn.turn_id for turn, _ in recalled.turns] == [new, old]
    await close_brain(brain)


async def test_the_lexical_score_is_added_to_the_similarity(
    fake_server: FakeOpenAIServer, database_url: str, embedder: Embedder
) -> None:
    """Under a floor the similarity alone does not reach, the full-text score lifts the
    turn sharing the message's rare word over it, with the weight and not without."""
    recalled = {}
    for weight in (0.0, 1.0):
        brain = memory_brain(
            fake_server, database_url, embedder, lexical_weight=weight, min_similarity=0.75
        )
        assert brain.memory is not None
        room = unique()
        turn = await brain.history.add(room, "user", "Pick up parcel 88412 at the depot.", "ann")
        await chat_filler(brain.history, room, 40)  # bm25 weighs a word by how rare it is
        await brain.memory.settle()
        found = await brain.memory.recall(room, "Is 88412 done yet?", END)
        recalled[weight] = [t.turn_id for t, _ in found.turns]
        await close_brain(brain)
    assert recalled == {0.0: [], 1.0: [turn]}


async def test_vectors_of_another_encoder_are_made_again_in_the_background(
    fake_server: FakeOpenAIServer, database_url: str, embedder: Embedder
) -> None:
    """After `routing.embedding_model` changes, the stored vectors are another model's:
    searched as they are, they find nothing (or break on another width)."""
    room = unique()
    history = HistoryStore(database_url)
    turn = await history.add(room, "user", "My sister is called Alba.", "ann")
    stale = np.random.default_rng(0).standard_normal(384)
    stale = (stale / np.linalg.norm(stale)).astype(np.float16)
    row = {"turn_id": turn, "channel": room, "vector": stale.tobytes(), "encoder": "older:int8"}
    with history.engine.begin() as connection:  # as an older encoder left it
        connection.execute(insert(MemoryVectorRow), [row])
    history.close()

    brain = memory_brain(fake_server, database_url, embedder, lexical_weight=0.0)
    assert brain.memory is not None
    await brain.memory.settle()
    recalled = await brain.memory.recall(room, "What is my sister's name?", END)
    assert [t.turn_id for t, _ in recalled.turns] == [turn]
    await close_brain(brain)


async def test_vectors_from_before_encoders_were_recorded_are_kept(
    fake_server: FakeOpenAIServer, database_url: str, embedder: Embedder
) -> None:
    """Upgrading does not make every stored vector again: the unlabelled ones were made by
    the encoder the bot ran with, and are labelled as the one it runs with now."""
    room = unique()
    history = HistoryStore(database_url)
    turn = await history.add(room, "user", "My sister is called Alba.", "ann")
    kept = np.random.default_rng(1).standard_normal(384)
    kept = (kept / np.linalg.norm(kept)).astype(np.float16).tobytes()
    row = {"turn_id": turn, "channel": room, "vector": kept, "encoder": ""}
    with history.engine.begin() as connection:
        connection.execute(insert(MemoryVectorRow), [row])
    history.close()

    brain = memory_brain(fake_server, database_url, embedder)
    assert brain.memory is not None
    await brain.memory.settle()
    query = select(VECTORS.vector, VECTORS.encoder).where(VECTORS.turn_id == turn)
    with brain.history.engine.connect() as connection:
        assert connection.execute(query).one() == (kept, embedder.identity)
    await close_brain(brain)


async def test_a_texts_vector_does_not_depend_on_what_it_is_encoded_with(
    embedder: Embedder,
) -> None:
    """int8 layers quantize their input with one scale for the whole batch: encoded beside a
    longer text, a turn came out another vector (cosine 0.945 to itself alone), so what was
    indexed in a batch and what a question is compared with alone drifted apart."""
    fact = "Keep this between us: my sister Alba is moving to Valencia."
    neighbours = ["ok", "a much longer message, with many words in it, about the weekend plans"]
    other = Embedder(embedder.model_path)  # its own cache: both encode the fact
    for each in (embedder, other):
        await each.load()
    alone = await embedder.run(embedder.encode, [fact])
    batched = await other.run(other.encode, [*neighbours, fact])
    assert float(alone[0] @ batched[2]) > 0.9999
    await other.aclose()


def test_a_channels_vectors_stay_in_the_order_turns_were_said() -> None:
    """A search for corrections reads only the rows after a turn, so a turn caught up late
    or rewritten must not land after newer ones; an earlier snapshot stays as it was."""
    rng = np.random.default_rng(2)

    def unit(count: int) -> np.ndarray:
        rows = rng.standard_normal((count, 384)).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    first = unit(3)
    vectors = ChannelVectors(np.array([1, 2, 5]), first)
    before_ids, before_matrix = vectors.snapshot()
    late = unit(3)
    vectors.upsert([9, 4, 3], late)  # a new turn, and two caught up late, out of order
    vectors.upsert([2], late[:1])  # turn 2 rewritten
    ids, matrix = vectors.snapshot()
    assert ids.tolist() == [1, 2, 3, 4, 5, 9]
    expected = {1: first[0], 2: late[0], 3: late[2], 4: late[1], 5: first[2], 9: late[0]}
    for row, turn in enumerate(ids.tolist()):
        assert np.allclose(matrix[row].float().numpy(), expected[turn], atol=1e-3), turn
    assert before_ids.tolist() == [1, 2, 5]
    assert np.allclose(before_matrix.float().numpy(), first, atol=1e-3)
