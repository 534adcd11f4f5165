"""Splitting long replies and throttling streamed edits."""

from __future__ import annotations

import pytest

from brain.outbox import Capabilities
from brain.streaming import ReplyStreamer, split_text
from tests.helpers import RecordingOutbox


def test_short_text_is_one_message() -> None:
    assert split_text("hello", 2000) == ["hello"]


def test_splits_between_words_not_inside() -> None:
    text = " ".join(f"word{i}" for i in range(600))
    parts = split_text(text, 2000)
    assert all(len(p) <= 2000 for p in parts)
    assert " ".join(parts).split() == text.split()
    assert all(p.split()[-1].startswith("word") for p in parts)


def test_prefers_paragraph_breaks() -> None:
    text = ("a" * 1200) + "\n\n" + ("b" * 1200)
    assert split_text(text, 2000) == ["a" * 1200, "b" * 1200]


def test_code_block_is_closed_and_reopened() -> None:
    code = "\n".join(f"print({i})" for i in range(400))
    text = f"Here:\n```python\n{code}\n```\nDone."
    parts = split_text(text, 2000)
    assert len(parts) > 1
    for part in parts:
        assert len(part) <= 2000
        assert part.count("```") % 2 == 0, part[:80]
    assert parts[1].startswith("```python\n")
    rejoined = "\n".join(p.removeprefix("```python\n").removesuffix("\n```") for p in parts)
    assert [
        line for line in rejoined.splitlines() if line.startswith("print(")
    ] == code.splitlines()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_edits_are_throttled_to_the_platform_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    outbox = RecordingOutbox(Capabilities(max_message_length=2000, edit_interval_s=1.0))
    clock = FakeClock()
    streamer = ReplyStreamer(outbox, clock=clock)
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr("brain.streaming.asyncio.sleep", fake_sleep)
    for i in range(100):  # 100 tokens over 5 seconds
        clock.now = i * 0.05
        await streamer.push(f"t{i} ")
    text = await streamer.finish()
    edit_times = [t for t in outbox.events if t[0] in ("send", "edit")]
    assert len(edit_times) <= 7  # 5 s of streaming at 1 edit/s, plus first send and the final edit
    assert text == "".join(f"t{i} " for i in range(100))  # every piece, in order
    assert outbox.messages == [text]  # one message, ending as the stream ended
    assert slept and all(s <= 1.0 for s in slept)


async def test_long_stream_continues_in_new_messages() -> None:
    outbox = RecordingOutbox(Capabilities(max_message_length=100, edit_interval_s=0.0))
    streamer = ReplyStreamer(outbox)
    words = [f"w{i:03d}" for i in range(100)]
    for word in words:
        await streamer.push(word + " ")
    await streamer.finish()
    assert len(outbox.messages) >= 5
    assert all(len(m) <= 100 for m in outbox.messages)
    assert " ".join(outbox.messages).split() == words


async def test_platform_without_edits_gets_whole_messages_only() -> None:
    outbox = RecordingOutbox(Capabilities(max_message_length=50, edit_interval_s=None))
    streamer = ReplyStreamer(outbox)
    for i in range(30):
        await streamer.push(f"x{i} ")
    await streamer.finish("footer")
    assert not [e for e in outbox.events if e[0] == "edit"]
    assert outbox.messages[-1].endswith("footer")
    assert " ".join(outbox.messages).split() == [f"x{i}" for i in range(30)] + ["footer"]


async def test_a_note_after_a_reply_cut_inside_code_is_not_part_of_the_code() -> None:
    """Issue 36 defect 7: the length-limit note came inside a code block left open."""
    outbox = RecordingOutbox(Capabilities(max_message_length=2000, edit_interval_s=None))
    streamer = ReplyStreamer(outbox)
    await streamer.push("Here:\n\n```python\nfor i in range(3):\n    print(")
    text = await streamer.finish("_(cut short)_")
    assert text == "Here:\n\n```python\nfor i in range(3):\n    print("  # stored as written
    assert outbox.messages == [
        "Here:\n\n```python\nfor i in range(3):\n    print(\n```\n\n_(cut short)_"
    ]
