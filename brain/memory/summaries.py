"""Each channel's rolling summary: kept, rewritten in the background, dropped when outdated.

The summary covers the turns that fell out of the window, up to `Summary.covered_until`. It is
rewritten after a reply once `summary_every` more turns have left the window (by
`brain.memory.summary.Summarizer`, never on a reply's path), and dropped when a turn it was
built from is edited or deleted: the next one is written from what is stored then, so it
never keeps what its author took back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from brain.bounded import BoundedDict
from brain.memory.store import MemoryStore, Summary
from brain.memory.summary import Summarizer

log = logging.getLogger(__name__)

SUMMARIES_AT_ONCE = 8  # channels whose summary is being rewritten at one time
CHANNELS = 4096  # channels whose summary is kept in process


class RollingSummaries:
    """Reads, rewrites and drops the channels' summaries (`MemoryStore` keeps them)."""

    def __init__(self, store: MemoryStore, summarizer: Summarizer | None, every: int) -> None:
        self.store = store
        self.summarizer = summarizer
        self.every = every
        self._summaries: BoundedDict[str, Summary | None] = BoundedDict(CHANNELS)
        self._writing: dict[str, asyncio.Task[None]] = {}
        # channel → (summary's last turn, window start) last found with too few turns between:
        # the window start moves only when the history is cut back, so most replies skip the read
        self._not_due: BoundedDict[str, tuple[int, int]] = BoundedDict(CHANNELS)

    async def get(self, channel: str) -> Summary | None:
        if channel in self._summaries:
            return self._summaries.touch(channel)
        summary = await asyncio.to_thread(self.store.summary, channel)
        self._summaries[channel] = summary
        return summary

    def after_reply(self, channel: str, window_start: int | None) -> None:
        """A reply was stored: rewrite the summary in the background if enough turns fell
        out of the window (`window_start`: the oldest turn the prompts still hold)."""
        if self.summarizer is None or window_start is None or channel in self._writing:
            return
        if len(self._writing) >= SUMMARIES_AT_ONCE:
            return  # the next reply in this channel tries again
        task = asyncio.get_running_loop().create_task(self._write(channel, window_start))
        self._writing[channel] = task
        task.add_done_callback(lambda done: self._ended(channel, done))

    async def written(self) -> None:
        """Wait for the summaries being written now (tests)."""
        await asyncio.gather(*self._writing.values(), return_exceptions=True)

    async def drop_if(self, channel: str, outdated: Callable[[Summary], bool]) -> bool:
        """Drop the channel's summary where `outdated` says so (a turn it was built from
        changed, or it mentions what /forget removed); returns whether it went."""
        self.stop(channel)  # one being written may be reading that turn right now
        self._not_due.pop(channel, None)
        summary = await self.get(channel)
        if summary is None or not outdated(summary):
            return False
        await asyncio.to_thread(self.store.drop_summary, channel)
        self._summaries[channel] = None
        return True

    def forget_channel(self, channel: str) -> None:
        """/reset deleted the channel's summary (in the history's transaction)."""
        self.stop(channel)
        self._summaries[channel] = None
        self._not_due.pop(channel, None)

    def stop(self, channel: str) -> None:
        task = self._writing.pop(channel, None)
        if task is not None:
            task.cancel()

    async def aclose(self) -> None:
        tasks = [*self._writing.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _ended(self, channel: str, task: asyncio.Task[None]) -> None:
        if self._writing.get(channel) is task:  # not a newer one started after a cancel
            del self._writing[channel]

    async def _write(self, channel: str, window_start: int) -> None:
        assert self.summarizer is not None
        try:
            current = await self.get(channel)
            after = current.covered_until if current else 0
            if self._not_due.get(channel) == (after, window_start):
                return  # no turn can have joined that range since it was counted
            turns = await asyncio.to_thread(
                self.store.turns_between, channel, after, window_start, self.every * 4
            )
            if len(turns) < self.every:
                self._not_due[channel] = (after, window_start)
                return
            text, covered = await self.summarizer.write(current.text if current else "", turns)
            if text:
                await asyncio.to_thread(self.store.put_summary, channel, text, covered)
                self._summaries[channel] = Summary(text, covered)
                log.info("%s: memory summary rewritten (%d turns read)", channel, len(turns))
        except asyncio.CancelledError:
            raise
        except Exception:  # a background task's boundary: logged, the chat goes on
            log.exception("%s: the memory summary could not be written", channel)
