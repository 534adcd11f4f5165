"""Token counts: the server's own where it has a tokenizer, a safe estimate otherwise.

Counts are cached per (model, text), because every prompt re-counts the same history
turns. The cache is bounded by the characters it holds, not only by its entries: a
few thousand long turns would otherwise keep hundreds of megabytes of text alive.
"""

from __future__ import annotations

from collections import OrderedDict

ESTIMATE_BYTES_PER_TOKEN = 3  # conservative: English averages about 4 bytes a token
TOKEN_CACHE_CHARS = 4_000_000  # characters of cached texts, all models together


def estimate_tokens(text: str) -> int:
    """A safe over-estimate of a text's tokens when the server has no tokenizer."""
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    return -(-size // ESTIMATE_BYTES_PER_TOKEN)  # rounded up


class TokenCache:
    """Least recently used token counts, within a budget of cached characters."""

    def __init__(self, max_chars: int = TOKEN_CACHE_CHARS) -> None:
        self.max_chars = max_chars
        self.chars = 0
        self._counts: OrderedDict[tuple[str, str], int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._counts)

    def get(self, model: str, text: str) -> int | None:
        key = (model, text)
        count = self._counts.get(key)
        if count is not None:
            self._counts.move_to_end(key)
        return count

    def put(self, model: str, text: str, count: int) -> None:
        key = (model, text)
        if key in self._counts or len(text) > self.max_chars:
            return
        self._counts[key] = count
        self.chars += len(text)
        while self.chars > self.max_chars:
            (_, old), _ = self._counts.popitem(last=False)
            self.chars -= len(old)
