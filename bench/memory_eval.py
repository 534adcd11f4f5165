"""The memory's evaluation set (bench/data/memory_eval.jsonl), one half at a time.

Written before any tuning and split in two: settings are chosen on the "tune" half only,
and the "held_out" half reports what they do on conversations they were not chosen on
(tests/test_memory_eval.py keeps the halves apart). Each row is one of:

- a fact a person tells the bot and a later question about it (often sharing no word),
  optionally with a `distractor`: a near miss that must not be recalled for it (another
  person's sister);
- a `correction`: a fact, a later message changing it, and a question whose answer is the
  newer one (the older may be recalled too, after it);
- an `unrelated` message, which should recall nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

EVAL_SET = Path(__file__).parent / "data" / "memory_eval.jsonl"
HALVES = ("tune", "held_out")


@dataclass(frozen=True)
class Question:
    text: str
    target: int  # index in `Half.turns` of the turn that answers it
    older: int | None  # the value `target` corrected, if it is a correction


@dataclass(frozen=True)
class Half:
    """One half as a channel would hold it: every turn told, in order, and what is asked."""

    name: str
    turns: list[str]
    questions: list[Question]
    unrelated: list[str]


def load_half(name: str, path: Path = EVAL_SET) -> Half:
    """The `name` half of the set; nothing of the other half is read into it."""
    if name not in HALVES:
        raise ValueError(f"no half named {name!r}: {HALVES}")
    turns: list[str] = []
    questions: list[Question] = []
    unrelated: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["half"] != name:
            continue
        if "unrelated" in row:
            unrelated.append(row["unrelated"])
            continue
        turns.append(row["fact"])
        older = None
        if "correction" in row:
            older = len(turns) - 1
            turns.append(row["correction"])
        questions.append(Question(row["question"], len(turns) - 1, older))
        if "distractor" in row:
            turns.append(row["distractor"])
    return Half(name, turns, questions, unrelated)
