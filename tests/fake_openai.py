"""A fake OpenAI-compatible server for latency modelling and fault injection.

Runs uvicorn + Starlette on a loopback port in its own thread. Each request is
answered according to `behaviour` (which tests may change between calls) and
recorded with its start and end times, so tests can prove overlap or retries.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bot.embedded import free_port


@dataclass
class Behaviour:
    """How the server answers. mode: ok, hang, http500, http429, garbage, cut_stream (a broken
    event mid-stream), drop_stream (the connection dropped mid-stream), or too_long_once (one
    HTTP 400 "context length exceeded", then ok)."""

    mode: str = "ok"
    reply: str = "Hello from the fake server."
    # Sent before the reply in `reasoning_content` deltas (as llama.cpp's and vLLM's parsers do).
    reasoning: str = ""
    json_reply: str | None = None
    request_delay_s: float = 0.0
    token_delay_s: float = 0.0
    # Computes the reply from the request body (e.g. a vote that depends on the candidates).
    reply_for: Callable[[dict[str, Any]], str] | None = None
    # Why the reply ended: "stop", or "length" for one cut by max_tokens.
    finish_reason: str = "stop"
    # While not set, every chat request waits (a reply in progress for as long as a test needs).
    hold: threading.Event | None = None


def long_slow_reply(words: int = 400, delay_s: float = 0.05) -> Behaviour:
    """A streamed reply that takes words x delay_s (20 s by default): time to cut it off."""
    return Behaviour(reply=" ".join(f"word{i}" for i in range(words)), token_delay_s=delay_s)


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    started: float
    ended: float = 0.0
    words_sent: int = 0  # of a streamed answer: tests wait on it instead of sleeping


@dataclass
class FakeOpenAIServer:
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0
    # What the metadata endpoints of other server software answer (None: 404, as a plain
    # OpenAI server): llama.cpp /props, Ollama /api/show, koboldcpp's context length, and
    # vLLM's max_model_len in /v1/models.
    props: dict[str, Any] | None = None
    ollama_show: dict[str, Any] | None = None
    kobold_context: int | None = None
    max_model_len: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        self.port = free_port()
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/props", self._props, methods=["GET"]),
                Route("/api/show", self._ollama_show, methods=["POST"]),
                Route("/api/chat", self._ollama_chat, methods=["POST"]),
                Route("/api/extra/true_max_context_length", self._kobold_context, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)

    async def _models(self, request: Request) -> Response:
        model: dict[str, Any] = {"id": "fake", "object": "model"}
        if self.max_model_len:
            model["max_model_len"] = self.max_model_len
        return JSONResponse({"object": "list", "data": [model]})

    async def _props(self, request: Request) -> Response:
        return _or_404(self.props)

    async def _ollama_show(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(Recorded(request.url.path, body, time.monotonic(), time.monotonic()))
        return _or_404(self.ollama_show)

    async def _kobold_context(self, request: Request) -> Response:
        return _or_404(None if self.kobold_context is None else {"value": self.kobold_context})

    async def _arrive(self, request: Request) -> tuple[dict[str, Any], Recorded]:
        """Record a chat request, then hang or wait as the behaviour says."""
        body = await request.json()
        record = Recorded(request.url.path, body, time.monotonic())
        self.requests.append(record)
        if self.behaviour.mode == "hang":
            await asyncio.sleep(3600)
        if self.behaviour.hold is not None:
            await asyncio.to_thread(self.behaviour.hold.wait, 120)
        await asyncio.sleep(self.behaviour.request_delay_s)
        return body, record

    async def _chat(self, request: Request) -> Response:
        body, record = await self._arrive(request)
        b = self.behaviour
        if b.mode in ("http500", "http429"):
            record.ended = time.monotonic()
            status = 500 if b.mode == "http500" else 429
            return JSONResponse({"error": {"message": "injected failure"}}, status_code=status)
        if b.mode == "garbage":
            record.ended = time.monotonic()
            return Response("<html>this is not json", media_type="application/json")
        if b.mode == "too_long_once":  # the server counted more tokens than the client did
            b.mode, record.ended = "ok", time.monotonic()
            message = "This model's maximum context length is 8192 tokens (context_length_exceeded)"
            return JSONResponse({"error": {"message": message}}, status_code=400)
        text = self._reply_text(body)
        if not body.get("stream"):
            await asyncio.sleep(b.token_delay_s * len(text.split()))
            record.ended = time.monotonic()
            return JSONResponse(_completion(text, b.finish_reason))
        return StreamingResponse(self._stream(text, record), media_type="text/event-stream")

    def _reply_text(self, body: dict[str, Any]) -> str:
        b = self.behaviour
        if b.reply_for is not None:
            return b.reply_for(body)
        if b.json_reply is not None and ("response_format" in body or "format" in body):
            return b.json_reply
        return b.reply

    async def _ollama_chat(self, request: Request) -> Response:
        """Ollama's native /api/chat: JSON lines, `thinking` for reasoning, counts at the end."""
        body, record = await self._arrive(request)
        b = self.behaviour
        if body["model"] == "missing":
            return JSONResponse({"error": "model 'missing' not found"}, 404)
        if b.mode in ("http500", "http429"):
            record.ended = time.monotonic()
            return JSONResponse({"error": "injected failure"}, 500 if b.mode == "http500" else 429)
        if b.mode == "garbage":
            record.ended = time.monotonic()
            return Response("<html>this is not json", media_type="application/x-ndjson")
        text = self._reply_text(body)
        done = {
            "model": body["model"],
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": b.finish_reason,
            "prompt_eval_count": 10,
            "eval_count": len(text.split()),
        }
        if not body.get("stream", True):
            record.ended = time.monotonic()
            return JSONResponse(
                {
                    **done,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "thinking": b.reasoning or None,
                    },
                }
            )

        async def lines():
            for word in b.reasoning.split(" ") if b.reasoning else []:
                yield (
                    json.dumps(
                        {
                            "message": {"role": "assistant", "content": "", "thinking": word + " "},
                            "done": False,
                        }
                    )
                    + "\n"
                )
            words = text.split(" ")
            for i, word in enumerate(words):
                if b.mode == "cut_stream" and i == len(words) // 2:
                    record.ended = time.monotonic()
                    yield '{"error": "an error was encountered while running the model"}\n'
                    return
                await asyncio.sleep(b.token_delay_s)
                piece = word if i == 0 else " " + word
                yield (
                    json.dumps({"message": {"role": "assistant", "content": piece}, "done": False})
                    + "\n"
                )
            record.ended = time.monotonic()
            yield json.dumps(done) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def _stream(self, text: str, record: Recorded):
        """The streamed answer; `record.ended` is set however it ends: finished, cut by the
        behaviour, or the client gone (a stopped reply lets its call go)."""
        try:
            async for piece in self._pieces(text, record):
                yield piece
        finally:
            record.ended = record.ended or time.monotonic()

    async def _pieces(self, text: str, record: Recorded):
        for word in self.behaviour.reasoning.split(" ") if self.behaviour.reasoning else []:
            chunk = {
                "object": "chat.completion.chunk",
                "id": "x",
                "created": 0,
                "model": "fake",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": None, "reasoning_content": word + " "},
                        "finish_reason": None,
                    }
                ],
            }
            yield f"data: {json.dumps(chunk)}\n\n"
        words = text.split(" ")
        for i, word in enumerate(words):
            if self.behaviour.mode == "cut_stream" and i == len(words) // 2:
                record.ended = time.monotonic()
                yield "data: {broken json\n\n"
                return
            if self.behaviour.mode == "drop_stream" and i == len(words) // 2:
                record.ended = time.monotonic()
                raise ConnectionAbortedError("the server went away mid-answer")
            await asyncio.sleep(self.behaviour.token_delay_s)
            piece = word if i == 0 else " " + word
            chunk = {
                "object": "chat.completion.chunk",
                "id": "x",
                "created": 0,
                "model": "fake",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            yield f"data: {json.dumps(chunk)}\n\n"
            record.words_sent += 1
        done = {
            "object": "chat.completion.chunk",
            "id": "x",
            "created": 0,
            "model": "fake",
            "choices": [{"index": 0, "delta": {}, "finish_reason": self.behaviour.finish_reason}],
        }
        yield f"data: {json.dumps(done)}\n\n"
        record.ended = time.monotonic()
        yield "data: [DONE]\n\n"


def _or_404(payload: dict[str, Any] | None) -> Response:
    return (
        JSONResponse(payload) if payload is not None else JSONResponse({"detail": "Not Found"}, 404)
    )


def _completion(text: str, finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 10},
    }


def system_of(body: dict[str, Any]) -> str:
    return next((m["content"] for m in body["messages"] if m["role"] == "system"), "")


def last_user(body: dict[str, Any]) -> Any:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
