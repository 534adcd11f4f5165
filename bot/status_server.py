"""The optional HTTP endpoint for operators: `/metrics` (Prometheus) and `/healthz`.

It runs on the bot's own event loop (aiohttp, already a dependency of both chat
libraries); anything slow (NVML, the database) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from bot.config import HttpConfig
from brain.brain import Brain
from brain.images.gpu import GpuMonitor

log = logging.getLogger(__name__)
DATABASE_TIMEOUT_S = 5.0


class StatusServer:
    """Serves the brain's metrics and health until closed."""

    def __init__(self, brain: Brain, config: HttpConfig) -> None:
        self._brain = brain
        self._config = config
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        self.port: int | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._config.host, self._config.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []  # the real port when port = 0
        self.port = sockets[0].getsockname()[1] if sockets else self._config.port
        log.info(
            "status endpoint on http://%s:%s (/metrics, /healthz)", self._config.host, self.port
        )

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        gpu = self._brain.gpu
        if isinstance(gpu, GpuMonitor) and gpu.available:
            self._brain.telemetry.set_gpu_temperatures(await asyncio.to_thread(gpu.readings))
        body = self._brain.telemetry.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        """200 while the bot takes messages and its database answers; 503 otherwise."""
        if self._brain.closing:
            return web.json_response({"status": "shutting down"}, status=503)
        try:
            await asyncio.wait_for(self._brain.history.ping(), DATABASE_TIMEOUT_S)
        except (SQLAlchemyError, OSError) as exc:  # OSError: TimeoutError too
            log.warning("health check: the database does not answer (%s)", type(exc).__name__)
            return web.json_response({"status": "database unavailable"}, status=503)
        return web.json_response({"status": "ok"})
