"""Checking an answer against a question's accepted answers, the same way for everyone.

`mombot eval` compares configurations (each member alone, the synthesizer, the mixture,
/think); the comparison is only fair if every reply is read by one rule. The rule is
chosen by the question, never by who answered:

- a regular expression, when the question gives one: it must match somewhere;
- numbers, when every accepted answer is a number: the reply's final number (the one
  after "answer is"/"answer:" if it says so, else its last number), read with commas,
  units and currency signs around it, compared as a number;
- yes/no, when the accepted answers are "yes" or "no": the reply's first yes or no;
- else any accepted answer appearing in the reply as whole words, case and
  punctuation aside.

Reasoning (`<think>…</think>`) is folded away first: a model that thinks "maybe 12"
and answers 13 answered 13.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from brain.models.reasoning import split_reasoning

_NUMBER = re.compile(r"(?<![\w.])[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])[-−]?\d+(?:\.\d+)?")
_STATED = re.compile(
    r"(?:answer|result|total)\s*(?:is|=|:|would be|will be)\s*"  # "the answer is"
    r"[^\d\-−]{0,12}?"  # "$", "about ", "**"
    r"([-−]?[\d,]*\d(?:\.\d+)?)",
    re.IGNORECASE,
)
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_WORDS = re.compile(r"[^\w]+")


@dataclass(frozen=True)
class Expected:
    """What counts as right for one question: accepted answers, or a pattern."""

    answers: tuple[str, ...] = ()
    pattern: str | None = None

    @property
    def kind(self) -> str:
        """How replies to it are read: "pattern", "number", "yesno" or "text"."""
        if self.pattern is not None:
            return "pattern"
        if self.answers and all(parse_number(a) is not None for a in self.answers):
            return "number"
        if self.answers and {a.strip().lower() for a in self.answers} <= {"yes", "no"}:
            return "yesno"
        return "text"


def parse_number(text: str) -> float | None:
    """`text` as a number if it is exactly one ("1,250", "-3.5"), else None."""
    cleaned = text.strip().replace(",", "").replace("−", "-")
    try:
        return float(cleaned)
    except ValueError:
        return None


def final_number(reply: str) -> float | None:
    """The number a reply gives as its answer: the one it states ("the answer is 42"),
    else its last number; None when it has no number."""
    stated = _STATED.findall(reply)
    if stated:
        return parse_number(stated[-1])
    numbers = _NUMBER.findall(reply)
    return parse_number(numbers[-1]) if numbers else None


def first_yes_no(reply: str) -> str | None:
    """ "yes" or "no", whichever the reply says first; None when it says neither."""
    found = _YES_NO.search(reply)
    return found.group(1).lower() if found else None


def _words(text: str) -> str:
    return " " + " ".join(_WORDS.sub(" ", text.lower()).split()) + " "


def extracted(reply: str, expected: Expected) -> str | None:
    """What the rule for `expected` reads out of `reply` (shown in reports), or None."""
    answer, _ = split_reasoning(reply)
    kind = expected.kind
    if kind == "number":
        number = final_number(answer)
        return None if number is None else f"{number:g}"
    if kind == "yesno":
        return first_yes_no(answer)
    if kind == "pattern":
        found = re.search(expected.pattern or "", answer, re.IGNORECASE)
        return found.group(0) if found else None
    words = _words(answer)
    return next((a for a in expected.answers if _words(a) in words), None)


def is_right(reply: str, expected: Expected) -> bool:
    """Whether `reply` gives an accepted answer, by the question's one rule."""
    value = extracted(reply, expected)
    if value is None:
        return False
    kind = expected.kind
    if kind == "number":
        number = float(value)
        return any(abs(number - (parse_number(a) or 0.0)) < 1e-6 for a in expected.answers)
    if kind == "yesno":
        return value in {a.strip().lower() for a in expected.answers}
    return True
