"""Keeping a reasoning model's thoughts out of its answer.

Reasoning arrives two ways: inline between `<think>` and `</think>` in the content
(Qwen3, DeepSeek-R1 through plain templates), or in a separate `reasoning_content` /
`reasoning` field (llama.cpp's and vLLM's reasoning parsers, Ollama). Either way it
is never shown inline, never stored in history and never counted against the
context: the client separates it, and the outbox shows it folded away.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def split_reasoning(text: str) -> tuple[str, str]:
    """(answer, reasoning) of a whole text.

    A lone `</think>` with no opening tag means the chat template opened the block itself,
    so everything before it is reasoning.
    """
    splitter = ReasoningSplitter()
    answer = splitter.feed(text) + splitter.flush()
    reasoning = splitter.reasoning
    if CLOSE in answer and OPEN not in text:
        before, _, answer = answer.partition(CLOSE)
        reasoning = (reasoning + before).strip()
    return answer.strip() if reasoning else answer, reasoning


class ReasoningSplitter:
    """Separates `<think>...</think>` from streamed content, tags split across pieces included."""

    def __init__(self) -> None:
        self._thinking = False
        self._pending = ""  # a tail that may be the start of a tag
        self._reasoning: list[str] = []

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning).strip()

    def add_reasoning(self, text: str) -> None:
        """Reasoning that came in its own field."""
        self._reasoning.append(text)

    def feed(self, piece: str) -> str:
        """The visible part of this piece (possibly empty while a tag is incomplete)."""
        text, self._pending = self._pending + piece, ""
        visible: list[str] = []
        while text:
            tag = CLOSE if self._thinking else OPEN
            at = text.find(tag)
            if at >= 0:
                (self._reasoning if self._thinking else visible).append(text[:at])
                self._thinking = not self._thinking
                text = text[at + len(tag):]
                continue
            keep = _partial_tag_tail(text, tag)
            body, self._pending = text[: len(text) - keep], text[len(text) - keep:]
            (self._reasoning if self._thinking else visible).append(body)
            break
        return "".join(visible)

    def flush(self) -> str:
        """The end of the stream: a held-back tail that never became a tag is text after all."""
        tail, self._pending = self._pending, ""
        if self._thinking:
            self._reasoning.append(tail)
            return ""
        return tail


def _partial_tag_tail(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
