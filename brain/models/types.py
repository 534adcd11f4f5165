"""Small value types shared by the model client and the per-server protocol modules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True)
class ModelInfo:
    """A model as its server describes it; `source` says where the context size came from."""

    context_window: int
    source: str
    vision: bool | None = None  # None: the server does not say
    trained_context: int | None = None  # the model's own maximum, where it differs
    slots: int | None = None  # requests the server decodes at once, each with its own cache


class StreamPiece(NamedTuple):
    """One streamed event, whatever the protocol: visible text, reasoning, end, usage."""

    content: str | None
    reasoning: str | None
    finish_reason: str | None  # set on the last piece
    usage: dict[str, Any] | None  # {"prompt_tokens", "completion_tokens"} where sent
