"""Model server failures in words for the chat: one typed error per kind of failure.

Every way a call can fail (no connection, a timeout, an HTTP error answer, a body that
is not what was asked for) becomes a `MombotError` whose text a user can act on; the
detail goes to the log. The context-window error is its own type: the runner re-plans.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import openai

from brain.errors import (
    ContextTooLong,
    ModelBadResponse,
    ModelTimeout,
    ModelUnavailable,
    MombotError,
)


def bad_answer(name: str) -> str:
    return f"The model server '{name}' gave an answer I could not use."


def stopped_mid_answer(name: str) -> str:
    return f"The model server '{name}' stopped before finishing its answer."


def status_error(name: str, status: int, body: str) -> MombotError:
    """An HTTP error answer from the server, in words for the chat."""
    # OpenAI, vLLM: context_length_exceeded / "context length"; llama-server:
    # exceed_context_size_error / "exceeds the available context size"
    lowered = body.lower()
    if any(
        sign in lowered for sign in ("context_length_exceeded", "context length", "context size")
    ):
        text = "That conversation is too long for the model's context window."
        return ContextTooLong(text, detail=body)
    if status == 404:
        text = f"The model server '{name}' does not know that model."
    elif status == 429:
        text = f"The model server '{name}' is busy; try again soon."
    else:
        text = f"The model server '{name}' answered with an error (HTTP {status})."
    return ModelBadResponse(text, detail=body)


ANSWER_FAILURES = (httpx.HTTPError, openai.OpenAIError, OSError, ValueError, KeyError, TypeError)
"""What a model call can raise while it sends, waits and reads: the transport's and the SDK's
errors, the network's (OSError, with TimeoutError), and a body that is not what it should
be (not JSON, or JSON of the wrong shape). `translate` turns each into a typed error."""


def translate(name: str, exc: BaseException) -> MombotError:
    """Turn a transport or API failure into a typed error with a chat-friendly text."""
    if isinstance(exc, MombotError):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, openai.APITimeoutError, httpx.TimeoutException)):
        return ModelTimeout(f"The model server '{name}' did not answer in time.", detail=repr(exc))
    if isinstance(exc, openai.APIConnectionError):
        return ModelUnavailable(f"The model server '{name}' cannot be reached.", detail=repr(exc))
    if isinstance(exc, openai.APIStatusError):
        return status_error(name, exc.status_code, _error_text(exc))
    if isinstance(exc, (json.JSONDecodeError, openai.APIResponseValidationError, ValueError)):
        return ModelBadResponse(bad_answer(name), detail=repr(exc))
    if isinstance(exc, (httpx.HTTPError, OSError)):
        return ModelUnavailable(f"The model server '{name}' cannot be reached.", detail=repr(exc))
    return ModelBadResponse(bad_answer(name), detail=repr(exc))


def stream_failure(name: str, exc: BaseException, *, answering: bool) -> MombotError:
    """A streamed call's failure: a connection dropped after the server began its answer
    stopped mid-answer (it was reached, after all); a timeout stays a timeout (the builtin
    TimeoutError is an OSError)."""
    dropped = isinstance(exc, httpx.TransportError | OSError) and not isinstance(
        exc, TimeoutError | httpx.TimeoutException
    )
    if answering and dropped:
        return ModelUnavailable(stopped_mid_answer(name), detail=repr(exc))
    return translate(name, exc)


def _error_text(exc: openai.APIStatusError) -> str:
    try:
        return json.dumps(exc.body) if exc.body is not None else str(exc)
    except (TypeError, ValueError):
        return str(exc)
