"""The memory's evaluation set: big enough, both halves alike in kind, and kept apart."""

from __future__ import annotations

import json

from bench.memory_eval import EVAL_SET, HALVES, load_half


def rows() -> list[dict[str, str]]:
    return [json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines()]


def texts(row: dict[str, str]) -> set[str]:
    return {value.casefold() for key, value in row.items() if key != "half"}


def test_the_set_has_the_size_the_issue_asks_for_in_each_half() -> None:
    for name in HALVES:
        half = load_half(name)
        corrections = [q for q in half.questions if q.older is not None]
        assert len(half.questions) >= 75 and len(half.unrelated) >= 75, name
        assert len(corrections) >= 10, name
        distractors = [r for r in rows() if r["half"] == name and "distractor" in r]
        assert len(distractors) >= 10, name
    assert sum(len(load_half(n).questions) for n in HALVES) >= 150


def test_no_text_is_in_both_halves() -> None:
    by_half = {name: set[str]() for name in HALVES}
    for row in rows():
        assert row["half"] in HALVES, row
        by_half[row["half"]] |= texts(row)
    assert by_half["tune"].isdisjoint(by_half["held_out"])


def test_a_half_reads_nothing_of_the_other() -> None:
    held_out = set().union(*(texts(r) for r in rows() if r["half"] == "held_out"))
    tune = load_half("tune")
    seen = {t.casefold() for t in [*tune.turns, *tune.unrelated]}
    seen |= {q.text.casefold() for q in tune.questions}
    assert seen and seen.isdisjoint(held_out)


def test_each_question_points_at_the_turn_that_answers_it() -> None:
    half = load_half("held_out")
    for row in (r for r in rows() if r["half"] == "held_out" and "question" in r):
        question = next(q for q in half.questions if q.text == row["question"])
        assert half.turns[question.target] == row.get("correction", row["fact"])
        if question.older is not None:
            assert half.turns[question.older] == row["fact"]
