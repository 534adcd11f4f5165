"""Ollama's native chat API, used for Ollama endpoints instead of its OpenAI-compatible one.

Ollama cuts every prompt at the context size it loaded the model with: the model's
`num_ctx` parameter, else its server default (2048 or 4096 tokens, depending on the
version), silently and from the front. Only the native `/api/chat` accepts `num_ctx` per
request; `/v1/chat/completions` ignores it in every place (ollama/ollama#16814, still
open). So mombot speaks the native protocol to Ollama and sends the window it plans its
prompts for with each request. The native answer is a stream of JSON lines, not events.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from brain.models.types import ModelInfo, StreamPiece

# The window mombot asks Ollama for when neither config nor the model sets one: enough
# for a chat history, small enough for the KV cache of a small model on a small GPU.
OLLAMA_REQUEST_CONTEXT = 8192


def ollama_model_info(show: dict[str, Any]) -> ModelInfo:
    """From `/api/show`: the window mombot will request, the trained maximum, and vision.

    The model's own `num_ctx` parameter wins; else mombot asks for OLLAMA_REQUEST_CONTEXT
    tokens (never more than the model was trained for). Either way the figure is sent as
    `num_ctx` with each request, so Ollama runs with exactly the window the prompts fit.
    """
    trained = next(
        (
            int(v)
            for k, v in (show.get("model_info") or {}).items()
            if k.endswith(".context_length")
        ),
        None,
    )
    num_ctx = None
    for line in (show.get("parameters") or "").splitlines():
        name, _, value = line.strip().partition(" ")
        if name == "num_ctx":
            num_ctx = int(value.strip())
    capabilities = show.get("capabilities")
    vision = "vision" in capabilities if isinstance(capabilities, list) else None
    if num_ctx:
        return ModelInfo(
            num_ctx, "server: /api/show num_ctx, sent with each request", vision, trained
        )
    window = min(trained or OLLAMA_REQUEST_CONTEXT, OLLAMA_REQUEST_CONTEXT)
    return ModelInfo(
        window, "mombot's default for Ollama, sent as num_ctx with each request", vision, trained
    )


def chat_body(
    model: str,
    messages: list[dict[str, Any]],
    *,
    num_ctx: int,
    temperature: float,
    max_tokens: int,
    stream: bool,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One `/api/chat` request; `extra` holds top-level fields such as `think` or `format`."""
    return {
        "model": model,
        "messages": [native_message(m) for m in messages],
        "stream": stream,
        "options": {"num_ctx": num_ctx, "temperature": temperature, "num_predict": max_tokens},
        **(extra or {}),
    }


def native_message(message: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat message in Ollama's shape: text content plus base64 `images`."""
    content = message.get("content") or ""
    if isinstance(content, str):
        return {"role": message["role"], "content": content}
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        if part.get("type") == "text":
            texts.append(part.get("text", ""))
        elif part.get("type") == "image_url":
            url = part["image_url"]["url"]
            images.append(url.split(",", 1)[1] if url.startswith("data:") else url)
    native: dict[str, Any] = {"role": message["role"], "content": "\n".join(texts)}
    if images:
        native["images"] = images
    return native


def piece_of(line: dict[str, Any]) -> StreamPiece:
    """One streamed line (or a whole non-streamed answer) as content, reasoning, end, usage."""
    message = line.get("message") or {}
    if not line.get("done"):
        return StreamPiece(message.get("content"), message.get("thinking"), None, None)
    usage = {
        "prompt_tokens": line.get("prompt_eval_count") or 0,
        "completion_tokens": line.get("eval_count") or 0,
    }
    return StreamPiece(
        message.get("content"), message.get("thinking"), line.get("done_reason") or "stop", usage
    )


async def stream_pieces(lines: AsyncIterator[str]) -> AsyncIterator[StreamPiece]:
    """The pieces of a streamed answer; an `error` line ends it with ValueError."""
    async for text in lines:
        if not text.strip():
            continue
        line = json.loads(text)
        if not isinstance(line, dict) or "error" in line:
            raise ValueError(f"Ollama stream error: {text[:500]}")
        yield piece_of(line)
