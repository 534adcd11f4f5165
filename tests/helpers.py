"""Test doubles that record what happened (never mocks that assert calls)."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from brain.images.queue import StepFn
from brain.images.requests import GeneratedImage, ImageRequest, ProgressFn
from brain.outbox import Capabilities
from brain.routing.router import Route, RouteDecision


@dataclass
class RecordingOutbox:
    """An outbox that keeps every message, edit, image and error, in order."""

    capabilities: Capabilities = field(default_factory=lambda: Capabilities(edit_interval_s=0.0))
    messages: list[str] = field(default_factory=list)
    events: list[tuple[str, object]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    images: list[tuple[bytes, str, str]] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)

    async def send(self, text: str) -> int:
        self.messages.append(text)
        self.events.append(("send", text))
        return len(self.messages) - 1

    async def edit(self, ref: int, text: str) -> None:
        self.messages[ref] = text
        self.events.append(("edit", (ref, text)))

    async def send_image(self, data: bytes, filename: str, caption: str) -> int:
        self.images.append((data, filename, caption))
        self.events.append(("image", filename))
        return await self.send(caption)

    async def send_reasoning(self, text: str) -> None:
        self.reasoning.append(text)
        self.events.append(("reasoning", text))

    async def typing(self) -> None:
        self.events.append(("typing", None))

    async def error(self, text: str) -> None:
        self.errors.append(text)
        self.events.append(("error", text))

    @property
    def text(self) -> str:
        return "\n".join(self.messages)


class RecordingGenerator:
    """A test double of the image generator interface: a real (tiny) PNG per request."""

    length = 0  # nothing waits: each request is drawn at once

    def __init__(self) -> None:
        self.requests: list[ImageRequest] = []

    async def generate(self, request: ImageRequest, progress: ProgressFn) -> GeneratedImage:
        from PIL import Image

        self.requests.append(request)
        await progress("step 1/1")
        out = io.BytesIO()
        Image.new("RGB", (request.width, request.height), (200, 30, 30)).save(out, "PNG")
        return GeneratedImage(
            out.getvalue(), request.width, request.height, request.seed, request.prompt
        )


class SlowBackend:
    """A backend that takes a while, to test the queue's rules without a model."""

    max_batch = 2

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()  # set once a batch is in the backend
        self.closed = False

    def shape_key(self, r: ImageRequest) -> Hashable:
        return (r.width, r.height)

    async def run_batch(
        self, requests: list[ImageRequest], on_step: StepFn
    ) -> list[GeneratedImage]:
        self.calls.append([r.prompt for r in requests])
        self.started.set()
        for step in range(1, 4):
            on_step(step, 3)
        await self.release.wait()
        return [GeneratedImage(b"png", r.width, r.height, r.seed, r.prompt) for r in requests]

    async def aclose(self) -> None:
        self.closed = True


class FakeNvml:
    """Stands in for pynvml: temperatures read from a script, one list per GPU."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        """pynvml's error type."""

    def __init__(self, temperatures: list[list[int]], *, broken: bool = False) -> None:
        self.temperatures = temperatures
        self.reads = 0
        self.broken = broken  # every read fails, as NVML under MIG or with a GPU lost
        self.shut_down = 0
        self.shutdown_fails = False

    def nvmlInit(self) -> None:
        return None

    def nvmlShutdown(self) -> None:
        self.shut_down += 1
        if self.shutdown_fails:
            raise RuntimeError("an unexpected failure while closing")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.temperatures)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"NVIDIA Test GPU"

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        if self.broken:
            raise self.NVMLError("Not Supported")
        series = self.temperatures[handle]
        self.reads += 1
        return series.pop(0) if len(series) > 1 else series[0]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=2 * 2**30, total=80 * 2**30)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=97)


async def close_brain(brain: Any) -> None:
    """Close what a test built by hand and gave its brain: image generator, clients, history
    (and the memory's work on it)."""
    if brain.memory is not None:
        await brain.memory.aclose()
    close = getattr(brain.images.generator, "aclose", None)
    if close is not None:
        await close()
    for client in brain.clients.values():
        await client.aclose()
    brain.history.close()


def smollm2_mixture(
    endpoint: Any,
    history: Any,
    *,
    members: tuple[str, ...] = ("logic", "critic"),
    member_tokens: int = 16,
    synthesizer_tokens: int = 24,
    **brain_options: Any,
) -> Any:
    """Members and a synthesizer ("mom"), all on the real SmolLM2 server (greedy decoding)."""
    from brain.brain import Brain
    from brain.config import CharacterConfig
    from brain.models.client import ModelClient
    from tests.conftest import MODEL

    def character(name: str, tokens: int, role: str = "member") -> CharacterConfig:
        return CharacterConfig(
            name=name,
            endpoint="local",
            model=MODEL,
            persona=f"You are {name}.",
            max_tokens=tokens,
            temperature=0,
            role=role,
        )

    characters = [character(n, member_tokens) for n in members]
    characters.append(character("mom", synthesizer_tokens, "synthesizer"))
    clients = {"local": ModelClient("local", endpoint)}
    return Brain(characters=characters, clients=clients, history=history, **brain_options)


class Scripted:
    """A router unsure about the messages it lists, sure of text for all others."""

    def __init__(self, *unsure: str) -> None:
        self.unsure = set(unsure)
        self.asked: list[str] = []

    async def classify(self, text: str, recent: list[str]) -> RouteDecision:
        self.asked.append(text)
        if text in self.unsure:
            return RouteDecision(Route.IMAGE, 0.55, "test", unsure=True)
        return RouteDecision(Route.TEXT, 0.99, "test")


UNSURE_ABOUT = ("a cat on a roof", "a dog in the rain")


def asking_brain(server: Any, history_url: str) -> Any:
    """One character on a fake model server, an image generator, and a router unsure about
    the messages in UNSURE_ABOUT (sure of text for all others): for the ask-when-unsure
    flow on every platform. Its parts: `brain.chat.classifier`, `brain.images.generator`."""
    from brain.config import ImagesConfig
    from tests.load import fake_brain

    return fake_brain(
        server,
        history_url,
        classifier=Scripted(*UNSURE_ABOUT),
        image_generator=RecordingGenerator(),
        images_config=ImagesConfig(default_size="64x64"),
    )


async def eventually(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Poll `condition` every 10 ms until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for a condition"
        await asyncio.sleep(0.01)


async def eventually_equal(read: Callable[[], Awaitable[Any]], expected: Any) -> None:
    """Read until the value is `expected` (a change applied in its channel's turn, an event
    applied when the bot syncs); fail after 30 s with the last value."""
    deadline = time.monotonic() + 30
    while (value := await read()) != expected:
        assert time.monotonic() < deadline, f"still {value!r}"
        await asyncio.sleep(0.05)


FORGETFUL_WINDOW = 400  # tokens: a few dozen short turns push a fact out of it


def memory_brain(server: Any, history_url: str, embedder: Any, **memory: Any) -> Any:
    """One character ("mom") on a fake server with a small window, and the memory on."""
    from brain.brain import Brain
    from brain.config import CharacterConfig, EndpointConfig, MemoryConfig
    from brain.history.store import HistoryStore
    from brain.models.client import ModelClient

    character = CharacterConfig(
        name="mom", endpoint="f", model="fake", persona="You are mom.", max_tokens=32
    )
    endpoint = EndpointConfig(base_url=server.base_url, context_window=FORGETFUL_WINDOW)
    return Brain(
        characters=[character],
        clients={"f": ModelClient("f", endpoint)},
        history=HistoryStore(history_url),
        memory_config=MemoryConfig(**memory),
        embedder=embedder,
    )


FILLER_TOPICS = (
    "the weather this weekend",
    "a good pasta sauce",
    "the football match last night",
    "how to fix a squeaky door",
    "which podcast to listen to",
    "the new coffee machine at work",
    "a board game for four players",
    "learning to juggle",
)


def last_reply_prompt(server: Any) -> str:
    """The newest reply's prompt (streamed; a summary's request is not), every message of
    it in one string."""
    body = [r.body for r in server.requests if r.body.get("stream")][-1]
    return "\n".join(m["content"] for m in body["messages"])


async def chat_filler(history: Any, channel: str, turns: int) -> None:
    """Store `turns` turns of small talk (user and assistant in turn) in a channel."""
    for i in range(turns):
        topic = FILLER_TOPICS[i % len(FILLER_TOPICS)]
        if i % 2 == 0:
            text = f"Number {i}: what do you think about {topic}?"
            await history.add(channel, "user", text, "ann")
        else:
            await history.add(channel, "assistant", f"About {topic}: it depends, really.", "mom")
