"""Token usage: what each model call cost, and the tracker of tokens, time and tokens/s per
channel, model and stage (for /stats and metrics; `brain.telemetry` exports them).

Model calls do not know which channel they serve; the brain sets `current_channel`
(a context variable, inherited by tasks it starts) and the tracker files each usage
record under it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from brain.bounded import BoundedDict
from brain.models.tokens import estimate_tokens

TRACKED_CHANNELS = 10_000  # channels whose per-stage stats are kept (most recently active)


@dataclass(frozen=True)
class Usage:
    """What one model call cost, for the token tracker."""

    endpoint: str
    model: str
    stage: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    first_token_s: float | None = None
    cached_tokens: int | None = None  # prompt tokens the server took from its cache, if it says

    @property
    def processed_tokens(self) -> int:
        """Prompt tokens the server actually read (all of them, unless it says it cached some)."""
        return self.prompt_tokens - (self.cached_tokens or 0)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


UsageSink = Callable[[Usage], None]


def token_counts(
    usage: Any, pieces: int, messages: list[dict[str, Any]], prompt_tokens: int | None = None
) -> tuple[int, int]:
    """(prompt, completion) tokens of a call: as the server reported them (an OpenAI usage
    object, or a dict from a raw stream), else estimated: our own prompt count (or an
    estimate of the messages), and one token per streamed piece."""
    if isinstance(usage, dict):
        return usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    if usage is not None:
        return usage.prompt_tokens or 0, usage.completion_tokens or 0
    prompt = prompt_tokens or sum(estimate_tokens(_text_of(m)) for m in messages)
    return prompt, pieces


def usage_record(
    endpoint: str,
    model: str,
    stage: str,
    usage: Any,
    seconds: float,
    *,
    pieces: int = 0,
    messages: list[dict[str, Any]],
    prompt_tokens: int | None = None,
    first_token_s: float | None = None,
) -> Usage:
    """What one call cost, from the server's usage where it sent one (`token_counts`,
    `cached_tokens`)."""
    prompt, completion = token_counts(usage, pieces, messages, prompt_tokens)
    return Usage(
        endpoint,
        model,
        stage,
        prompt,
        completion,
        seconds,
        first_token_s,
        cached_tokens=cached_tokens(usage),
    )


def cached_tokens(usage: Any) -> int | None:
    """Prompt tokens served from the server's prompt cache, where it reports them (OpenAI's
    `prompt_tokens_details.cached_tokens`: llama-server, vLLM, OpenAI itself)."""
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return cached if isinstance(cached, int) else None


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content if isinstance(part, dict))


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
    """Collects `Usage` records from every model client.

    Per channel for /stats (the most recently active channels only), and per model in
    running totals that never forget (for metrics): both stay small however many
    channels the bot serves.
    """

    def __init__(self, max_channels: int = TRACKED_CHANNELS) -> None:
        self._stats: BoundedDict[str, dict[tuple[str, str], StageStats]] = BoundedDict(max_channels)
        self._totals: dict[str, StageStats] = {}

    @property
    def channels(self) -> int:
        """How many channels have stats kept."""
        return len(self._stats)

    def record(self, usage: Usage) -> None:
        key = (usage.model, _stage_kind(usage.stage))
        stages = self._stats.get_or_create(current_channel.get(), dict)
        for stats in (
            stages.setdefault(key, StageStats(*key)),
            self._totals.setdefault(usage.model, StageStats(usage.model, "all")),
        ):
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
        """Totals per model over all channels ever served (for metrics)."""
        return dict(self._totals)

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
        f"{u.stage} ({u.model}): {u.prompt_tokens} → {u.completion_tokens} tokens"
        + (f" ({u.cached_tokens} cached)" if u.cached_tokens else "")
        + f", {u.seconds:.2f} s, {u.tokens_per_s:.1f} tok/s"
        for u in usages
    )


def _stage_kind(stage: str) -> str:
    """'think r2 · logic' and 'think r3 · logic' are one stage in the totals: 'think · logic'."""
    head, sep, tail = stage.partition(" · ")
    if sep and head.startswith(("think r", "vote r")):
        return f"{head.split(' ')[0]} · {tail}"
    return stage
