"""Token tracker: tokens, time and tokens/s per channel, model and stage.

Model calls do not know which channel they serve; the brain sets `current_channel`
(a context variable, inherited by tasks it starts) and the tracker files each usage
record under it.
"""

from __future__ import annotations

from collections import defaultdict
from contextvars import ContextVar
from dataclasses import dataclass

from brain.llm import Usage

current_channel: ContextVar[str] = ContextVar("current_channel", default="")
# The usage records of the message being answered (for debug mode), if someone collects them.
current_usages: ContextVar[list[Usage] | None] = ContextVar("current_usages", default=None)


@dataclass
class StageStats:
    """Totals for one (model, stage) pair."""

    model: str
    stage: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


class TokenTracker:
    """Collects `Usage` records from every model client."""

    def __init__(self) -> None:
        self._stats: defaultdict[str, dict[tuple[str, str], StageStats]] = defaultdict(dict)

    def record(self, usage: Usage) -> None:
        channel = current_channel.get()
        key = (usage.model, _stage_kind(usage.stage))
        stats = self._stats[channel].setdefault(key, StageStats(*key))
        stats.calls += 1
        stats.prompt_tokens += usage.prompt_tokens
        stats.completion_tokens += usage.completion_tokens
        stats.seconds += usage.seconds
        collected = current_usages.get()
        if collected is not None:
            collected.append(usage)

    def channel_stats(self, channel: str) -> list[StageStats]:
        return sorted(self._stats.get(channel, {}).values(), key=lambda s: (s.model, s.stage))

    def per_model(self) -> dict[str, StageStats]:
        """Totals per model over all channels (for metrics)."""
        totals: dict[str, StageStats] = {}
        for stages in self._stats.values():
            for s in stages.values():
                t = totals.setdefault(s.model, StageStats(s.model, "all"))
                t.calls += s.calls
                t.prompt_tokens += s.prompt_tokens
                t.completion_tokens += s.completion_tokens
                t.seconds += s.seconds
        return totals

    def format_channel(self, channel: str) -> str:
        rows = self.channel_stats(channel)
        if not rows:
            return "No model calls in this channel yet."
        lines = ["model · stage: calls, prompt → completion tokens, time, tokens/s"]
        for s in rows:
            lines.append(
                f"{s.model} · {s.stage}: {s.calls}, {s.prompt_tokens} → {s.completion_tokens}, "
                f"{s.seconds:.1f} s, {s.tokens_per_s:.1f} tok/s"
            )
        return "\n".join(lines)


def format_usages(usages: list[Usage]) -> str:
    """One line per call, for debug mode."""
    return "\n".join(
        f"{u.stage} ({u.model}): {u.prompt_tokens} → {u.completion_tokens} tokens, "
        f"{u.seconds:.2f} s, {u.tokens_per_s:.1f} tok/s"
        for u in usages
    )


def _stage_kind(stage: str) -> str:
    """'think r2 · logic' and 'think r3 · logic' are one stage in the totals: 'think · logic'."""
    head, sep, tail = stage.partition(" · ")
    if sep and head.startswith(("think r", "vote r")):
        return f"{head.split(' ')[0]} · {tail}"
    return stage
