"""Drive the whole brain with many concurrent conversations; shared by the load test and bench.

Each conversation is one user in one channel sending messages one after another, each
awaiting its reply, as people do. The model is a fast fake OpenAI server that echoes the
user's message, so every stored reply can be matched to the message it answers.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from brain.brain import Brain
from brain.config import CharacterConfig, EndpointConfig
from brain.history.store import HistoryStore
from brain.messages import Inbound
from brain.models.client import ModelClient
from tests.fake_openai import Behaviour, FakeOpenAIServer, last_user
from tests.helpers import RecordingOutbox

PLATFORM = "load"


def echo(body: dict[str, Any]) -> str:
    """The user's text back (of a message with images, its text parts only)."""
    content = last_user(body)
    if isinstance(content, list):
        content = " ".join(part["text"] for part in content if part.get("type") == "text")
    return f"echo: {content}"


def echo_server() -> FakeOpenAIServer:
    return FakeOpenAIServer(behaviour=Behaviour(reply_for=echo)).start()


def fake_brain(
    server: FakeOpenAIServer, history_url: str, *, api_key: str | None = None, **options: Any
) -> Brain:
    """One character, "mom", on the fake server; `options` go to the Brain."""
    character = CharacterConfig(
        name="mom", endpoint="fake", model="fake", persona="You are mom.", max_tokens=64
    )
    endpoint = EndpointConfig(base_url=server.base_url, context_window=8192, timeout_s=30)
    return Brain(
        characters=[character],
        clients={"fake": ModelClient("fake", endpoint, api_key=api_key)},
        history=HistoryStore(history_url),
        **options,
    )


class LoopLag:
    """Measures how late the event loop wakes a task that sleeps 5 ms at a time."""

    def __init__(self) -> None:
        self.lags_s: list[float] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def worst_s(self) -> float:
        return max(self.lags_s, default=0.0)

    def over(self, limit_s: float) -> int:
        return sum(1 for lag in self.lags_s if lag > limit_s)

    async def _probe(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            self.lags_s.append(time.perf_counter() - started - 0.005)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._probe())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@dataclass
class LoadReport:
    messages: int = 0
    seconds: float = 0.0
    worst_loop_lag_s: float = 0.0
    loop_lags_over_50ms: int = 0
    loop_probes: int = 0
    most_at_once_in_a_channel: int = 0
    errors: list[str] = field(default_factory=list)
    sent: dict[str, list[str]] = field(default_factory=dict)  # channel key -> texts in send order
    handle_seconds: list[float] = field(default_factory=list)


class _ActiveOutbox(RecordingOutbox):
    """Counts replies in progress per channel: from the first typing signal until handle returns."""

    def __init__(self, channel: str, active: Counter[str], report: LoadReport) -> None:
        super().__init__()
        self.channel, self.active, self.report, self.counted = channel, active, report, False

    async def typing(self) -> None:
        if not self.counted:
            self.counted = True
            self.active[self.channel] += 1
            self.report.most_at_once_in_a_channel = max(
                self.report.most_at_once_in_a_channel, self.active[self.channel]
            )
        await super().typing()


async def drive(
    brain: Brain, *, channels: int = 50, users_per_channel: int = 4, messages_each: int = 3
) -> LoadReport:
    """Run channels x users_per_channel concurrent conversations through `brain.handle`."""
    report = LoadReport()
    active: Counter[str] = Counter()

    async def conversation(channel: int, user: int) -> None:
        for n in range(messages_each):
            text = f"user {user} in channel {channel}, message {n}"
            message = Inbound(
                platform=PLATFORM,
                channel_id=str(channel),
                author_id=f"u{user}",
                author_name=f"user{user}",
                text=text,
            )
            report.sent.setdefault(message.channel_key, []).append(text)
            outbox = _ActiveOutbox(message.channel_key, active, report)
            started = time.perf_counter()
            await brain.handle(message, outbox)
            report.handle_seconds.append(time.perf_counter() - started)
            if outbox.counted:
                active[message.channel_key] -= 1
            report.errors.extend(outbox.errors)
            report.messages += 1

    async with LoopLag() as lag:
        started = time.perf_counter()
        await asyncio.gather(
            *(conversation(c, u) for c in range(channels) for u in range(users_per_channel))
        )
        report.seconds = time.perf_counter() - started
    report.worst_loop_lag_s = lag.worst_s
    report.loop_lags_over_50ms = lag.over(0.05)
    report.loop_probes = len(lag.lags_s)
    return report
