"""The one client layer every model call goes through: `ModelClient`, one per endpoint.

It speaks chat to the server: streamed replies under a total deadline (reasoning split
off as it streams), whole replies, and structured output; it records usage and turns
every failure into a typed brain error. The rest lives beside it, each in one place:
`brain.models.transport` (the HTTP client, retries, deadlines), `brain.models.dialects` (how
each server kind differs: structured output, reasoning switch, tokenizer, context probe),
`brain.models.server_facts` (token counts and context windows, cached), `brain.models.errors`
(failures in words), `brain.models.ollama` (Ollama's native protocol).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from brain.bounded import BoundedDict
from brain.config import EndpointConfig
from brain.errors import ModelBadResponse, MombotError
from brain.models.dialects import dialect_for
from brain.models.errors import (
    ANSWER_FAILURES,
    bad_answer,
    stopped_mid_answer,
    stream_failure,
    translate,
)
from brain.models.reasoning import VisibleStream, split_reasoning
from brain.models.server_facts import ServerFacts
from brain.models.transport import Transport, remaining
from brain.models.types import ModelInfo
from brain.models.usage import Usage, UsageSink, usage_record
from brain.redaction import register_secret

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
Message = dict[str, Any]


class ModelClient:
    """A named OpenAI-compatible endpoint (Ollama, llama.cpp, koboldcpp, vLLM, OpenAI...)."""

    def __init__(
        self,
        name: str,
        config: EndpointConfig,
        *,
        api_key: str | None = None,
        on_usage: UsageSink | None = None,
    ) -> None:
        self.name = name
        self.config = config
        register_secret(api_key)
        self.usage_sinks: list[UsageSink] = [on_usage] if on_usage else []
        self.transport = Transport(name, config, api_key)
        self.dialect = dialect_for(config.kind)
        self._gate = asyncio.Semaphore(config.max_parallel or self.dialect.parallel)
        self.facts = ServerFacts(name, config, self.transport.http, self.dialect)
        # (model, reasoning setting) → whether its chat template opens the <think> block
        self._template_opens_reasoning: BoundedDict[tuple[str, str], bool] = BoundedDict(256)

    async def aclose(self) -> None:
        await self.transport.aclose()

    # -- chat -----------------------------------------------------------------

    async def stream_chat(
        self,
        model: str,
        messages: list[Message],
        *,
        temperature: float = 0.7,
        max_tokens: int = 256,
        timeout_s: float | None = None,
        stage: str = "chat",
        prompt_tokens: int | None = None,
        on_reasoning: Callable[[str], None] | None = None,
        on_retract: Callable[[], Awaitable[None]] | None = None,
        on_finish: Callable[[str], None] | None = None,
        reasoning: str = "default",
        cache_key: str | None = None,
    ) -> AsyncGenerator[str, None]:
        """Yield the reply's text as it arrives; the whole answer must come within the timeout.

        Reasoning (`<think>` blocks, `reasoning_content`) is never yielded: it goes, whole,
        to `on_reasoning` at the end. If text already yielded turns out to be reasoning (a
        lone `</think>` from a model not yet known to open the block in its template),
        `on_retract` is awaited and yielding starts again with the answer. `on_finish` gets
        the server's finish reason ("stop", "length"). `prompt_tokens` (our own count) is
        recorded when the server sends no usage. Requests with the same `cache_key` (a
        character's name) go to the same server slot, where the server has slots.
        """
        template_key = (model, reasoning)
        text = VisibleStream(self._template_opens_reasoning.get(template_key), on_retract)
        async with self._gate:  # the deadline starts when the request goes out, not before
            deadline = time.monotonic() + (timeout_s or self.config.timeout_s)
            started = time.monotonic()
            first_token_s: float | None = None
            pieces = 0
            usage: Any = None
            finish_reason: str | None = None
            answering = False  # the server accepted the request and began its answer
            try:
                options = await self.facts.request_options(model, reasoning, cache_key)
                async with self.transport.open_stream(
                    model,
                    messages,
                    temperature,
                    max_tokens,
                    options,
                    deadline,
                    num_ctx=await self.facts.native_window(model),
                ) as stream:
                    answering = True
                    while True:
                        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                        # cancel that lands as a piece arrives, and a shutdown would wait out
                        # the whole reply.
                        try:
                            async with asyncio.timeout(remaining(deadline)):
                                content, thought, finished, sent_usage = await stream.__anext__()
                        except StopAsyncIteration:
                            break
                        usage = sent_usage or usage
                        finish_reason = finished or finish_reason
                        if content or thought:
                            if first_token_s is None:
                                first_token_s = time.monotonic() - started
                            pieces += 1
                        if visible := await text.piece(content or "", thought or ""):
                            yield visible
            except MombotError:
                raise
            except ANSWER_FAILURES as exc:  # every transport failure becomes a typed error
                raise stream_failure(self.name, exc, answering=answering) from exc
            if tail := text.tail():
                yield tail
            if text.splitter.reasoning and on_reasoning is not None:
                on_reasoning(text.splitter.reasoning)
            self._template_opens_reasoning[template_key] = text.splitter.template_opens
            if finish_reason is None:
                # llama-cpp-python answers an over-long streamed prompt with HTTP 200 and an
                # empty body; a dropped connection looks the same. Never pass it off as a reply.
                raise ModelBadResponse(
                    stopped_mid_answer(self.name),
                    detail=f"stream ended without finish_reason after {pieces} pieces",
                )
            if on_finish is not None:
                on_finish(finish_reason)
            self._record(
                usage_record(
                    self.name,
                    model,
                    stage,
                    usage,
                    time.monotonic() - started,
                    pieces=pieces,
                    messages=messages,
                    prompt_tokens=prompt_tokens,
                    first_token_s=first_token_s,
                )
            )

    async def chat(
        self,
        model: str,
        messages: list[Message],
        *,
        temperature: float = 0.7,
        max_tokens: int = 256,
        timeout_s: float | None = None,
        stage: str = "chat",
        reasoning: str = "default",
        cache_key: str | None = None,
    ) -> str:
        """The whole reply as one string, without streaming (and without its reasoning)."""
        content, _ = await self._complete(
            model,
            messages,
            stage,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout_s=timeout_s,
            extra=await self.facts.request_options(model, reasoning, cache_key),
        )
        answer, _ = split_reasoning(content)
        return answer

    async def _complete(
        self,
        model: str,
        messages: list[Message],
        stage: str,
        *,
        temperature: float,
        max_tokens: int,
        timeout_s: float | None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, str | None]:
        """One non-streamed completion, usage recorded: its text and finish reason.

        `extra` holds request fields in this server's protocol (`format` for Ollama,
        `response_format` for the others, reasoning switches).
        """
        async with self._gate:
            started = time.monotonic()  # time on the server, not in our queue
            try:
                async with asyncio.timeout(timeout_s or self.config.timeout_s):
                    content, finish_reason, usage = await self.transport.complete(
                        model,
                        messages,
                        temperature,
                        max_tokens,
                        extra,
                        num_ctx=await self.facts.native_window(model),
                    )
            except MombotError:
                raise
            except ANSWER_FAILURES as exc:
                raise translate(self.name, exc) from exc
        seconds = time.monotonic() - started
        self._record(usage_record(self.name, model, stage, usage, seconds, messages=messages))
        return content, finish_reason

    async def chat_json(
        self,
        model: str,
        messages: list[Message],
        schema: type[T],
        *,
        max_tokens: int = 256,
        timeout_s: float | None = None,
        stage: str = "json",
    ) -> T:
        """Ask for an answer constrained to `schema` and return it validated."""
        extra = {
            **self.dialect.structured(schema, schema.model_json_schema()),
            **await self.facts.pin_options(model, None),  # the spare slot
        }
        content, finish_reason = await self._complete(
            model,
            messages,
            stage,
            temperature=0,
            max_tokens=max_tokens,
            timeout_s=timeout_s,
            extra=extra,
        )
        if finish_reason == "length":
            raise ModelBadResponse(bad_answer(self.name), detail="JSON answer was cut off")
        try:
            return schema.model_validate_json(split_reasoning(content)[0])
        except ValidationError as exc:
            raise ModelBadResponse(bad_answer(self.name), detail=f"invalid JSON: {exc}") from exc

    # -- tokens and context (see brain.server_facts) ---------------------------------

    def known_token_counter(self, model: str) -> Callable[[str], int | None]:
        return self.facts.known_token_counter(model)

    async def count_tokens(self, model: str, text: str) -> int:
        return await self.facts.count_tokens(model, text)

    async def context_window(self, model: str) -> int:
        return await self.facts.context_window(model)

    async def model_info(self, model: str) -> ModelInfo:
        return await self.facts.model_info(model)

    async def list_models(self) -> list[str]:
        """Model names the server offers (used by `mombot check`)."""
        try:
            async with asyncio.timeout(self.config.connect_timeout_s + 5):
                return await self.transport.list_models()
        except ANSWER_FAILURES as exc:
            raise translate(self.name, exc) from exc

    # -- helpers ----------------------------------------------------------------

    def _record(self, usage: Usage) -> None:
        for sink in self.usage_sinks:
            sink(usage)


async def stream_text(
    client: ModelClient, model: str, messages: list[Message], **kwargs: Any
) -> str:
    """A streamed reply, returned whole (for callers that need stream semantics)."""
    pieces: list[str] = []

    async def retract() -> None:
        pieces.clear()

    async for piece in client.stream_chat(model, messages, on_retract=retract, **kwargs):
        pieces.append(piece)
    return "".join(pieces)
