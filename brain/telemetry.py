"""Prometheus metrics of a running brain: replies, errors, tokens, image queue, GPU.

Counters and histograms are updated as messages are answered; the token totals, the
image queue and the GPU readings are read when Prometheus scrapes, so they cost
nothing between scrapes. Each brain has its own registry (several brains in one
process, as in the tests, never collide).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from brain.models.usage import TokenTracker

REPLY_BUCKETS_S = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


@dataclass
class Sources:
    """What the scrape-time collector reads; the GPU readings are refreshed off the loop."""

    tracker: TokenTracker
    image_queue_length: Callable[[], int | None] = lambda: None
    gpu_temperatures: dict[str, int] = field(default_factory=dict)


class _ScrapeCollector(Collector):
    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        tokens = CounterMetricFamily(
            "mombot_tokens", "Tokens used, per model and kind.", labels=["model", "kind"]
        )
        speed = GaugeMetricFamily(
            "mombot_tokens_per_second",
            "Completion tokens per second of model time, per model.",
            labels=["model"],
        )
        calls = CounterMetricFamily(
            "mombot_model_calls", "Model calls, per model.", labels=["model"]
        )
        for model, stats in sorted(self._sources.tracker.per_model().items()):
            tokens.add_metric([model, "prompt"], stats.prompt_tokens)
            tokens.add_metric([model, "completion"], stats.completion_tokens)
            speed.add_metric([model], stats.tokens_per_s)
            calls.add_metric([model], stats.calls)
        yield from (tokens, speed, calls)
        length = self._sources.image_queue_length()
        if length is not None:
            yield GaugeMetricFamily(
                "mombot_image_queue_length", "Image requests waiting or being drawn.", value=length
            )
        if self._sources.gpu_temperatures:
            gpu = GaugeMetricFamily(
                "mombot_gpu_temperature_celsius", "GPU temperature.", labels=["gpu"]
            )
            for name, celsius in sorted(self._sources.gpu_temperatures.items()):
                gpu.add_metric([name], celsius)
            yield gpu


class Telemetry:
    """The metrics of one brain, in their own Prometheus registry."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.registry = CollectorRegistry()
        self.reply_seconds = Histogram(
            "mombot_reply_seconds",
            "Time from a message to the end of its answer, by kind.",
            ["kind"],
            buckets=REPLY_BUCKETS_S,
            registry=self.registry,
        )
        self.errors = Counter(
            "mombot_errors",
            "Failures told to users, by error kind.",
            ["kind"],
            registry=self.registry,
        )
        self.registry.register(_ScrapeCollector(sources))

    def observe_reply(self, kind: str, seconds: float) -> None:
        self.reply_seconds.labels(kind).observe(seconds)

    def count_error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def set_gpu_temperatures(self, readings: list[Any]) -> None:
        self.sources.gpu_temperatures = {f"{r.index} {r.name}": r.temperature_c for r in readings}

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)
