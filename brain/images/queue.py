"""The image request queue: bounded, per-user limited, dynamically batched, cancellable.

Concurrent requests with the same shape (model, size, steps, guidance) run as one
batched pipeline call; each keeps its own prompt, negative prompt and seed, so
its image equals what it would get alone. One worker task owns the backend: a
diffusers pipeline is not safe to share between concurrent calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

from brain.config import QueueConfig
from brain.errors import Busy, MombotError
from brain.images.requests import CoolDown, GeneratedImage, ImageRequest, ProgressFn

log = logging.getLogger(__name__)

StepFn = Callable[[int, int], None]
"""(step, total) — called from the backend's worker thread."""
BatchResult = GeneratedImage | MombotError
"""One request's outcome in a batch: its image, or why it alone failed (e.g. the safety checker)."""
SHUT_DOWN = "The image generator was shut down; ask again once I am back."
BATCH_SIZES_KEPT = 1000  # recent pipeline-call sizes kept for /stats and tests


class BatchBackend(Protocol):
    """Something that renders a batch of same-shaped requests."""

    max_batch: int

    def shape_key(self, request: ImageRequest) -> Hashable: ...

    async def run_batch(self, requests: list[ImageRequest], on_step: StepFn) -> list[BatchResult]:
        """One result per request, in order; raises only when the whole batch failed."""
        ...

    async def aclose(self) -> None:
        """Release the backend's threads, connections and model."""
        ...


@dataclass(eq=False)
class Job:
    request: ImageRequest
    progress: ProgressFn
    future: asyncio.Future[GeneratedImage]
    last_report: float = field(default=0.0)


class ImageQueue:
    """Implements `ImageGenerator` on top of a `BatchBackend`."""

    def __init__(
        self, backend: BatchBackend, config: QueueConfig, *, gpu: CoolDown | None = None
    ) -> None:
        self.backend = backend
        self.config = config
        self.gpu = gpu
        self._pending: list[Job] = []
        self._running: list[Job] = []
        self._worker: asyncio.Task[None] | None = None
        self._reports: set[asyncio.Task[None]] = set()  # progress notes under way
        self._closed = False
        self.batches_run: deque[int] = deque(maxlen=BATCH_SIZES_KEPT)  # recent pipeline calls

    @property
    def length(self) -> int:
        return len(self._pending) + len(self._running)

    async def generate(self, request: ImageRequest, progress: ProgressFn) -> GeneratedImage:
        if self._closed:
            raise MombotError(SHUT_DOWN)
        if len(self._pending) >= self.config.max_queue:
            raise Busy(
                f"I'm busy: {len(self._pending)} images are waiting already. "
                "Try again in a few minutes."
            )
        mine = sum(
            1 for j in (*self._pending, *self._running) if j.request.user_id == request.user_id
        )
        if mine >= self.config.per_user:
            raise Busy(
                "You already have an image on the way; let it finish first."
                if mine == 1
                else f"You already have {mine} images on the way; let them finish first."
            )
        job = Job(request, progress, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        ahead = len(self._pending) - 1 + len(self._running)
        if ahead:
            await progress(f"Queued: {ahead} image{'s' if ahead > 1 else ''} ahead of yours.")
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        try:
            return await asyncio.shield(job.future)
        except asyncio.CancelledError:  # the chat went away: drop the job if it has not started
            if job in self._pending:
                self._pending.remove(job)
                log.info("image request of %s cancelled before it started", request.user_id)
            job.future.cancel()
            raise

    @property
    def batch_limit(self) -> int:
        return min(self.backend.max_batch, self.config.max_batch)

    async def _work(self) -> None:
        while self._pending:
            if len(self._pending) < self.batch_limit and self.config.batch_window_ms:
                await asyncio.sleep(self.config.batch_window_ms / 1000)  # let a batch gather
            if not self._pending:
                break
            key = self.backend.shape_key(self._pending[0].request)
            batch = [j for j in self._pending if self.backend.shape_key(j.request) == key]
            batch = batch[: self.batch_limit]
            for job in batch:
                self._pending.remove(job)
            self._running = batch
            try:
                await self._run(batch)
            finally:
                self._running = []

    async def _run(self, batch: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        if self.gpu is not None:
            await self.gpu.cool_down(lambda text: self._tell(batch, text))

        def on_step(step: int, total: int) -> None:  # worker thread
            loop.call_soon_threadsafe(self._step, batch, step, total)

        self.batches_run.append(len(batch))
        started = time.monotonic()
        try:
            images = await self.backend.run_batch([j.request for j in batch], on_step)
        except Exception as exc:  # the worker's boundary: a backend (torch, diffusers, a
            # remote server) may fail in any way; its jobs fail with it, the queue goes on
            log.exception("image batch of %d failed", len(batch))
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        log.info("image batch of %d in %.2f s", len(batch), time.monotonic() - started)
        await self._settle_reports()
        for job, result in zip(batch, images, strict=True):
            if job.future.done():
                continue
            if isinstance(result, MombotError):  # this request alone failed
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

    def _step(self, batch: list[Job], step: int, total: int) -> None:
        now = time.monotonic()
        for job in batch:
            if now - job.last_report >= self.config.progress_interval_s and not job.future.done():
                job.last_report = now
                report = asyncio.create_task(self._safe(job, f"Drawing: step {step}/{total}"))
                self._reports.add(report)
                report.add_done_callback(self._reports.discard)

    async def _settle_reports(self) -> None:
        if self._reports:
            await asyncio.gather(*self._reports)

    async def aclose(self) -> None:
        """Stop the worker, fail what still waits, and close the backend."""
        self._closed = True
        unfinished = [*self._pending, *self._running]  # the worker's end clears `_running`
        self._pending = []
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        for job in unfinished:
            if not job.future.done():
                job.future.set_exception(MombotError(SHUT_DOWN))
        await self._settle_reports()
        await self.backend.aclose()

    async def _tell(self, batch: list[Job], text: str) -> None:
        await asyncio.gather(*(self._safe(job, text) for job in batch))

    async def _safe(self, job: Job, text: str) -> None:
        if job.future.done():  # a note that comes after the image (or the error) would mislead
            return
        try:
            await job.progress(text)
        except Exception:  # a chat that cannot be edited must not break the batch
            log.warning("could not report image progress", exc_info=True)
