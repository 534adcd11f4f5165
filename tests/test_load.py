"""200 concurrent conversations in 50 channels through the whole brain (fast fake model)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_openai import FakeOpenAIServer
from tests.helpers import close_brain
from tests.load import PLATFORM, drive, echo_server, fake_brain


@pytest.fixture
def echo() -> Iterator[FakeOpenAIServer]:
    server = echo_server()
    yield server
    server.stop()


async def test_200_conversations_in_50_channels_lose_and_reorder_nothing(
    echo: FakeOpenAIServer, sqlite_url: str
) -> None:
    brain = fake_brain(echo, sqlite_url)
    report = await drive(brain, channels=50, users_per_channel=4, messages_each=3)
    await close_brain(brain)

    assert report.errors == []
    assert report.messages == 600
    assert report.most_at_once_in_a_channel == 1  # one reply at a time per channel
    assert len(brain.channels) == 0  # idle channels leave nothing behind
    for key, sent in report.sent.items():
        turns = list(reversed(await brain.history.recent(key, limit=100)))
        # Stored in arrival order, each user turn followed by the reply to exactly that turn.
        assert [t.content for t in turns[0::2]] == sent
        assert [t.role for t in turns] == ["user", "assistant"] * len(sent)
        for question, answer in zip(turns[0::2], turns[1::2], strict=False):
            assert answer.content == f"echo: {question.content}"
    assert len(report.sent) == 50 and all(k.startswith(f"{PLATFORM}:") for k in report.sent)
    # Every model call was answered once: no retries, no duplicates.
    assert len(echo.requests) == 600
