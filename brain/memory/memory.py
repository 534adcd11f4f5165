"""Memory beyond the context window: what a channel told the bot, recalled in that channel.

Every user turn is embedded in the background (batched, in the embedder's thread, never
awaited by a reply) and its vector stored beside the history (`brain.memory.store`); the
database indexes its words itself (`brain.memory.lexical`). For each new message the turns
that already left the window are searched both ways, the scores fused
(`brain.memory.ranking`), and the few that clear a measured floor
(`MemoryConfig.min_similarity`) come back into the prompt with their time, under their
own token budget, after the newest turns have taken their place (`fit_recollection`). A
rolling summary of the turns that fell out of the window is rewritten in the background
(`brain.memory.summaries`).

The boundary is the channel key ("platform:channel"; a thread is a channel of its own):
the search only ever reads one channel's vectors, so a DM's memory never reaches a room
and one room's never another. Only user turns are embedded: the bot's own replies are
generated text, and recalling them would feed its old mistakes back to it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from brain.characters.recall import OldTurn, Recollection
from brain.config import CharacterConfig, MemoryConfig
from brain.history.store import HistoryStore
from brain.memory.following import DirectConversations
from brain.memory.lexical import LexicalSearch
from brain.memory.ranking import Ranking, rank
from brain.memory.store import MemoryStore, Summary
from brain.memory.summaries import RollingSummaries
from brain.memory.summary import Summarizer
from brain.memory.vectors import WIDTH, ChannelVectors, VectorCache
from brain.models.client import ModelClient
from brain.models.embedder import Embedder

log = logging.getLogger(__name__)

BATCH = 64  # turns read from the database at once
ENCODE_SLICE = 8  # turns encoded per embedder-thread call (4-5 ms each)
CANDIDATES = 4  # turns searched for per recall slot: each character's window drops its own
RETRY_S = 5.0  # after a failed batch (the database away), wait before catching up again
NO_LIMIT = 2**62  # before every turn: another conversation's are all outside this window
MAX_PENDING = 10_000  # ids waiting; beyond, they are found again in the database instead


class Memory:
    """Indexes user turns, recalls them per channel, and keeps the rolling summaries."""

    def __init__(
        self,
        store: MemoryStore,
        lexical: LexicalSearch,
        following: DirectConversations,
        embedder: Embedder,
        config: MemoryConfig,
        summarizer: Summarizer | None = None,
    ) -> None:
        self.store = store
        self.lexical = lexical
        self.following = following
        self.embedder = embedder
        self.config = config
        self._cache = VectorCache(config.cache_vectors)
        self._lock = asyncio.Lock()  # cache loads and vector writes, one at a time
        self._pending: list[int] = []
        self._idle = asyncio.Event()
        self._catch_up = True  # at start: turns stored while the bot was away or memory off
        self._indexer: asyncio.Task[None] | None = None
        self.summaries = RollingSummaries(store, summarizer, config.summary_every)

    # -- indexing -------------------------------------------------------------------------

    def note(self, turn_id: int) -> None:
        """A user turn was stored or rewritten: embed it soon (the history store's hook)."""
        if len(self._pending) < MAX_PENDING:
            self._pending.append(turn_id)
        else:  # far behind (a database away for long): read what is unindexed from it later
            self._catch_up = True
        self.start()

    def start(self) -> None:
        """Index what is waiting, in a task that ends when nothing is (no idle task lingers).

        The first start also indexes user turns stored while the memory was not running.
        """
        if self._indexer is None or self._indexer.done():
            self._idle.clear()
            self._indexer = asyncio.get_running_loop().create_task(self._index_pending())

    async def settle(self) -> None:
        """Wait until every turn noted so far is searchable (tests, benchmarks)."""
        self.start()
        await self._idle.wait()

    async def _index_pending(self) -> None:
        while self._catch_up or self._pending:
            try:
                await self.embedder.load()  # at start: in the background, not before the chat
                if self._catch_up:
                    await self._index_unindexed()
                    self._catch_up = False
                ids, self._pending = self._pending[:BATCH], self._pending[BATCH:]
                if ids:
                    await self._index(await asyncio.to_thread(self.store.user_turns, ids))
            except asyncio.CancelledError:
                raise
            except Exception:  # the indexing worker's boundary
                # Never silently dead: log, wait, then find what was missed from the database.
                log.exception("memory: indexing failed; catching up in %.0f s", RETRY_S)
                self._catch_up = True
                self._pending.clear()  # the catch-up finds them in the database
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
        async with self._lock:
            await asyncio.to_thread(
                self.store.put_vectors,
                [
                    (turn_id, channel, v)
                    for (turn_id, channel, _), v in zip(rows, vectors, strict=True)
                ],
            )
            by_channel: dict[str, list[int]] = {}
            for index, (_, channel, _) in enumerate(rows):
                by_channel.setdefault(channel, []).append(index)
            for channel, indexes in by_channel.items():
                cached = self._cache.get(channel)
                if cached is not None:
                    ids = [rows[i][0] for i in indexes]
                    await self.embedder.run(cached.upsert, ids, vectors[indexes])
            self._cache.shrink()

    # -- recall ---------------------------------------------------------------------------

    async def recall(self, channel: str, text: str, before_id: int, user: str = "") -> Recollection:
        """The channel's summary and its turns before `before_id` most like `text`.

        `user`: whose direct conversation the channel is ("" for a shared room). With
        `follow_user` on, their other direct conversations are searched too (every turn
        there: none is in this prompt's window), and their turns shown as said elsewhere.
        """
        await self.embedder.load()
        channels = {channel: before_id}
        if user:
            await self.following.record(user, channel)
            if self.config.follow_user:
                channels |= dict.fromkeys(await self.following.others(user, channel), NO_LIMIT)
        hits = [
            (each, turn_id, score)
            for each, before in channels.items()
            for turn_id, score in await self._search(each, text, before)
        ]
        hits.sort(key=lambda hit: -hit[2])  # stable: a correction stays before what it corrects
        kept = hits[: self._most]
        turns: list[tuple[OldTurn, float]] = []
        for each in channels:
            if ids := [turn_id for place, turn_id, _ in kept if place == each]:
                found = await asyncio.to_thread(self.store.old_turns, each, ids)
                turns += [
                    (replace(found[turn_id], elsewhere=each != channel), score)
                    for place, turn_id, score in kept
                    if place == each and turn_id in found
                ]
        turns.sort(key=lambda pair: -pair[1])
        summary = await self.summaries.get(channel)
        return Recollection(
            summary.text if summary else "",
            tuple(turns),
            self.config.recall_turns,
            self.config.recall_tokens,
            self.config.summary_tokens,  # the summary's own share, beside the turns'
        )

    @property
    def _most(self) -> int:
        return self.config.recall_turns * CANDIDATES

    async def _search(self, channel: str, text: str, before_id: int) -> list[tuple[int, float]]:
        """(turn id, score) of the channel's turns before `before_id` to recall, best first.

        One trip to the embedder's thread: encode (once: the embedder keeps recent texts'
        vectors), then search."""
        config = self.config
        ranking = Ranking(
            self._most,
            config.min_similarity,
            config.lexical_weight,
            config.correction_similarity,
            corrected=config.recall_turns,
        )
        lexical: dict[int, float] = {}
        if config.lexical_weight > 0:  # the database's full-text index, when it counts
            lexical = await asyncio.to_thread(
                self.lexical.search, channel, text, before_id, self._most
            )
        vectors = await self._vectors(channel)

        def search() -> list[tuple[int, float]]:  # in the thread that also updates `vectors`
            query = self.embedder.encode_one(text)
            ids, matrix = vectors.snapshot()
            return rank(ids, matrix, query, lexical, before_id, ranking)

        return await self.embedder.run(search)

    async def _vectors(self, channel: str) -> ChannelVectors:
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

    # -- what /memory, /forget and /reset see ---------------------------------------------

    async def status(self, channel: str) -> tuple[str, int]:
        """(the channel's summary or "", how many of its turns are searchable)."""
        summary = await self.summaries.get(channel)
        count = await asyncio.to_thread(self.store.count, channel)
        return (summary.text if summary else ""), count

    async def forget(self, channel: str, text: str) -> tuple[int, bool]:
        """Delete the channel's turns containing `text`, and drop a summary that mentions it
        or was built from any of those turns.

        Returns (turns forgotten, whether the summary went too).
        """
        self.summaries.stop(channel)
        ids = await asyncio.to_thread(self.store.matching_turns, channel, text)
        async with self._lock:
            if ids:
                await asyncio.to_thread(self.store.delete_turns, channel, ids)
                cached = self._cache.get(channel)
                if cached is not None:
                    await self.embedder.run(cached.remove, ids)
        dropped = await self.summaries.drop_if(
            channel,
            lambda summary: (
                text.casefold() in summary.text.casefold()
                or any(turn_id <= summary.covered_until for turn_id in ids)
            ),
        )
        return len(ids), dropped

    async def forget_turns(
        self, removed: Sequence[tuple[int, str]], rewritten: Sequence[tuple[int, str]] = ()
    ) -> None:
        """(id, channel) of turns the history deleted (with their vectors) or rewrote: drop
        our copies, and a summary that was built from any of them (the next one is written
        from what is stored now). A rewritten turn is embedded again through the history."""
        by_channel: dict[str, list[int]] = {}
        for turn_id, channel in removed:
            by_channel.setdefault(channel, []).append(turn_id)
        async with self._lock:
            for channel, ids in by_channel.items():
                cached = self._cache.get(channel)
                if cached is not None:
                    await self.embedder.run(cached.remove, ids)
        oldest: dict[str, int] = {}
        for turn_id, channel in [*removed, *rewritten]:
            oldest[channel] = min(turn_id, oldest.get(channel, turn_id))
        for channel, turn_id in oldest.items():
            await self.summaries.drop_if(channel, functools.partial(_covers, turn_id))

    def forget_channel(self, channel: str) -> None:
        """/reset deleted the channel's rows (in the history's transaction): drop ours."""
        self.summaries.forget_channel(channel)
        self._cache.drop(channel)

    # -- the rolling summary ----------------------------------------------------------------

    def after_reply(self, channel: str, window_start: int | None) -> None:
        """A reply was stored: the summary may be due (see `RollingSummaries`)."""
        self.summaries.after_reply(channel, window_start)

    async def summaries_written(self) -> None:
        """Wait for the summaries being written now (tests)."""
        await self.summaries.written()

    async def aclose(self) -> None:
        """Stop indexing and summarizing (what was not indexed yet is caught up at start)."""
        await self.summaries.aclose()
        if self._indexer is not None:
            self._indexer.cancel()
            await asyncio.gather(self._indexer, return_exceptions=True)
        self._indexer = None


def open_memory(
    config: MemoryConfig | None,
    embedder: Embedder | None,
    history: HistoryStore,
    clients: dict[str, ModelClient],
    characters: dict[str, CharacterConfig],
    synthesizer: CharacterConfig,
) -> Memory | None:
    """The memory when it is on and a sentence encoder is given (None otherwise), told of
    every user turn the history stores; its summary is written by the configured character,
    by default the synthesizer."""
    if config is None or not config.enabled or embedder is None:
        return None
    writer = characters.get(config.summary_character, synthesizer)
    summarizer = Summarizer(writer, clients[writer.endpoint], config.summary_tokens)
    store = MemoryStore(history.engine, embedder.identity)
    lexical = LexicalSearch(history.engine)
    following = DirectConversations(history.engine, config.linked_accounts)
    memory = Memory(store, lexical, following, embedder, config, summarizer)
    history.on_user_turn = memory.note
    return memory


def _covers(turn_id: int, summary: Summary) -> bool:
    """Whether `summary` was written from turn `turn_id` (or one after it)."""
    return turn_id <= summary.covered_until
