"""Everything kept per channel, user or request is bounded: memory stays flat over 100 000 keys.

Issue 17 item 11. Each structure is driven through the path the bot uses, with 100 000
distinct channels or users; the memory it holds after the second 50 000 keys must be no
more than after the first 50 000 (an unbounded map would have doubled).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

from adapters.common import RateLimiter
from brain.bounded import BoundedDict
from brain.config import QueueConfig
from brain.images.queue import BATCH_SIZES_KEPT, ImageQueue
from brain.images.requests import ImageRequest
from brain.models.tokens import TokenCache
from brain.models.usage import TokenTracker, Usage, current_channel
from tests.helpers import SlowBackend

KEYS = 100_000
HALF = KEYS // 2
SLACK_BYTES = 256 * 1024  # allocator noise; one unbounded map of 50 000 keys is megabytes


def held_after_each_half(feed: Callable[[int], None]) -> tuple[int, int]:
    """Traced memory after keys 0..HALF-1 and after HALF..KEYS-1 were fed."""
    tracemalloc.start()
    try:
        for key in range(HALF):
            feed(key)
        first, _ = tracemalloc.get_traced_memory()
        for key in range(HALF, KEYS):
            feed(key)
        second, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return first, second


def test_the_token_tracker_keeps_recent_channels_and_running_totals() -> None:
    tracker = TokenTracker(max_channels=1000)

    def feed(key: int) -> None:
        current_channel.set(f"t:channel{key}")
        tracker.record(Usage("e", "model", "mom", 10, 5, 0.1))

    first, second = held_after_each_half(feed)
    assert second <= first + SLACK_BYTES
    assert tracker.channels == 1000
    totals = tracker.per_model()["model"]
    assert (totals.calls, totals.prompt_tokens) == (KEYS, 10 * KEYS)  # metrics never forget
    assert tracker.format_channel(f"t:channel{KEYS - 1}").count("\n") == 1  # recent: kept


def test_the_rate_limiter_keeps_windows_for_recent_users_only() -> None:
    limiter = RateLimiter(5, 60.0, max_keys=1000)
    first, second = held_after_each_half(lambda key: limiter.allow(f"@user{key}:example.org"))
    assert second <= first + SLACK_BYTES
    assert len(limiter) == 1000
    for _ in range(5):
        assert limiter.allow("@busy:example.org")
    assert not limiter.allow("@busy:example.org")  # the limit still holds for a recent user


def test_a_bounded_dict_drops_the_least_recently_used() -> None:
    switches: BoundedDict[str, bool] = BoundedDict(1000)
    switches["kept"] = True
    first, second = held_after_each_half(
        lambda key: (switches.__setitem__(f"c{key}", True), switches.touch("kept"))
    )
    assert second <= first + SLACK_BYTES
    assert len(switches) == 1000 and "kept" in switches and "c0" not in switches


def test_the_token_cache_is_bounded_by_the_text_it_holds() -> None:
    cache = TokenCache(max_chars=1_000_000)
    long_text = "x" * 32_000

    def feed(key: int) -> None:
        cache.put("model", f"{key}{long_text}" if key % 10 == 0 else f"turn {key}", 7)

    first, second = held_after_each_half(feed)
    assert second <= first + SLACK_BYTES
    assert cache.chars <= 1_000_000


async def test_the_image_queue_keeps_recent_batch_sizes() -> None:
    """More batches run than it keeps sizes of: it keeps the newest BATCH_SIZES_KEPT."""
    backend = SlowBackend()
    backend.release.set()  # every batch finishes at once
    queue = ImageQueue(backend, QueueConfig(batch_window_ms=0))

    async def no_progress(text: str) -> None:
        return None

    for n in range(BATCH_SIZES_KEPT + 5):
        await queue.generate(ImageRequest(f"p{n}", "", 64, 64, 1, 1.0, n), no_progress)
    assert len(backend.calls) == BATCH_SIZES_KEPT + 5
    assert list(queue.batches_run) == [1] * BATCH_SIZES_KEPT
    await queue.aclose()
