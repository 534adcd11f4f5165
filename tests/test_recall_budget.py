"""The summary and the recalled turns share the memory's part of a prompt (issue 35 item 4):
each has its own share, so both appear whenever both exist, and a summary longer than its
share is shortened to it, never left out."""

from __future__ import annotations

from datetime import UTC, datetime

from brain.characters.recall import OldTurn, Recollection, fit_recollection

SUMMARY = (  # about 480 characters, as seen black-box (the estimate: 160 tokens and more)
    "Ann and the bot talked about Ann's garden in Reykjavik: she grows kale and potatoes in "
    "raised beds, keeps three goats named Hekla, Katla and Askja, and plans a greenhouse for "
    "tomatoes next spring. Her sister Zanzibarella Quintero visits every August and helps "
    "with the harvest. Ann asked for advice on frost protection, goat fencing, and a budget "
    "for the greenhouse of about 900 euros; the bot suggested fleece covers, electric fence "
    "tape and a second-hand polycarbonate kit from the local market."
)


async def estimate(text: str) -> int:
    return (len(text.encode()) + 2) // 3  # as mombot counts without a tokenizer: on the safe side


def old(turn_id: int, text: str) -> OldTurn:
    return OldTurn(turn_id, "user", "ann", text, datetime(2026, 12, 1, 9, turn_id, tzinfo=UTC))


def recollection(summary: str) -> Recollection:
    turns = (
        (old(3, "My flight to Lisbon leaves on Thursday at 7."), 0.61),
        (old(5, "The goats' vet is Dr. Einarsdottir, on Laugavegur."), 0.52),
    )
    return Recollection(summary, turns, most=3, budget=192, summary_budget=160)


async def test_a_long_summary_and_the_recalled_turns_both_appear() -> None:
    text, spent = await fit_recollection(recollection(SUMMARY), 100, 192 + 160, estimate)
    assert "Summary of older messages: Ann and the bot talked" in text
    assert "flight to Lisbon" in text and "Dr. Einarsdottir" in text
    assert await estimate(text) <= 192 + 160 and spent <= 192 + 160


async def test_a_summary_longer_than_its_share_is_shortened_not_left_out() -> None:
    longer = " ".join([SUMMARY] * 3)  # well past its share
    text, spent = await fit_recollection(recollection(longer), 100, 192 + 160, estimate)
    summary_line = next(line for line in text.splitlines() if "Summary" in line)
    assert summary_line.endswith("…") and await estimate(summary_line) <= 160
    assert "flight to Lisbon" in text and "Dr. Einarsdottir" in text
    assert spent <= 192 + 160


async def test_in_a_small_window_both_keep_their_proportion() -> None:
    """The prompt builder gives the memory a quarter of a small window at most: the shares
    shrink together, and both still appear."""
    text, spent = await fit_recollection(recollection(SUMMARY), 100, 120, estimate)
    assert "Summary of older messages" in text and "flight to Lisbon" in text
    assert spent <= 120


async def test_without_a_summary_the_turns_have_the_whole_budget() -> None:
    text, _ = await fit_recollection(recollection(""), 100, 192, estimate)
    assert "Summary" not in text and "Dr. Einarsdottir" in text
