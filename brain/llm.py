"""The one client layer every model call goes through.

One client per named endpoint: streamed replies with a total deadline, sent and
parsed on its own httpx client; whole replies through `openai.AsyncOpenAI`; for
Ollama both in its native protocol (`brain/ollama.py`); structured output asked the way each server
honours it, token counting with the server's own tokenizer, context-window
discovery, usage records, and translation of every transport failure into a typed
brain error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx
import openai
from pydantic import BaseModel, ValidationError

from brain.config import EndpointConfig
from brain.errors import (
    ContextTooLong,
    ModelBadResponse,
    ModelTimeout,
    ModelUnavailable,
    MombotError,
)
from brain.llm_types import ModelInfo, StreamPiece
from brain.ollama import chat_body, ollama_model_info, piece_of, stream_pieces
from brain.reasoning import ReasoningSplitter, split_reasoning
from brain.redaction import register_secret

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
Message = dict[str, Any]

DEFAULT_CONTEXT_WINDOW = 2048
ESTIMATE_BYTES_PER_TOKEN = 3  # conservative: English averages about 4 bytes a token
RETRY_PAUSE_S = 0.5  # the first pause before a retried request
RETRIED_STATUSES = (408, 409, 429)  # and every 5xx, as the openai SDK does
TOKENIZER_KINDS = ("llama-cpp-python", "llama.cpp", "koboldcpp")  # servers that count tokens


@dataclass(frozen=True)
class Usage:
    """What one model call cost, for the token tracker."""

    endpoint: str
    model: str
    stage: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    first_token_s: float | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


UsageSink = Callable[[Usage], None]


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
        timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self._openai = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=api_key or "not-needed",
            timeout=timeout,
            max_retries=config.max_retries,
        )
        self._http = httpx.AsyncClient(base_url=server_root(config.base_url), timeout=timeout)
        self._chat_url = config.base_url.rstrip("/") + "/chat/completions"
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        parallel = config.max_parallel or (1 if config.kind == "llama-cpp-python" else 8)
        # llama-cpp-python serves one request at a time and may cut a running stream
        # off when a second arrives: we queue requests here instead.
        self._gate = asyncio.Semaphore(parallel)
        self._token_cache: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._model_infos: dict[str, ModelInfo] = {}
        self._warned_estimate = False

    async def aclose(self) -> None:
        await self._openai.close()
        await self._http.aclose()

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
        reasoning: str = "default",
    ) -> AsyncIterator[str]:
        """Yield the reply's text as it arrives; the whole answer must come within the timeout.

        Reasoning (`<think>` blocks, `reasoning_content`) is never yielded: it goes, whole,
        to `on_reasoning` at the end. `prompt_tokens` (our own count) is recorded when the
        server sends no usage.
        """
        splitter = ReasoningSplitter()
        shown = False
        deadline = time.monotonic() + (timeout_s or self.config.timeout_s)
        async with self._gate:
            started = time.monotonic()
            first_token_s: float | None = None
            pieces = 0
            usage: Any = None
            finish_reason: str | None = None
            try:
                async with self._open_stream(model, messages, temperature, max_tokens, reasoning,
                                             deadline) as stream:  # fmt: skip
                    while True:
                        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                        # cancel that lands as a piece arrives, and a shutdown would wait out
                        # the whole reply.
                        try:
                            async with asyncio.timeout(_remaining(deadline)):
                                content, thought, finished, sent_usage = await stream.__anext__()
                        except StopAsyncIteration:
                            break
                        usage = sent_usage or usage
                        finish_reason = finished or finish_reason
                        if thought:
                            splitter.add_reasoning(thought)
                        if content or thought:
                            if first_token_s is None:
                                first_token_s = time.monotonic() - started
                            pieces += 1
                        visible = splitter.feed(content) if content else ""
                        if not shown:  # no blank lines where the reasoning was
                            visible = visible.lstrip()
                        if visible:
                            shown = True
                            yield visible
            except MombotError:
                raise
            except Exception as exc:  # every transport failure becomes a typed error
                raise self._translate(exc) from exc
            tail = splitter.flush()  # text held back as a possible tag start
            if tail and not shown:
                tail = tail.lstrip()
            if tail:
                yield tail
            if splitter.reasoning and on_reasoning is not None:
                on_reasoning(splitter.reasoning)
            if finish_reason is None:
                # llama-cpp-python answers an over-long streamed prompt with HTTP 200 and an
                # empty body; a dropped connection looks the same. Never pass it off as a reply.
                raise ModelBadResponse(
                    f"The model server '{self.name}' stopped before finishing its answer.",
                    detail=f"stream ended without finish_reason after {pieces} pieces",
                )
            self._record(
                model, stage, usage, pieces, time.monotonic() - started, first_token_s, messages,
                prompt_tokens,
            )  # fmt: skip

    @asynccontextmanager
    async def _open_stream(
        self,
        model: str,
        messages: list[Message],
        temperature: float,
        max_tokens: int,
        reasoning: str,
        deadline: float,
    ) -> AsyncIterator[AsyncIterator[StreamPiece]]:
        """Start a streamed answer in this server's protocol; yields its pieces."""
        options = self.reasoning_options(reasoning)
        if self.config.kind == "ollama":
            body = chat_body(model, messages, num_ctx=await self.context_window(model),
                             temperature=temperature, max_tokens=max_tokens, stream=True,
                             extra=options)  # fmt: skip
            async with asyncio.timeout(_remaining(deadline)):
                response = await self._send("/api/chat", body, stream=True)
            try:
                if response.is_error:
                    await response.aread()
                    raise self._status_error(response.status_code, response.text)
                yield stream_pieces(response.aiter_lines())
            finally:
                await response.aclose()
            return
        # Sent and parsed here, not through the openai SDK: its request transform and
        # per-chunk pydantic objects cost about 2 ms per reply (bench/bench_load.py).
        body = {
            "model": model, "messages": messages, "temperature": temperature,
            "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True},
            **options,
        }  # fmt: skip
        async with asyncio.timeout(_remaining(deadline)):
            response = await self._send(self._chat_url, body, stream=True)
        try:
            if response.is_error:
                await response.aread()
                raise self._status_error(response.status_code, response.text)
            yield self._openai_pieces(_sse_data(response.aiter_lines()))
        finally:
            await response.aclose()

    async def _send(self, url: str, body: dict[str, Any], *, stream: bool) -> httpx.Response:
        """POST a model request, retried as the openai SDK retries its own.

        Connection failures, 408, 409, 429 and 5xx answers are tried again up to
        `max_retries` times, with a doubling pause; the caller turns a final error answer
        into words. `url` is absolute or relative to the server's root.
        """
        request = self._http.build_request("POST", url, json=body, headers=self._auth)
        for attempt in range(self.config.max_retries + 1):
            last = attempt == self.config.max_retries
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError:
                if last:
                    raise
            else:
                status = response.status_code
                if last or not (status in RETRIED_STATUSES or status >= 500):
                    return response
                await response.aclose()
            await asyncio.sleep(min(RETRY_PAUSE_S * 2**attempt, 8.0))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _openai_pieces(self, events: AsyncIterator[str]) -> AsyncIterator[StreamPiece]:
        """The pieces of an OpenAI-style event stream (usage comes in a last, choiceless chunk)."""
        async for data in events:
            chunk = json.loads(data)
            if not isinstance(chunk, dict) or chunk.get("error"):
                raise ModelBadResponse(self._bad_answer_text(), detail=data[:500])
            choices = chunk.get("choices")
            if not choices:
                yield StreamPiece(None, None, None, chunk.get("usage"))
                continue
            delta = choices[0].get("delta") or {}
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            finish_reason = choices[0].get("finish_reason")
            yield StreamPiece(delta.get("content"), thought, finish_reason, chunk.get("usage"))

    async def chat_stream_text(self, model: str, messages: list[Message], **kwargs: Any) -> str:
        """Stream a reply and return it whole (for callers that need stream semantics)."""
        return "".join([piece async for piece in self.stream_chat(model, messages, **kwargs)])

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
    ) -> str:
        """The whole reply as one string, without streaming (and without its reasoning)."""
        content, _ = await self._complete(
            model, messages, stage, temperature=temperature, max_tokens=max_tokens,
            timeout_s=timeout_s, extra=self.reasoning_options(reasoning),
        )  # fmt: skip
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
                    if self.config.kind == "ollama":
                        content, finish_reason, usage = await self._ollama_complete(
                            model, messages, temperature, max_tokens, extra
                        )
                    else:
                        content, finish_reason, usage = await self._openai_complete(
                            model, messages, temperature, max_tokens, extra
                        )
            except MombotError:
                raise
            except Exception as exc:
                raise self._translate(exc) from exc
        self._record(model, stage, usage, 0, time.monotonic() - started, None, messages)
        return content, finish_reason

    async def _openai_complete(
        self, model: str, messages: list[Message], temperature: float, max_tokens: int,
        extra: dict[str, Any] | None,
    ) -> tuple[str, str | None, Any]:  # fmt: skip
        response = await self._openai.chat.completions.create(
            model=model, messages=[], extra_body=_untransformed(messages, extra),
            temperature=temperature, max_tokens=max_tokens,
        )  # fmt: skip
        if not getattr(response, "choices", None):
            raise ModelBadResponse(self._bad_answer_text(), detail="answer without choices")
        choice = response.choices[0]
        return choice.message.content or "", choice.finish_reason, response.usage

    async def _ollama_complete(
        self, model: str, messages: list[Message], temperature: float, max_tokens: int,
        extra: dict[str, Any] | None,
    ) -> tuple[str, str | None, Any]:  # fmt: skip
        body = chat_body(model, messages, num_ctx=await self.context_window(model),
                         temperature=temperature, max_tokens=max_tokens, stream=False,
                         extra=extra)  # fmt: skip
        response = await self._send("/api/chat", body, stream=False)
        if response.is_error:
            raise self._status_error(response.status_code, response.text)
        answer = response.json()
        if not isinstance(answer, dict) or "error" in answer:
            raise ModelBadResponse(self._bad_answer_text(), detail=response.text[:500])
        content, _, finish_reason, usage = piece_of(answer)
        return content or "", finish_reason, usage

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
        json_schema = schema.model_json_schema()
        if self.config.kind == "ollama":
            extra = {"format": json_schema}
        else:
            extra = {"response_format": self._response_format(schema, json_schema)}
        content, finish_reason = await self._complete(
            model, messages, stage, temperature=0, max_tokens=max_tokens, timeout_s=timeout_s,
            extra=extra,
        )  # fmt: skip
        if finish_reason == "length":
            raise ModelBadResponse(self._bad_answer_text(), detail="JSON answer was cut off")
        try:
            return schema.model_validate_json(split_reasoning(content)[0])
        except ValidationError as exc:
            raise ModelBadResponse(self._bad_answer_text(), detail=f"invalid JSON: {exc}") from exc

    def reasoning_options(self, setting: str) -> dict[str, Any]:
        """A character's `reasoning` setting in the words of this server software."""
        if setting == "default":
            return {}
        kind = self.config.kind
        if kind in ("llama.cpp", "llama-cpp-python", "vllm"):  # chat templates with a switch (Qwen3...)
            return {"chat_template_kwargs": {"enable_thinking": setting != "off"}}
        if kind == "ollama":
            return {"think": setting != "off"}
        if setting == "off":  # OpenAI-style servers have no off switch: the least effort
            return {"reasoning_effort": "low"}
        return {"reasoning_effort": setting}

    def _response_format(self, schema: type[BaseModel], json_schema: dict[str, Any]) -> dict[str, Any]:
        """Structured output in the shape this server software actually honours."""
        if self.config.kind == "llama-cpp-python":
            # Its server accepts only text/json_object; json_schema is rejected with HTTP 500.
            return {"type": "json_object", "schema": json_schema}
        return {
            "type": "json_schema",
            "json_schema": {"name": schema.__name__, "schema": json_schema},
        }

    # -- tokens and context -----------------------------------------------------

    def known_token_counter(self, model: str) -> Callable[[str], int | None]:
        """A function giving a text's count if it needs no server call, else None.

        Building a prompt asks this for every history turn; answering without a coroutine
        (or even a method call) per turn kept a 600-turn prompt from costing milliseconds
        (bench/bench_load.py). Servers without a tokenizer always get the estimate.
        """
        if self.config.kind not in TOKENIZER_KINDS:
            return estimate_tokens
        cache = self._token_cache

        def counted_before(text: str) -> int | None:
            count = cache.get((model, text))
            if count is not None:
                cache.move_to_end((model, text))
            return count

        return counted_before

    async def count_tokens(self, model: str, text: str) -> int:
        """Tokens `text` takes in `model`, from the server's tokenizer where it has one."""
        key = (model, text)
        if key in self._token_cache:
            self._token_cache.move_to_end(key)
            return self._token_cache[key]
        count = await self._server_token_count(model, text)
        if count is None:
            count = estimate_tokens(text)
        self._token_cache[key] = count
        if len(self._token_cache) > 8192:
            self._token_cache.popitem(last=False)
        return count

    async def _server_token_count(self, model: str, text: str) -> int | None:
        kind = self.config.kind
        try:
            if kind == "llama-cpp-python":
                r = await self._http.post("/extras/tokenize/count", json={"input": text, "model": model})
                r.raise_for_status()
                return int(r.json()["count"])
            if kind == "llama.cpp":
                r = await self._http.post("/tokenize", json={"content": text})
                r.raise_for_status()
                return len(r.json()["tokens"])
            if kind == "koboldcpp":
                r = await self._http.post("/api/extra/tokencount", json={"prompt": text})
                r.raise_for_status()
                return int(r.json()["value"])
        except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
            log.warning("endpoint %s: tokenizer call failed (%s); estimating", self.name, exc)
            return None
        if not self._warned_estimate:
            self._warned_estimate = True
            log.warning(
                "endpoint %s (%s) offers no tokenizer: token counts are estimated "
                "(%d bytes a token, on the safe side)",
                self.name,
                kind,
                ESTIMATE_BYTES_PER_TOKEN,
            )
        return None

    async def context_window(self, model: str) -> int:
        """The model's context size: config, else the server's own figure, else a safe default."""
        if self.config.context_window:  # no need to ask
            return self.config.context_window
        return (await self.model_info(model)).context_window

    async def model_info(self, model: str) -> ModelInfo:
        """What the server says about a model (asked once, then cached); config overrides it."""
        if model not in self._model_infos:
            info = await self._ask_model_info(model)
            if self.config.context_window:
                info = replace(info, context_window=self.config.context_window, source="config")
            elif not info.context_window:
                log.warning(
                    "endpoint %s: context size unknown, assuming %d tokens "
                    "(set endpoints.%s.context_window)",
                    self.name, DEFAULT_CONTEXT_WINDOW, self.name,
                )  # fmt: skip
                info = replace(info, context_window=DEFAULT_CONTEXT_WINDOW, source="default")
            self._model_infos[model] = info
        return self._model_infos[model]

    async def _ask_model_info(self, model: str) -> ModelInfo:
        """Each server software keeps the figure somewhere else (see the README's table)."""
        kind = self.config.kind
        try:
            if kind == "llama.cpp":
                r = await self._http.get("/props")
                r.raise_for_status()
                props = r.json()
                n_ctx = props.get("default_generation_settings", {}).get("n_ctx") or props["n_ctx"]
                return ModelInfo(int(n_ctx), "server: /props n_ctx")
            if kind == "vllm":
                r = await self._http.get("/v1/models")
                r.raise_for_status()
                for entry in r.json().get("data", []):
                    if entry.get("id") == model and entry.get("max_model_len"):
                        return ModelInfo(int(entry["max_model_len"]), "server: /v1/models max_model_len")
            if kind == "koboldcpp":
                r = await self._http.get("/api/extra/true_max_context_length")
                r.raise_for_status()
                return ModelInfo(int(r.json()["value"]), "server: /api/extra/true_max_context_length")
            if kind == "ollama":
                r = await self._http.post("/api/show", json={"model": model})
                r.raise_for_status()
                return ollama_model_info(r.json())
        except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
            log.warning("endpoint %s: could not read the context size (%s)", self.name, exc)
        # llama-cpp-python's server has no /props and lists no context size: config decides.
        return ModelInfo(0, "")

    async def list_models(self) -> list[str]:
        """Model names the server offers (used by `mombot check`)."""
        try:
            page = await asyncio.wait_for(
                self._openai.models.list(), timeout=self.config.connect_timeout_s + 5
            )
        except Exception as exc:
            raise self._translate(exc) from exc
        return [m.id for m in page.data]

    # -- helpers ----------------------------------------------------------------

    def _record(
        self,
        model: str,
        stage: str,
        usage: Any,
        pieces: int,
        seconds: float,
        first_token_s: float | None,
        messages: list[Message],
        prompt_tokens: int | None = None,
    ) -> None:
        if not self.usage_sinks:
            return
        if isinstance(usage, dict):  # from a raw stream
            prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
        elif usage is not None:
            prompt, completion = usage.prompt_tokens or 0, usage.completion_tokens or 0
        else:  # server sent no usage: one streamed piece is about one token
            prompt = prompt_tokens or sum(estimate_tokens(_text_of(m)) for m in messages)
            completion = pieces
        record = Usage(self.name, model, stage, prompt, completion, seconds, first_token_s)
        for sink in self.usage_sinks:
            sink(record)

    def _bad_answer_text(self) -> str:
        return f"The model server '{self.name}' gave an answer I could not use."

    def _status_error(self, status: int, body: str) -> MombotError:
        """An HTTP error answer from the server, in words for the chat."""
        name = self.name
        if "context_length_exceeded" in body or "context length" in body.lower():
            text = "That conversation is too long for the model's context window."
            return ContextTooLong(text, detail=body)
        if status == 404:
            text = f"The model server '{name}' does not know that model."
        elif status == 429:
            text = f"The model server '{name}' is busy; try again soon."
        else:
            text = f"The model server '{name}' answered with an error (HTTP {status})."
        return ModelBadResponse(text, detail=body)

    def _translate(self, exc: BaseException) -> MombotError:
        """Turn a transport or API failure into a typed error with a chat-friendly text."""
        name = self.name
        if isinstance(exc, MombotError):
            return exc
        if isinstance(exc, (asyncio.TimeoutError, openai.APITimeoutError)):
            return ModelTimeout(f"The model server '{name}' did not answer in time.", detail=repr(exc))
        if isinstance(exc, openai.APIConnectionError):
            return ModelUnavailable(f"The model server '{name}' cannot be reached.", detail=repr(exc))
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc.status_code, _error_text(exc))
        if isinstance(exc, (json.JSONDecodeError, openai.APIResponseValidationError, ValueError)):
            return ModelBadResponse(self._bad_answer_text(), detail=repr(exc))
        if isinstance(exc, (httpx.HTTPError, OSError)):
            return ModelUnavailable(f"The model server '{name}' cannot be reached.", detail=repr(exc))
        return ModelBadResponse(self._bad_answer_text(), detail=repr(exc))


def server_root(base_url: str) -> str:
    """The server's root URL: the OpenAI base URL without its trailing /v1."""
    root = base_url.rstrip("/")
    return root.removesuffix("/v1")


def estimate_tokens(text: str) -> int:
    """A safe over-estimate of a text's tokens when the server has no tokenizer."""
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    return -(-size // ESTIMATE_BYTES_PER_TOKEN)  # rounded up


def _untransformed(messages: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send the messages as they are, past the SDK's request transform.

    openai's client walks every request parameter through a recursive, type-introspecting
    transform that changes nothing for chat messages; with a long history it cost about
    25 ms of event-loop time per call here (bench/bench_load.py). Keys of extra_body replace
    those of the request, so `messages=[]` plus this sends exactly our list.
    """
    return {**(extra or {}), "messages": messages}


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The data of each server-sent event until `[DONE]` (comments and other fields skipped).

    The body is read to its end even after `[DONE]`: a response closed early also closes
    its connection, and a new connection per message cost about a millisecond here.
    """
    data: list[str] = []
    done = False
    async for line in lines:
        if done:
            continue
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            payload, data = "\n".join(data), []
            if payload == "[DONE]":
                done = True
                continue
            yield payload
    if data and data != ["[DONE]"] and not done:
        yield "\n".join(data)


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    return remaining


def _text_of(message: Message) -> str:
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content if isinstance(part, dict))


def _error_text(exc: openai.APIStatusError) -> str:
    try:
        return json.dumps(exc.body) if exc.body is not None else str(exc)
    except (TypeError, ValueError):
        return str(exc)
