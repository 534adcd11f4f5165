"""The sentence encoder (all-MiniLM-L6-v2, int8), shared by the router and the memory.

One model in memory and one place that knows how to load it. Torch blocks, so loading and
encoding run off the event loop, in one thread of the embedder's own (`run`): torch's
OpenMP threads are set up per calling thread, and an encode from whichever thread of the
default pool is free took 10.7 ms against 4.4 ms from a thread that always encodes (one
short message, 2 cores). One thread also means one encode at a time, which a fast tokenizer
needs ("Already borrowed").
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from brain.bounded import BoundedDict

log = logging.getLogger(__name__)

MAX_CHARS = 2000  # the model reads 256 word pieces; longer text only costs tokenizing time
T = TypeVar("T")
RECENT_TEXTS = 64  # single texts whose embedding is kept: the router and the memory share them


def quantized(encoder: Any) -> Any:
    """The encoder with int8 linear layers: 1.6x faster per message on this 2-core machine,
    and the router as accurate (bench/bench_routing.py). torch marks dynamic quantization
    deprecated; torch is pinned, and the router would only lose speed without it."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8)


class Embedder:
    """Unit-length sentence embeddings (float32, 384 wide) from a local model folder."""

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path
        self._encoder: Any = None
        self._load_lock = asyncio.Lock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="embedder")
        # A message is embedded once even when both the router and the memory ask for it.
        self._recent: BoundedDict[str, np.ndarray] = BoundedDict(RECENT_TEXTS)

    async def aclose(self) -> None:
        """Stop its thread, once what runs on it has finished (an encode in progress)."""
        await asyncio.to_thread(self._thread.shutdown, wait=True)

    @functools.cached_property
    def identity(self) -> str:
        """What its vectors depend on: the model's files (their names and sizes, and what
        the small ones say) and the int8 layers. Vectors stored under another identity are
        another model's, made again (`brain.memory`). Read from the folder once, at start."""
        digest = hashlib.sha256()
        for path in sorted(p for p in self.model_path.rglob("*") if p.is_file()):
            size = path.stat().st_size
            digest.update(f"{path.relative_to(self.model_path)}:{size}\0".encode())
            if size < 100_000:
                digest.update(path.read_bytes())
        return f"{self.model_path.name}:{digest.hexdigest()[:16]}:int8"

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    async def load(self) -> None:
        """Load the model in the embedder's thread (once; later calls return at once)."""
        if self._encoder is not None:
            return
        async with self._load_lock:
            if self._encoder is None:
                started = time.monotonic()
                self._encoder = await self.run(self._load_blocking)
                log.info("sentence encoder ready in %.1f s", time.monotonic() - started)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` in the embedder's thread: every use of the model goes through here."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    def _load_blocking(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never ask the hub
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from sentence_transformers import SentenceTransformer  # heavy: imported only when used
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        model = SentenceTransformer(str(self.model_path), device="cpu", local_files_only=True)
        return quantized(model)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings of `texts`, one row each (blocking: call it through `run`).

        Recent texts are not encoded again: a message is embedded once for the memory's
        index, its recall and the router, whichever asks first.

        Each text is encoded on its own: the int8 layers quantize their input with one scale
        for the whole batch, so a turn indexed beside a longer one came out another vector
        (cosine 0.945 to itself encoded alone, as a question always is), and recall then
        depended on what the turn happened to be indexed with.
        """
        assert self._encoder is not None, "load() first"
        keys = [text[:MAX_CHARS] for text in texts]
        # What the cache holds now, read before anything new goes in (which may evict it).
        found = {key: self._recent[key] for key in dict.fromkeys(keys) if key in self._recent}
        missing = [key for key in dict.fromkeys(keys) if key not in found]
        if missing:
            fresh = self._encoder.encode(
                missing,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
                batch_size=1,  # int8 layers scale a whole batch at once (docstring)
            )
            found.update(zip(missing, fresh, strict=True))
            if len(missing) <= RECENT_TEXTS:  # a thousand routing examples would only churn
                for key, vector in zip(missing, fresh, strict=True):
                    self._recent[key] = vector
        return np.stack([found[key] for key in keys])

    def encode_one(self, text: str) -> np.ndarray:
        """One text's embedding (blocking, like `encode`)."""
        return self.encode([text])[0]
