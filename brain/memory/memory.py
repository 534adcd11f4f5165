"""Memory beyond the context window: what a channel told the bot, recalled in that channel.

Every user turn is embedded in the background (`brain.memory.indexing`, never awaited by a
reply) and its vector stored beside the history (`brain.memory.store`); the database
indexes its words itself (`brain.memory.lexical`). For each new message the turns
that already left the window are searched both ways, the scores fused
(`brain.memory.ranking`), and the few that clear a measured floor
(`MemoryConfig.min_similarity`) come back into the prompt with their time, under their
own token budget, after the newest turns have taken their place (`fit_recollection`). A
rolling summary of the turns that fell out of the window is rewritten in the background
(`brain.memory.summaries`).

The boundary is the channel key ("platform:channel"; a thread is a channel of its own):
the search reads one channel's vectors, so a DM's memory never reaches a room and one
room's never another. The one exception is opt-in and goes from DM to DM only: with
`follow_user`, a user's other direct conversations are searched too
(`brain.memory.following`). Only user turns are embedded: the bot's own replies are
generated text, and recalling them would feed its old mistakes back to it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import replace

from brain.characters.recall import OldTurn, Recollection
from brain.config import CharacterConfig, MemoryConfig
from brain.history.store import HistoryStore
from brain.memory.following import DirectConversations
from brain.memory.indexing import Indexer, SearchableVectors
from brain.memory.lexical import LexicalSearch
from brain.memory.ranking import Ranking, rank
from brain.memory.store import MemoryStore, Summary
from brain.memory.summaries import RollingSummaries
from brain.memory.summary import Summarizer
from brain.models.client import ModelClient
from brain.models.embedder import Embedder

log = logging.getLogger(__name__)

CANDIDATES = 4  # turns searched for per recall slot: each character's window drops its own
NO_LIMIT = 2**62  # a turn id above any stored one: recall before it searches every turn


class Memory:
    """Recalls what each channel was told, and keeps its rolling summary; its vectors are
    made and held by `brain.memory.indexing`."""

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
        self.vectors = SearchableVectors(store, embedder, config.cache_vectors)
        self.indexer = Indexer(self.vectors)
        self.summaries = RollingSummaries(store, summarizer, config.summary_every)

    def start(self) -> None:
        """Index what is waiting, and at the first start what was stored while away."""
        self.indexer.start()

    async def settle(self) -> None:
        """Wait until every turn noted so far is searchable (tests, benchmarks)."""
        await self.indexer.settle()

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
            self._most, config.min_similarity, config.lexical_weight, config.correction_similarity
        )
        lexical: dict[int, float] = {}
        if config.lexical_weight > 0:  # the database's full-text index, when it counts
            lexical = await asyncio.to_thread(
                self.lexical.search, channel, text, before_id, self._most
            )
        vectors = await self.vectors.channel(channel)

        def search() -> list[tuple[int, float]]:  # in the thread that also updates `vectors`
            query = self.embedder.encode_one(text)
            ids, matrix = vectors.snapshot()
            return rank(ids, matrix, query, lexical, before_id, ranking)

        return await self.embedder.run(search)

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
        if ids:
            await self.vectors.delete(channel, ids)
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
        await self.vectors.forget(by_channel)
        oldest: dict[str, int] = {}
        for turn_id, channel in [*removed, *rewritten]:
            oldest[channel] = min(turn_id, oldest.get(channel, turn_id))
        for channel, turn_id in oldest.items():
            await self.summaries.drop_if(channel, functools.partial(_covers, turn_id))

    def forget_channel(self, channel: str) -> None:
        """/reset deleted the channel's rows (in the history's transaction): drop ours."""
        self.summaries.forget_channel(channel)
        self.vectors.forget_channel(channel)

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
        await self.indexer.aclose()


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
    history.on_user_turn = memory.indexer.note
    return memory


def _covers(turn_id: int, summary: Summary) -> bool:
    """Whether `summary` was written from turn `turn_id` (or one after it)."""
    return turn_id <= summary.covered_until
