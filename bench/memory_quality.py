"""How well the memory recalls, on the evaluation set (bench/memory_eval.py).

Each half is stored as a channel would hold it: its turns in one database channel, with
their vectors and the database's full-text index. Each question then recalls what the memory
would show (`recall_turns`, the best first), and each unrelated message too:

- found: the question's answer is among what it recalled (for a correction, the newer turn);
- false recall: recalled turns that answer something else, over all (question, other turn)
  pairs (the older value of a correction is not false: it is shown with its date);
- unrelated: unrelated messages that recalled anything;
- newer first: corrections whose newer turn ranked before the older when both came back.

`tune` chooses the lexical weight, the correction similarity and the floor on the tuning
half only: the most found with false recall at most 1 % and at most 5 % of unrelated
messages recalling anything. The held-out half is then scored with those settings.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sqlalchemy import insert, select

from bench.memory_eval import Half
from brain.database.tables import TURNS, TurnRow
from brain.history.store import HistoryStore
from brain.memory.lexical import LexicalSearch
from brain.memory.ranking import Ranking, rank
from brain.memory.vectors import search_dtype

MAX_FALSE = 0.01
MAX_UNRELATED = 0.05
SHOWN = 3  # MemoryConfig.recall_turns
WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
CORRECTIONS = (0.45, 0.5, 0.55, 0.6, 0.7, 1.01)  # 1.01: never
FLOORS = tuple(float(f) for f in np.round(np.arange(0.10, 0.96, 0.005), 3))

Encode = Callable[[list[str], bool], np.ndarray]  # (texts, are they questions) -> rows


@dataclass(frozen=True)
class Score:
    found: float
    false_recall: float
    unrelated: float
    newer_first: float

    def allowed(self) -> bool:
        return self.false_recall <= MAX_FALSE and self.unrelated <= MAX_UNRELATED

    def __str__(self) -> str:
        return (
            f"found {self.found:5.1%}, false recall {self.false_recall:5.2%}, unrelated "
            f"recalling {self.unrelated:5.1%}, newer first {self.newer_first:4.0%}"
        )


@dataclass
class StoredHalf:
    """A half stored in a channel: turn ids, their vectors, and each message's words found."""

    half: Half
    ids: torch.Tensor  # turn ids, in `half.turns` order
    matrix: torch.Tensor
    questions: np.ndarray
    unrelated: np.ndarray
    lexical: list[dict[int, float]]  # per question, then per unrelated message

    def recalled(self, ranking: Ranking) -> list[list[int]]:
        """What each question, then each unrelated message, recalls (turn indexes)."""
        before = int(self.ids.max()) + 1
        index = {turn_id: i for i, turn_id in enumerate(self.ids.tolist())}
        queries = [*self.questions, *self.unrelated]
        return [
            [index[t] for t, _ in rank(self.ids, self.matrix, q, words, before, ranking)][:SHOWN]
            for q, words in zip(queries, self.lexical, strict=True)
        ]


def store_half(half: Half, encode: Encode, url: str, channel: str) -> StoredHalf:
    """Store the half's turns in `channel` of the database at `url`, and search each
    message's words there."""
    store = HistoryStore(url)
    rows = [{"channel": channel, "role": "user", "author": "ann", "content": t} for t in half.turns]
    with store.engine.begin() as connection:
        connection.execute(insert(TurnRow), rows)
    query = select(TURNS.id).where(TURNS.channel == channel).order_by(TURNS.id)
    with store.engine.connect() as connection:
        ids = [row[0] for row in connection.execute(query)]
    lexical = LexicalSearch(store.engine)
    before = ids[-1] + 1
    words = [
        lexical.search(channel, text, before, SHOWN * 4)
        for text in [*(q.text for q in half.questions), *half.unrelated]
    ]
    store.close()
    return StoredHalf(
        half,
        torch.tensor(ids, dtype=torch.int64),
        torch.from_numpy(encode(half.turns, False)).to(search_dtype()),  # as searched
        encode([q.text for q in half.questions], True),
        encode(half.unrelated, True),
        words,
    )


def score(stored: StoredHalf, recalled: Sequence[list[int]]) -> Score:
    questions = stored.half.questions
    found = wrong = pairs = newer = both = 0
    for question, turns in zip(questions, recalled, strict=False):
        right = {question.target} | ({question.older} if question.older is not None else set())
        found += question.target in turns
        wrong += sum(1 for t in turns if t not in right)
        pairs += len(stored.half.turns) - len(right)
        if question.older is not None and {question.target, question.older} <= set(turns):
            both += 1
            newer += turns.index(question.target) < turns.index(question.older)
    unrelated = recalled[len(questions) :]
    return Score(
        found / len(questions),
        wrong / pairs,
        sum(1 for turns in unrelated if turns) / len(unrelated),
        newer / both if both else 1.0,
    )


def tune(stored: StoredHalf) -> dict[float, tuple[Ranking, Score]]:
    """For each lexical weight, the settings that find most on the tuning half within the
    false-recall limits (the best of all: `best`).

    For each weight and correction similarity, the lowest allowed floor is found by
    halving: a higher floor only ever recalls less, so it finds less and recalls falsely
    less, and the lowest allowed floor is the one that finds the most.
    """
    chosen: dict[float, tuple[Ranking, Score]] = {}
    for weight, alike in itertools.product(WEIGHTS, CORRECTIONS):
        low, high = 0, len(FLOORS) - 1
        found: tuple[Ranking, Score] | None = None
        while low <= high:
            middle = (low + high) // 2
            ranking = Ranking(SHOWN * 4, FLOORS[middle], weight, alike)
            result = score(stored, stored.recalled(ranking))
            if result.allowed():
                found, high = (ranking, result), middle - 1
            else:
                low = middle + 1
        if found is not None and (weight not in chosen or found[1].found > chosen[weight][1].found):
            chosen[weight] = found
    assert chosen, "no floor keeps false recall within the limits"
    return chosen


def best(chosen: dict[float, tuple[Ranking, Score]]) -> tuple[Ranking, Score]:
    """The settings finding the most; of equals, the smallest lexical weight."""
    return max(chosen.values(), key=lambda pair: (pair[1].found, -pair[0].lexical_weight))
