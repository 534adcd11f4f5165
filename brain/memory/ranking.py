"""Which old turns a message recalls: dense and lexical scores fused, corrections first.

Runs in the embedder's thread (like every torch call, `brain.memory.vectors`), on the
channel's vectors: one matrix-vector product gives every turn's cosine similarity to the
message, the full-text search's few hits add their weighted score (`lexical_weight`), and
the turns whose sum clears `floor` are recalled, best first. Both the weight and the floor
are chosen on the tuning half of the evaluation set (bench/bench_memory.py).

A turn that is recalled may have been corrected later ("actually it moved to Thursday"):
such a message says little on its own and scores low against the question, but it is much
like the turn it corrects. So the best recalled turn brings the newer turns most like it
(`correction_similarity`), ranked just before it: the model sees both, dated, newest
first in rank, and the prompt shows them in the order they were said.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CORRECTIONS_PER_TURN = 2  # newer turns much like a recalled one that it brings along
EXCLUDED = -2.0  # below any cosine similarity


@dataclass(frozen=True)
class Ranking:
    """How one message's old turns are scored and chosen."""

    most: int  # turns returned at most
    floor: float  # fused score a turn needs
    lexical_weight: float
    correction_similarity: float  # how alike a newer turn must be to count as a correction
    # The best hits whose corrections are looked for: the best one. Looking behind the next
    # two too found no more on the evaluation set (bench/bench_memory.py), and each costs a
    # pass over the vectors.
    corrected: int = 1


def rank(
    ids: torch.Tensor,
    matrix: torch.Tensor,
    query: np.ndarray,
    lexical: dict[int, float],
    before: int,
    ranking: Ranking,
) -> list[tuple[int, float]]:
    """(turn id, fused score) of the turns older than `before` to recall, best first
    (blocking: the embedder thread's work). `ids` are ascending (`ChannelVectors`)."""
    if not len(ids):
        return []
    with torch.inference_mode():
        scores = torch.mv(matrix, torch.from_numpy(query).to(matrix.dtype)).float()
        cut = int(torch.searchsorted(ids, before))
        scores[cut:] = EXCLUDED  # the newer turns are in the prompt already
        if lexical:
            found = torch.isin(ids, torch.tensor(list(lexical), dtype=torch.int64))
            positions = found.nonzero().flatten()
            bonus = [lexical[int(ids[p])] for p in positions.tolist()]
            scores[positions] += ranking.lexical_weight * torch.tensor(bonus)
        values, top = torch.topk(scores, min(ranking.most, len(ids)))
        hits = [(p, v) for p, v in zip(top.tolist(), values.tolist(), strict=True)]
        hits = [(p, v) for p, v in hits if v >= ranking.floor]
        if not hits:
            return []
        chosen = _with_corrections(ids[:cut], matrix[:cut], hits, ranking)
    return [(int(ids[p]), v) for p, v in chosen[: ranking.most]]


def _with_corrections(
    ids: torch.Tensor, matrix: torch.Tensor, hits: list[tuple[int, float]], ranking: Ranking
) -> list[tuple[int, float]]:
    """`hits` (position, score), the best `corrected` each preceded by the newer turns most
    like it: one more pass over the vectors said after it (at most 2.6 ms at 100 000 in
    float16), none when nothing is recalled or `correction_similarity` is above 1 (never)."""
    if ranking.correction_similarity > 1:
        return hits
    chosen: list[tuple[int, float]] = []
    taken: set[int] = set()
    for index, (position, score) in enumerate(hits):
        if index < ranking.corrected and position + 1 < len(ids):
            alike = torch.mv(matrix[position + 1 :], matrix[position]).float()  # the newer
            values, rows = torch.topk(alike, min(CORRECTIONS_PER_TURN, len(alike)))
            later = [
                position + 1 + r
                for r, v in zip(rows.tolist(), values.tolist(), strict=True)
                if v >= ranking.correction_similarity and position + 1 + r not in taken
            ]
            for row in sorted(later, key=lambda r: -int(ids[r])):  # the newest first
                chosen.append((row, score))
                taken.add(row)
        if position not in taken:
            chosen.append((position, score))
            taken.add(position)
    return chosen
