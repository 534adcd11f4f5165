"""GPU monitor through NVML (nvidia-ml-py): temperature, memory, utilisation, and cool-down.

Before a model or image job, if any GPU is hotter than the limit, wait (telling the
user) until all are back under limit − hysteresis, or until `max_wait_s` passes.
Without NVML or without a GPU the monitor reports "not available" and never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from brain.config import GpuConfig
from brain.images.requests import ProgressFn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    temperature_c: int
    memory_used_mb: int
    memory_total_mb: int
    utilization_pct: int


class GpuMonitor:
    """Reads every NVIDIA GPU; `nvml` is the pynvml module (a stub in tests)."""

    def __init__(self, config: GpuConfig, nvml: Any = None) -> None:
        self.config = config
        self._nvml = nvml
        self.available = False
        self.reason = "not checked yet"
        self._read_failed = False  # said once in the log, not at every job
        self._initialized = False  # NVML is shut down only where it was started
        if not config.enabled:
            self.reason = "switched off (gpu.enabled = false)"
            return
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                self.reason = "NVML not available (nvidia-ml-py is not installed)"
                log.info("GPU monitor: %s", self.reason)
                return
            self._nvml = pynvml
        try:  # no driver, no GPU: report it, never block
            self._nvml.nvmlInit()
            self._initialized = True
            self.count = int(self._nvml.nvmlDeviceGetCount())
        except (self._nvml.NVMLError, OSError) as exc:  # OSError: its library will not load
            self.reason = f"NVML not available ({type(exc).__name__})"
            log.info("GPU monitor: %s", self.reason)
            return
        if self.count == 0:
            self.reason = "no NVIDIA GPU"
            return
        self.available = True
        self.reason = ""

    def close(self) -> None:
        """Shut NVML down (it holds the driver's handles until then)."""
        if not self._initialized:
            return
        self._initialized = self.available = False
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:
            log.warning("GPU monitor: NVML did not shut down cleanly (%s)", exc)

    def readings(self) -> list[GpuReading]:
        """Every GPU's reading; none when NVML fails to read (not supported under MIG, a GPU
        lost): that is logged once and counts as no reading, so images and chat go on."""
        if not self.available:
            return []
        try:
            return self._read()
        except self._nvml.NVMLError as exc:
            if not self._read_failed:
                self._read_failed = True
                log.warning("GPU monitor: NVML could not read the GPUs (%s); going on without", exc)
            return []

    def _read(self) -> list[GpuReading]:
        nvml, out = self._nvml, []
        for index in range(self.count):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            out.append(
                GpuReading(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    temperature_c=int(
                        nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
                    ),
                    memory_used_mb=int(memory.used) // 2**20,
                    memory_total_mb=int(memory.total) // 2**20,
                    utilization_pct=int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                )
            )
        return out

    def hottest(self) -> int | None:
        readings = self.readings()
        return max(r.temperature_c for r in readings) if readings else None

    async def cool_down(self, report: ProgressFn) -> None:
        """Wait while the hottest GPU is over the limit (every GPU counts, not just the first)."""
        if not self.available:
            return
        temperature = await asyncio.to_thread(self.hottest)
        if temperature is None or temperature <= self.config.max_temperature_c:
            return
        target = self.config.max_temperature_c - self.config.hysteresis_c
        started = time.monotonic()
        while temperature is not None and temperature > target:
            if time.monotonic() - started > self.config.max_wait_s:
                log.warning(
                    "GPU still at %d °C after %.0f s; going on", temperature, self.config.max_wait_s
                )
                return
            await report(f"The GPU is hot ({temperature} °C); cooling down to {target} °C first…")
            await asyncio.sleep(self.config.poll_s)
            temperature = await asyncio.to_thread(self.hottest)
        log.info("GPU cooled to %s °C in %.0f s", temperature, time.monotonic() - started)

    def describe(self) -> str:
        if not self.available:
            return f"GPU: {self.reason}"
        return "\n".join(
            f"GPU {r.index} {r.name}: {r.temperature_c} °C, {r.utilization_pct}% busy, "
            f"{r.memory_used_mb}/{r.memory_total_mb} MiB"
            for r in self.readings()
        )
