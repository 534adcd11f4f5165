"""What a model server says about its models: token counts and context size, vision,
and its slots (each character is pinned to one, `brain.models.slots`).

Counts come from the server's own tokenizer where it has one (cached per model and text,
within a budget of characters), else from a safe estimate. The context window comes from
config, else from the server (asked once per model), else a safe default; a probe that
failed is asked again after a back-off, so a server that was down at the first question
is not taken at a stand-in's word for the life of the process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx

from brain.bounded import BoundedDict
from brain.config import EndpointConfig
from brain.models.dialects import Dialect
from brain.models.slots import SlotPins
from brain.models.tokens import ESTIMATE_BYTES_PER_TOKEN, TokenCache, estimate_tokens
from brain.models.types import ModelInfo

log = logging.getLogger(__name__)

DEFAULT_CONTEXT_WINDOW = 2048
PROBE_RETRY_S = 5.0  # a failed context/vision probe is tried again after this long...
PROBE_RETRY_MAX_S = 300.0  # ...doubling up to this
MODELS_KEPT = 256  # models whose facts are remembered per endpoint


class ServerFacts:
    """Token counts and model facts of one endpoint, asked of its server and cached."""

    def __init__(
        self, name: str, config: EndpointConfig, http: httpx.AsyncClient, dialect: Dialect
    ) -> None:
        self.name = name
        self.config = config
        self.dialect = dialect
        self._http = http
        self._token_cache = TokenCache()
        self._model_infos: BoundedDict[str, ModelInfo] = BoundedDict(MODELS_KEPT)
        self._probe_retries: BoundedDict[str, tuple[float, float]] = BoundedDict(MODELS_KEPT)
        self.clock: Callable[[], float] = time.monotonic  # for the probes' back-off
        self._warned_estimate = False
        self._pins = SlotPins()

    def known_token_counter(self, model: str) -> Callable[[str], int | None]:
        """A function giving a text's count if it needs no server call, else None.

        Building a prompt asks this for every history turn; answering without a coroutine
        (or even a method call) per turn kept a 600-turn prompt from costing milliseconds
        (bench/bench_load.py). Servers without a tokenizer always get the estimate.
        """
        if not self.dialect.has_tokenizer:
            return estimate_tokens
        cache = self._token_cache

        def counted_before(text: str) -> int | None:
            return cache.get(model, text)

        return counted_before

    async def count_tokens(self, model: str, text: str) -> int:
        """Tokens `text` takes in `model`, from the server's tokenizer where it has one."""
        count = self._token_cache.get(model, text)
        if count is not None:
            return count
        count = await self._server_token_count(model, text)
        if count is None:
            count = estimate_tokens(text)
        self._token_cache.put(model, text, count)
        return count

    async def _server_token_count(self, model: str, text: str) -> int | None:
        try:
            try:
                count = await self.dialect.count_tokens(self._http, model, text)
            except httpx.RemoteProtocolError:
                # The server closed a kept-alive connection just as this request went out
                # on it (llama-server does, after a streamed reply): once more, on a new one.
                count = await self.dialect.count_tokens(self._http, model, text)
        except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
            log.warning("endpoint %s: tokenizer call failed (%s); estimating", self.name, exc)
            return None
        if count is None and not self._warned_estimate:
            self._warned_estimate = True
            log.warning(
                "endpoint %s (%s) offers no tokenizer: token counts are estimated "
                "(%d bytes a token, on the safe side)",
                self.name,
                self.config.kind,
                ESTIMATE_BYTES_PER_TOKEN,
            )
        return count

    async def pin_options(self, model: str, cache_key: str | None) -> dict[str, Any]:
        """The request fields that send a request to its cache key's slot, if the server
        tells its slots; None as the key: the spare slot, no character's cache."""
        slots = (await self.model_info(model)).slots
        slot = self._pins.slot_for(cache_key, slots or 1)
        return {} if slot is None else self.dialect.pin_options(slot)

    async def request_options(
        self, model: str, reasoning: str, cache_key: str | None
    ) -> dict[str, Any]:
        """A chat request's extra fields that depend on the server: the reasoning switch in
        its dialect, and its slot where the server has slots (requests with the same
        `cache_key` share one)."""
        return {
            **self.dialect.reasoning_options(reasoning),
            **await self.pin_options(model, cache_key),
        }

    async def native_window(self, model: str) -> int | None:
        """The window sent with each request where the server's own protocol takes one."""
        return await self.context_window(model) if self.dialect.native_chat else None

    async def context_window(self, model: str) -> int:
        """The model's context size: config, else the server's own figure, else a safe default."""
        if self.config.context_window:  # no need to ask
            return self.config.context_window
        return (await self.model_info(model)).context_window

    async def model_info(self, model: str) -> ModelInfo:
        """What the server says about a model (asked once, then cached); config overrides it.

        A probe that failed (server down, a timeout) is not the server's answer: its
        stand-in is kept only until the next try, after a back-off that doubles from
        PROBE_RETRY_S up to PROBE_RETRY_MAX_S, so a server that comes back is asked again.
        """
        cached = self._model_infos.get(model)
        retry = self._probe_retries.get(model)
        if cached is not None and (retry is None or self.clock() < retry[0]):
            return cached
        info = await self._ask_model_info(model)
        if info is None:  # failed: a stand-in until the back-off has passed
            delay = PROBE_RETRY_S if retry is None else min(retry[1] * 2, PROBE_RETRY_MAX_S)
            self._probe_retries[model] = (self.clock() + delay, delay)
            info = ModelInfo(0, "")
        else:
            self._probe_retries.pop(model, None)
        if self.config.context_window:
            info = replace(info, context_window=self.config.context_window, source="config")
        elif not info.context_window:
            log.warning(
                "endpoint %s: context size unknown, assuming %d tokens "
                "(set endpoints.%s.context_window)",
                self.name,
                DEFAULT_CONTEXT_WINDOW,
                self.name,
            )
            info = replace(info, context_window=DEFAULT_CONTEXT_WINDOW, source="default")
        self._model_infos[model] = info
        return info

    async def _ask_model_info(self, model: str) -> ModelInfo | None:
        """None when the server could not be asked (a failure worth retrying)."""
        try:
            return await self.dialect.model_info(self._http, model)
        except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
            log.warning("endpoint %s: could not read the context size (%s)", self.name, exc)
            return None
