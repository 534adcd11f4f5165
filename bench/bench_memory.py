"""The memory: how to search, its relevance threshold, what recall adds, indexing under load.

(0) options: exact search of 100 000 vectors in numpy and torch (float32, float16, bfloat16),
    usearch's exact search, and building and querying HNSW indexes (hnswlib, usearch; they
    are installed for this part only: `pip install hnswlib usearch`);
(1) threshold: cosine similarity of all-MiniLM-L6-v2 (int8) between questions and the
    facts they ask about, against every other fact and unrelated messages
    (bench/data/recall_pairs.jsonl); chosen on half of the pairs (the lowest threshold
    where at most 1 % of the unrelated pairs pass), reported on the other half too;
(2) latency: messages through `Brain.handle` with 100 000 stored turns in the channel,
    memory on and off side by side (interleaved, same database, a model server with a
    fixed reply in its own process), and `Memory.recall` alone;
(3) indexing: user turns stored at 50 a second for 20 s, the worst event-loop lag
    meanwhile, and how long the backlog takes to clear afterwards.

  python -m bench.bench_memory [options] [threshold] [indexing] [latency]   (default: all)
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert

from bench.bench_load import spawn_echo_server
from brain.brain import Brain
from brain.config import MemoryConfig
from brain.history.store import HistoryStore, TurnRow
from brain.memory.store import MemoryStore
from brain.messages import Inbound
from brain.models.embedder import Embedder
from brain.routing.router import bundled_embedding_model
from tests.helpers import RecordingOutbox, close_brain
from tests.load import LoopLag, fake_brain

PAIRS = Path(__file__).parent / "data" / "recall_pairs.jsonl"
STORED = 100_000
MAX_FALSE_HITS = 0.01
FACT = "My sister is called Alba, and she lives in Valencia."


def timed_ms(work: Any, repeats: int = 30) -> float:
    work()
    times = []
    for _ in range(repeats):
        begun = time.perf_counter()
        work()
        times.append(time.perf_counter() - begun)
    return statistics.median(times) * 1000


def search_options() -> None:
    """The candidates for searching a channel's vectors, on random unit vectors (the embedder
    thread's work: run through `Embedder.run`)."""
    import torch

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((STORED, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = vectors[7]
    print(f"(0) searching {STORED} vectors for the 12 most alike, median ms:")
    half = vectors.astype(np.float16)
    print(
        f"    numpy float32 exact: {timed_ms(lambda: np.argpartition(-(vectors @ query), 12)):.1f}"
    )
    print(f"    numpy float16 exact: {timed_ms(lambda: half @ query.astype(np.float16), 5):.1f}")
    with torch.inference_mode():
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            matrix, q = torch.from_numpy(vectors).to(dtype), torch.from_numpy(query).to(dtype)
            ms = timed_ms(lambda m=matrix, q=q: torch.topk(torch.mv(m, q).float(), 12))
            print(f"    torch {str(dtype).removeprefix('torch.')} exact: {ms:.1f}")
    try:
        import hnswlib
        from usearch.index import Index, MetricKind, search
    except ImportError:
        print("    (hnswlib and usearch not installed: pip install hnswlib usearch)")
        return
    ms = timed_ms(lambda: search(half, query.astype(np.float16), 12, MetricKind.IP, exact=True))
    print(f"    usearch float16 exact: {ms:.1f}")
    begun = time.perf_counter()
    index = Index(ndim=384, metric="ip", dtype="f16")
    index.add(np.arange(STORED), half)
    built = time.perf_counter() - begun
    ms = timed_ms(lambda: index.search(query, 12))
    print(f"    usearch HNSW: built in {built:.1f} s, query {ms:.2f}")
    begun = time.perf_counter()
    graph = hnswlib.Index(space="ip", dim=384)
    graph.init_index(max_elements=STORED, ef_construction=100, M=16)
    graph.add_items(vectors, np.arange(STORED))
    built = time.perf_counter() - begun
    graph.set_ef(64)
    ms = timed_ms(lambda: graph.knn_query(query, 12))
    print(f"    hnswlib HNSW: built in {built:.1f} s, query {ms:.2f}")


def threshold_table(embedder: Embedder) -> float:
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    pairs = [r for r in rows if "fact" in r]
    unrelated = embedder.encode([r["unrelated"] for r in rows if "unrelated" in r])
    facts = embedder.encode([p["fact"] for p in pairs])
    questions = embedder.encode([p["question"] for p in pairs])

    def half(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f, q, u = facts[start::2], questions[start::2], unrelated[start::2]
        scores = q @ f.T
        positives = np.diag(scores)
        negatives = np.concatenate([scores[~np.eye(len(f), dtype=bool)], (u @ f.T).ravel()])
        return positives, negatives, u @ f.T

    tune, held_out = half(0), half(1)
    grid = np.round(np.arange(0.20, 0.60, 0.025), 3)
    chosen = next(t for t in grid if (tune[1] >= t).mean() <= MAX_FALSE_HITS)
    print(f"(1) relevance threshold, {len(pairs)} fact/question pairs, {len(unrelated)} unrelated")
    print(
        "    threshold | tune: found, false hits | held out: found, false hits, "
        "unrelated messages recalling anything"
    )
    for t in grid:
        mark = "  <- chosen" if t == chosen else ""
        print(
            f"    {t:9.3f} | {(tune[0] >= t).mean():5.0%} {(tune[1] >= t).mean():6.1%} | "
            f"{(held_out[0] >= t).mean():5.0%} {(held_out[1] >= t).mean():6.1%} "
            f"{(held_out[2] >= t).any(axis=1).mean():6.0%}{mark}"
        )
    top1 = (questions @ facts.T).argmax(axis=1) == np.arange(len(pairs))
    print(f"    each question's own fact is the most alike of all {len(pairs)}: {top1.mean():.0%}")
    return float(chosen)


def fill(store: HistoryStore, fact_vector: np.ndarray, channel: str, count: int) -> int:
    """`count` user turns in one channel with vectors (random but for one real fact)."""
    rng = np.random.default_rng(0)
    rows = [
        {"channel": channel, "role": "user", "author": "ann", "content": f"turn {i}: small talk"}
        for i in range(count - 1)
    ]
    rows.insert(count // 3, {"channel": channel, "role": "user", "author": "ann", "content": FACT})
    with store.engine.begin() as connection:
        connection.execute(insert(TurnRow), rows)
    ids = [t.id for t in asyncio.run(store.recent(channel, limit=count))][::-1]
    vectors = rng.standard_normal((count, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[count // 3] = fact_vector
    memory = MemoryStore(store.engine)
    for start in range(0, count, 5000):
        batch = range(start, min(count, start + 5000))
        memory.put_vectors([(ids[i], channel, vectors[i]) for i in batch])
    return ids[-1]


async def latency(folder: Path, embedder: Embedder, threshold: float, repeats: int = 60) -> None:
    url = f"sqlite:///{folder / 'memory.db'}"
    store = HistoryStore(url)
    started = time.perf_counter()
    fact_vector = (await embedder.run(embedder.encode, [FACT]))[0]
    await asyncio.to_thread(fill, store, fact_vector, "test:big", STORED)
    store.close()
    print(f"(2) {STORED} turns with vectors stored in {time.perf_counter() - started:.0f} s")
    # The same short reply for every prompt: an echo would stream the recalled lines back,
    # and the "on" messages would seem slower for the reply's length, not the recall.
    process, server = spawn_echo_server(echo=False)
    config = MemoryConfig(min_similarity=threshold)
    on = fake_brain(server, url, memory_config=config, embedder=embedder)
    off = fake_brain(server, url)
    assert on.memory is not None
    started = time.perf_counter()
    await on.memory.settle()  # nothing to catch up: every turn has its vector
    await on.memory.recall("test:big", "hello", 10**9)
    print(
        f"    first recall after a start (reads the vectors): {time.perf_counter() - started:.2f} s"
    )
    times: dict[str, list[float]] = {"on": [], "off": []}
    questions = ["What is my sister called?", "Where does Alba live?", "Any plans for June?"]
    for i in range(repeats):
        for name, brain in (("on", on), ("off", off)):
            text = f"{questions[i % 3]} ({i})"
            message = Inbound("test", "big", "u1", "ann", text)
            begun = time.perf_counter()
            await brain.handle(message, RecordingOutbox())
            times[name].append(time.perf_counter() - begun)
            await on.memory.settle()  # indexing the new turn is background work: not timed
    recall = []
    for i in range(repeats):
        begun = time.perf_counter()
        found = await on.memory.recall("test:big", f"{questions[i % 3]} ({i})", 10**9)
        recall.append(time.perf_counter() - begun)
    on_ms, off_ms = (statistics.median(times[k]) * 1000 for k in ("on", "off"))
    print(
        f"    a message, median of {repeats}: memory off {off_ms:.1f} ms, on {on_ms:.1f} ms: "
        f"recall adds {on_ms - off_ms:.1f} ms ({on_ms / off_ms:.2f}x)"
    )
    print(
        f"    Memory.recall alone: median {statistics.median(recall) * 1000:.1f} ms, "
        f"worst {max(recall) * 1000:.1f} ms; it found: "
        f"{[t.content[:30] for t, _ in found.turns]}"
    )
    await close_brain(on)
    await close_brain(off)
    process.kill()


async def indexing(folder: Path, embedder: Embedder, rate: int = 50, seconds: int = 20) -> None:
    process, server = spawn_echo_server()
    brain: Brain = fake_brain(
        server, f"sqlite:///{folder / 'rate.db'}", memory_config=MemoryConfig(), embedder=embedder
    )
    memory = brain.memory
    assert memory is not None
    await memory.settle()
    backlog = 0
    async with LoopLag() as lag:
        begun = time.perf_counter()
        for i in range(rate * seconds):
            channel = f"test:c{i % 10}"
            await brain.history.add(channel, "user", f"message {i}: plans for the week", "ann")
            backlog = max(backlog, len(memory._pending))
            await asyncio.sleep(max(0.0, begun + (i + 1) / rate - time.perf_counter()))
        sent = time.perf_counter() - begun
        await memory.settle()
        drained = time.perf_counter() - begun - sent
    counts = [await memory.status(f"test:c{c}") for c in range(10)]
    print(
        f"(3) {rate * seconds} user turns in {sent:.1f} s ({rate * seconds / sent:.0f}/s): "
        f"all indexed {drained * 1000:.0f} ms after the last ({sum(n for _, n in counts)} "
        f"searchable), most waiting at once {backlog}; event-loop lag worst "
        f"{lag.worst_s * 1000:.1f} ms, over 50 ms {lag.over(0.05)} times "
        f"in {len(lag.lags_s)} probes"
    )
    await close_brain(brain)
    process.kill()


async def main() -> None:
    folder = Path(tempfile.mkdtemp())
    model = bundled_embedding_model()
    assert model is not None
    embedder = Embedder(model)
    await embedder.load()
    parts = sys.argv[1:] or ["options", "threshold", "indexing", "latency"]
    if "options" in parts:
        await embedder.run(search_options)
    threshold = MemoryConfig().min_similarity
    if "threshold" in parts:  # torch in the embedder's thread only (see brain.vectors)
        threshold = await embedder.run(threshold_table, embedder)
    if "indexing" in parts:
        await indexing(folder, embedder)
    if "latency" in parts:
        await latency(folder, embedder, threshold)


if __name__ == "__main__":
    asyncio.run(main())
