"""Accuracy and latency of the routing classifiers on the labelled set in tests/data/routes.jsonl.

Side by side in one run: the embedding router alone, the LLM classifier alone (the
bundled SmolLM2-135M on a real llama.cpp server, JSON schema), and the hybrid.

    .venv/bin/python -m bench.bench_routing
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bot.embedded import EmbeddedConfig, EmbeddedServer
from brain.config import EndpointConfig, RoutingConfig
from brain.llm import ModelClient
from brain.routing import (
    EmbeddingClassifier,
    HybridClassifier,
    LLMClassifier,
    Route,
    bundled_embedding_model,
    load_examples,
)

LABELLED = Path(__file__).resolve().parent.parent / "tests" / "data" / "routes.jsonl"


async def evaluate(name: str, classifier, data) -> None:
    times, correct, by_source = [], 0, {}
    for text, route in data:
        started = time.perf_counter()
        decision = await classifier.classify(text, [])
        times.append(time.perf_counter() - started)
        ok = decision.route is route
        correct += ok
        hits = by_source.setdefault(decision.source, [0, 0])
        hits[0] += ok
        hits[1] += 1
    sources = ", ".join(f"{s}: {h[0]}/{h[1]}" for s, h in sorted(by_source.items()))
    times.sort()
    print(
        f"| {name} | {correct / len(data):.1%} ({correct}/{len(data)}) | "
        f"{statistics.median(times) * 1000:.0f} ms | "
        f"{times[int(len(times) * 0.95)] * 1000:.0f} ms | {sources} |"
    )


async def main() -> None:
    data = []
    for line in LABELLED.read_text().splitlines():
        row = json.loads(line)
        data.append((row["text"], Route(row["route"])))
    server = EmbeddedServer(EmbeddedConfig(n_ctx=2048), Path(tempfile.mkdtemp()) / "s.log")
    await server.start()
    client = ModelClient(
        "embedded",
        EndpointConfig(base_url=server.base_url, kind="llama-cpp-python", context_window=2048),
    )
    embedding = EmbeddingClassifier(bundled_embedding_model(), load_examples())
    started = time.perf_counter()
    await embedding.load()
    print(
        f"embedding router load: {time.perf_counter() - started:.1f} s; "
        f"{len(data)} labelled messages"
    )
    llm = LLMClassifier(client, "smollm2-135m")
    default = RoutingConfig()
    print("| classifier | accuracy | median latency | p95 latency | decided by (right/all) |")
    print("|---|---|---|---|---|")
    await evaluate("embedding (all-MiniLM-L6-v2, 3 neighbours)", embedding, data)
    await evaluate("LLM (SmolLM2-135M, JSON schema)", llm, data)
    for margin in sorted({0.05, default.confidence}):
        hybrid = HybridClassifier(embedding, llm, margin)
        await evaluate(f"hybrid (margin {margin})", hybrid, data)
    await client.aclose()
    await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
