"""The HTTP side of model calls: one httpx client per endpoint, one retry policy, deadlines.

Every model request, streamed or whole, is one POST on the endpoint's httpx client through
`post`: connection failures, 408, 409, 429 and 5xx are retried with a doubling pause, and
the caller's deadline (`asyncio.timeout`) bounds the whole of it. The openai SDK's own
request path is not used for chat: its request transform and per-chunk pydantic objects
cost about 2 ms of event-loop time per reply (bench/bench_load.py), and it would be a
second HTTP stack with a second retry loop. The SDK stays for what it serves without that
cost — listing models for `mombot check` — and runs on this same httpx client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai

from brain.config import EndpointConfig
from brain.errors import ModelBadResponse
from brain.models.errors import bad_answer, status_error
from brain.models.ollama import chat_body, piece_of, stream_pieces
from brain.models.types import StreamPiece

Message = dict[str, Any]

RETRY_PAUSE_S = 0.5  # the first pause before a retried request
RETRIED_STATUSES = (408, 409, 429)  # and every 5xx, as the openai SDK does


class Transport:
    """An endpoint's HTTP side: chat requests in its protocol (retried), and its metadata.

    `num_ctx` given means the server's native protocol (Ollama's /api/chat, which takes the
    window with each request); None means the OpenAI-style one.
    """

    def __init__(self, name: str, config: EndpointConfig, api_key: str | None) -> None:
        self.name = name
        self.config = config
        timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(  # the key on every request: /props and /tokenize too
            base_url=server_root(config.base_url), timeout=timeout, headers=auth
        )
        self.openai = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=api_key or "not-needed",
            max_retries=config.max_retries,
            # The one transport: the SDK sends absolute URLs on it. openai 3 types the client
            # as httpx2's and takes httpx's as well (openai/_httpx2.py, `legacy` clients).
            http_client=self.http,  # type: ignore[arg-type]
        )
        self.chat_url = config.base_url.rstrip("/") + "/chat/completions"

    async def aclose(self) -> None:
        await self.http.aclose()

    def _request(
        self,
        model: str,
        messages: list[Message],
        temperature: float,
        max_tokens: int,
        extra: dict[str, Any],
        *,
        num_ctx: int | None,
        stream: bool,
    ) -> tuple[str, dict[str, Any]]:
        """(URL, body) of a chat request in the server's protocol (see the class docstring)."""
        if num_ctx is not None:
            body = chat_body(
                model,
                messages,
                num_ctx=num_ctx,
                temperature=temperature,
                max_tokens=max_tokens,
                stream=stream,
                extra=extra,
            )
            return "/api/chat", body
        body = {
            "model": model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            **({"stream": True, "stream_options": {"include_usage": True}} if stream else {}),
            **extra,
        }
        return self.chat_url, body

    async def _post_checked(
        self, url: str, body: dict[str, Any], *, stream: bool
    ) -> httpx.Response:
        """POST (retried); an error answer, read whole, becomes a typed error."""
        response = await self.post(url, body, stream=stream)
        if response.is_error:
            try:
                await response.aread()
            finally:
                await response.aclose()
            raise status_error(self.name, response.status_code, response.text)
        return response

    @asynccontextmanager
    async def open_stream(
        self,
        model: str,
        messages: list[Message],
        temperature: float,
        max_tokens: int,
        options: dict[str, Any],
        deadline: float,
        *,
        num_ctx: int | None,
    ) -> AsyncIterator[AsyncIterator[StreamPiece]]:
        """Start a streamed answer (within `deadline`); yields its pieces."""
        url, body = self._request(
            model, messages, temperature, max_tokens, options, num_ctx=num_ctx, stream=True
        )
        async with asyncio.timeout(remaining(deadline)):
            response = await self._post_checked(url, body, stream=True)
        try:
            if num_ctx is not None:
                yield stream_pieces(response.aiter_lines())
            else:
                yield openai_pieces(self.name, sse_data(response.aiter_lines()))
        finally:
            await response.aclose()

    async def complete(
        self,
        model: str,
        messages: list[Message],
        temperature: float,
        max_tokens: int,
        extra: dict[str, Any] | None,
        *,
        num_ctx: int | None,
    ) -> tuple[str, str | None, Any]:
        """One whole answer: its text, finish reason and usage."""
        url, body = self._request(
            model, messages, temperature, max_tokens, extra or {}, num_ctx=num_ctx, stream=False
        )
        response = await self._post_checked(url, body, stream=False)
        answer = response.json()
        if num_ctx is not None:
            if not isinstance(answer, dict) or "error" in answer:
                raise ModelBadResponse(bad_answer(self.name), detail=response.text[:500])
            content, _, finish_reason, usage = piece_of(answer)
            return content or "", finish_reason, usage
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise ModelBadResponse(bad_answer(self.name), detail=response.text[:500])
        message = choices[0].get("message") or {}
        return message.get("content") or "", choices[0].get("finish_reason"), answer.get("usage")

    async def list_models(self) -> list[str]:
        page = await self.openai.models.list()
        return [m.id for m in page.data]

    async def post(self, url: str, body: dict[str, Any], *, stream: bool) -> httpx.Response:
        """POST a model request, retried as the openai SDK retries its own.

        Connection failures, 408, 409, 429 and 5xx answers are tried again up to
        `max_retries` times, with a doubling pause; the caller turns a final error answer
        into words. `url` is absolute or relative to the server's root.
        """
        request = self.http.build_request("POST", url, json=body)
        for attempt in range(self.config.max_retries + 1):
            last = attempt == self.config.max_retries
            try:
                response = await self.http.send(request, stream=stream)
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


async def openai_pieces(name: str, events: AsyncIterator[str]) -> AsyncIterator[StreamPiece]:
    """The pieces of an OpenAI-style event stream (usage comes in a last, choiceless chunk)."""
    async for data in events:
        chunk = json.loads(data)
        if not isinstance(chunk, dict) or chunk.get("error"):
            raise ModelBadResponse(bad_answer(name), detail=data[:500])
        choices = chunk.get("choices")
        if not choices:
            yield StreamPiece(None, None, None, chunk.get("usage"))
            continue
        delta = choices[0].get("delta") or {}
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        finish_reason = choices[0].get("finish_reason")
        yield StreamPiece(delta.get("content"), thought, finish_reason, chunk.get("usage"))


def server_root(base_url: str) -> str:
    """The server's root URL: the OpenAI base URL without its trailing /v1."""
    root = base_url.rstrip("/")
    return root.removesuffix("/v1")


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
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


def remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    return remaining
