"""The memory's vectors: made in the background, kept in process for search.

`Indexer` embeds every user turn the history stores (batched reads, a few encodes per trip
to the embedder's thread, never awaited by a reply) and catches up at start on turns that
have no vector of the current encoder (stored while the memory was off, or made by another
encoder). `SearchableVectors` holds the channels' vectors that searches read, loaded when a
channel is first searched and kept in step with what is stored, added or deleted.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from brain.memory.store import MemoryStore
from brain.memory.vectors import WIDTH, ChannelVectors, VectorCache
from brain.models.embedder import Embedder

log = logging.getLogger(__name__)

BATCH = 64  # turns read from the database at once
ENCODE_SLICE = 8  # turns encoded per embedder-thread call (4-5 ms each)
RETRY_S = 5.0  # after a failed batch (the database away), wait before catching up again
MAX_PENDING = 10_000  # ids waiting; beyond, they are found again in the database instead


class SearchableVectors:
    """The channels' vectors in process (at most `limit`), in step with the database."""

    def __init__(self, store: MemoryStore, embedder: Embedder, limit: int) -> None:
        self.store = store
        self.embedder = embedder
        self._cache = VectorCache(limit)
        self._lock = asyncio.Lock()  # cache loads and vector writes, one at a time

    async def channel(self, channel: str) -> ChannelVectors:
        """The channel's vectors, read from the database if they are not held."""
        cached = self._cache.get(channel)
        if cached is not None:
            return cached
        async with self._lock:
            cached = self._cache.get(channel)
            if cached is None:
                ids, matrix = await asyncio.to_thread(self.store.channel_vectors, channel, WIDTH)
                cached = await self.embedder.run(ChannelVectors, ids, matrix)
                self._cache.put(channel, cached)
            return cached

    async def add(self, rows: list[tuple[int, str, str]], vectors: np.ndarray) -> None:
        """Store the vectors of (id, channel, text) turns, and add them where held."""
        async with self._lock:
            stored = [(row[0], row[1], v) for row, v in zip(rows, vectors, strict=True)]
            await asyncio.to_thread(self.store.put_vectors, stored)
            by_channel: dict[str, list[int]] = {}
            for index, (_, channel, _) in enumerate(rows):
                by_channel.setdefault(channel, []).append(index)
            for channel, indexes in by_channel.items():
                cached = self._cache.get(channel)
                if cached is not None:
                    ids = [rows[i][0] for i in indexes]
                    await self.embedder.run(cached.upsert, ids, vectors[indexes])
            self._cache.shrink()

    async def delete(self, channel: str, ids: list[int]) -> None:
        """Delete turns and their vectors from the database (/forget), and ours."""
        async with self._lock:
            await asyncio.to_thread(self.store.delete_turns, channel, ids)
            await self._drop(channel, ids)

    async def forget(self, by_channel: dict[str, list[int]]) -> None:
        """Turns the history deleted (their vectors with them): drop ours."""
        async with self._lock:
            for channel, ids in by_channel.items():
                await self._drop(channel, ids)

    def forget_channel(self, channel: str) -> None:
        self._cache.drop(channel)

    async def _drop(self, channel: str, ids: list[int]) -> None:
        cached = self._cache.get(channel)
        if cached is not None:
            await self.embedder.run(cached.remove, ids)


class Indexer:
    """Embeds user turns in the background, in a task that ends when nothing waits."""

    def __init__(self, vectors: SearchableVectors) -> None:
        self.vectors = vectors
        self.store = vectors.store
        self.embedder = vectors.embedder
        self.pending: list[int] = []
        self._idle = asyncio.Event()
        self._catch_up = True  # at start: turns stored while the bot was away or memory off
        self._task: asyncio.Task[None] | None = None

    def note(self, turn_id: int) -> None:
        """A user turn was stored or rewritten: embed it soon (the history store's hook)."""
        if len(self.pending) < MAX_PENDING:
            self.pending.append(turn_id)
        else:  # far behind (a database away for long): read what is unindexed from it later
            self._catch_up = True
        self.start()

    def start(self) -> None:
        """Index what is waiting, in a task that ends when nothing is (no idle task lingers).

        The first start also indexes user turns stored while the memory was not running.
        """
        if self._task is None or self._task.done():
            self._idle.clear()
            self._task = asyncio.get_running_loop().create_task(self._index_pending())

    async def settle(self) -> None:
        """Wait until every turn noted so far is searchable (tests, benchmarks)."""
        self.start()
        await self._idle.wait()

    async def aclose(self) -> None:
        """Stop (what was not indexed yet is caught up at the next start)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _index_pending(self) -> None:
        while self._catch_up or self.pending:
            try:
                await self.embedder.load()  # at start: in the background, not before the chat
                if self._catch_up:
                    await self._index_unindexed()
                    self._catch_up = False
                ids, self.pending = self.pending[:BATCH], self.pending[BATCH:]
                if ids:
                    await self._index(await asyncio.to_thread(self.store.user_turns, ids))
            except asyncio.CancelledError:
                raise
            except Exception:  # the indexing worker's boundary
                # Never silently dead: log, wait, then find what was missed from the database.
                log.exception("memory: indexing failed; catching up in %.0f s", RETRY_S)
                self._catch_up = True
                self.pending.clear()  # the catch-up finds them in the database
                await asyncio.sleep(RETRY_S)
        self._idle.set()

    async def _index_unindexed(self) -> None:
        if adopted := await asyncio.to_thread(self.store.adopt_unlabelled_vectors):
            log.info("memory: %d vectors from before encoders were recorded kept", adopted)
        after, indexed = 0, 0
        while rows := await asyncio.to_thread(self.store.unindexed_user_turns, after, BATCH):
            await self._index(rows)
            after, indexed = rows[-1][0], indexed + len(rows)
        if indexed:
            log.info("memory: indexed %d stored turns that had no vector yet", indexed)

    async def _index(self, rows: list[tuple[int, str, str]]) -> None:
        if not rows:
            return
        texts = [row[2] for row in rows]
        vectors = np.concatenate(  # a few at a time: a recall waits for at most one slice
            [
                await self.embedder.run(self.embedder.encode, texts[i : i + ENCODE_SLICE])
                for i in range(0, len(texts), ENCODE_SLICE)
            ]
        )
        await self.vectors.add(rows, vectors)
