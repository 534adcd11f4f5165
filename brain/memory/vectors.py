"""Each channel's memory vectors in process, searched exactly.

Exact search is one matrix-vector product over the channel's vectors, done by torch in the
embedder's thread right after the message is encoded (numpy's BLAS threads and torch's
OpenMP threads fight over 2 cores: 8.5 ms instead of 5 for the same product). Building an
HNSW index of 100 000 vectors took 22-28 s at start (hnswlib, usearch), exact search of
them takes 2.6 ms in float16, 8 ms in bfloat16 and 16 ms in float32 with torch 2.13 on this
machine (bench/bench_memory.py; bfloat16 was the fastest with an earlier torch). So
`search_dtype` measures which is fastest here, once. float16 is also the more exact of the
two halves for unit vectors (largest error 1e-4 against float64, bfloat16 7e-4).

The cache holds at most `limit` vectors over all channels; the channels used longest ago
are dropped and read again from the database when next needed.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict

import numpy as np
import torch

WIDTH = 384  # all-MiniLM-L6-v2


@functools.cache
def search_dtype() -> torch.dtype:
    """The fastest of float32, bfloat16 and float16 for a matrix-vector product here."""
    sample = torch.randn(50_000, WIDTH)
    timings = {}
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        matrix, query = sample.to(dtype), sample[0].to(dtype)
        best = float("inf")
        with torch.inference_mode():
            for _ in range(3):
                started = time.perf_counter()
                torch.mv(matrix, query)
                best = min(best, time.perf_counter() - started)
        timings[dtype] = best
    return min(timings, key=timings.__getitem__)


class ChannelVectors:
    """One channel's turn ids and vectors, in a buffer that grows by doubling, always in the
    order of the ids (the order turns were said): the turns newer than one are the rows
    after it, which is all a search for its corrections reads (`brain.memory.ranking`).

    Every method runs in the embedder's thread (`Embedder.run`), like the searches: torch
    used from a second thread starts a second set of OpenMP threads, and the two sets slowed
    each other from 4.4 to 9.5 ms per encode. Appends write past the end, and removals and
    the rare re-ordering (a rewritten turn, one caught up late) build new tensors, so a
    `snapshot` taken before stays valid.
    """

    def __init__(self, ids: np.ndarray, matrix: np.ndarray) -> None:
        self._ids = torch.from_numpy(ids.astype(np.int64))
        self._matrix = torch.from_numpy(matrix).to(search_dtype())
        self.size = len(ids)

    def snapshot(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._ids[: self.size], self._matrix[: self.size]

    def upsert(self, ids: list[int], vectors: np.ndarray) -> None:
        """Add vectors; a turn that had one (its text was rewritten) gets the new one."""
        if self.size and min(ids) <= int(self._ids[: self.size].max()):
            self.remove(ids)  # not for new turns: their ids are larger than any here
        needed = self.size + len(ids)
        if needed > len(self._ids):
            capacity = max(needed, 2 * len(self._ids), 64)
            grown_ids = torch.empty(capacity, dtype=torch.int64)
            grown = torch.empty((capacity, WIDTH), dtype=self._matrix.dtype)
            grown_ids[: self.size] = self._ids[: self.size]
            grown[: self.size] = self._matrix[: self.size]
            self._ids, self._matrix = grown_ids, grown
        self._ids[self.size : needed] = torch.tensor(ids, dtype=torch.int64)
        self._matrix[self.size : needed] = torch.from_numpy(vectors).to(self._matrix.dtype)
        start = max(self.size - 1, 0)
        self.size = needed
        added = self._ids[start:needed]
        if not bool((added[1:] > added[:-1]).all()):  # out of order: sorted into new tensors
            order = torch.argsort(self._ids[:needed])
            self._ids, self._matrix = self._ids[:needed][order], self._matrix[:needed][order]

    def remove(self, ids: list[int]) -> None:
        current_ids, current = self.snapshot()
        keep = ~torch.isin(current_ids, torch.tensor(ids, dtype=torch.int64))
        if not bool(keep.all()):
            self._ids, self._matrix = current_ids[keep], current[keep]
            self.size = len(self._ids)


class VectorCache:
    """Channels' vectors, at most `limit` in all; least recently used channels go first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._channels: OrderedDict[str, ChannelVectors] = OrderedDict()

    def get(self, channel: str) -> ChannelVectors | None:
        vectors = self._channels.get(channel)
        if vectors is not None:
            self._channels.move_to_end(channel)
        return vectors

    def put(self, channel: str, vectors: ChannelVectors) -> None:
        self._channels[channel] = vectors
        self._channels.move_to_end(channel)
        self.shrink()

    def drop(self, channel: str) -> None:
        self._channels.pop(channel, None)

    def shrink(self) -> None:
        """Drop the least recently used channels while over the limit (never the newest)."""
        total = sum(v.size for v in self._channels.values())
        while total > self.limit and len(self._channels) > 1:
            _, dropped = self._channels.popitem(last=False)
            total -= dropped.size
