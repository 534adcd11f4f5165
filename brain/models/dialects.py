"""How each kind of model server is spoken to, where it differs from plain OpenAI.

Every server speaks OpenAI's chat API, but each asks for structured output, switches
reasoning, counts tokens and tells its context size in its own way (the README's table).
One `Dialect` per `endpoints.<name>.kind` owns those differences, so the model client
has no `if kind == ...` of its own: it asks its dialect. Ollama is the one server spoken
to in its native protocol (see `brain/models/ollama.py` for why): `native_chat` says so.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel

from brain.models.ollama import ollama_model_info
from brain.models.types import ModelInfo

# llama-server: a run of at least this many prompt tokens found elsewhere in the slot's
# cache is moved into place (a KV shift) instead of read again. Cutting old turns from the
# history's start keeps the rest this way; 64 is well above chance repeats.
CACHE_REUSE_MIN_TOKENS = 64


class Dialect:
    """A plain OpenAI-compatible server (OpenAI itself, LiteLLM, LM Studio...)."""

    native_chat = False  # True: chat in the server's own protocol, not /v1/chat/completions
    has_tokenizer = False  # the server counts tokens for us (else a safe estimate)
    parallel = 8  # requests sent at once unless `max_parallel` says otherwise

    def reasoning_options(self, setting: str) -> dict[str, Any]:
        """A character's `reasoning` setting in this server's words ("default": nothing)."""
        if setting == "default":
            return {}
        if setting == "off":  # OpenAI-style servers have no off switch: the least effort
            return {"reasoning_effort": "low"}
        return {"reasoning_effort": setting}

    def pin_options(self, slot: int) -> dict[str, Any]:
        """The request fields that send it to server slot `slot` (servers that tell their
        slots in `ModelInfo.slots`)."""
        return {}

    def structured(self, schema: type[BaseModel], json_schema: dict[str, Any]) -> dict[str, Any]:
        """The request fields that constrain the answer to `json_schema`."""
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": schema.__name__, "schema": json_schema},
            }
        }

    async def count_tokens(self, http: httpx.AsyncClient, model: str, text: str) -> int | None:
        """The server's own count (raises httpx errors), or None when it has no tokenizer."""
        return None

    async def model_info(self, http: httpx.AsyncClient, model: str) -> ModelInfo:
        """What the server says of the model; `ModelInfo(0, "")` when it keeps no figure.

        Raises (httpx errors, KeyError, ValueError) when it could not be asked: worth a retry.
        """
        return ModelInfo(0, "")


class TemplateSwitch(Dialect):
    """Servers that pass `chat_template_kwargs` to the template (Qwen3's enable_thinking)."""

    def reasoning_options(self, setting: str) -> dict[str, Any]:
        if setting == "default":
            return {}
        return {"chat_template_kwargs": {"enable_thinking": setting != "off"}}


class LlamaCpp(TemplateSwitch):
    """llama.cpp's own llama-server: its slots are pinned per character (`brain.models.slots`)."""

    has_tokenizer = True

    async def count_tokens(self, http: httpx.AsyncClient, model: str, text: str) -> int | None:
        response = await http.post("/tokenize", json={"content": text})
        response.raise_for_status()
        return len(response.json()["tokens"])

    async def model_info(self, http: httpx.AsyncClient, model: str) -> ModelInfo:
        response = await http.get("/props")
        response.raise_for_status()
        props = response.json()
        n_ctx = props.get("default_generation_settings", {}).get("n_ctx") or props["n_ctx"]
        slots = props.get("total_slots")
        return ModelInfo(int(n_ctx), "server: /props n_ctx", slots=int(slots) if slots else None)

    def pin_options(self, slot: int) -> dict[str, Any]:
        return {"id_slot": slot, "cache_prompt": True, "n_cache_reuse": CACHE_REUSE_MIN_TOKENS}


class LlamaCppPython(TemplateSwitch):
    """llama-cpp-python's server: one request at a time, no /props (config gives the window)."""

    has_tokenizer = True
    parallel = 1  # a second request may cut a running stream off: queue them here instead

    def structured(self, schema: type[BaseModel], json_schema: dict[str, Any]) -> dict[str, Any]:
        # It accepts only text/json_object; json_schema is refused with HTTP 500.
        return {"response_format": {"type": "json_object", "schema": json_schema}}

    async def count_tokens(self, http: httpx.AsyncClient, model: str, text: str) -> int | None:
        response = await http.post("/extras/tokenize/count", json={"input": text, "model": model})
        response.raise_for_status()
        return int(response.json()["count"])


class Vllm(TemplateSwitch):
    """vLLM: its context size is `max_model_len` in /v1/models."""

    async def model_info(self, http: httpx.AsyncClient, model: str) -> ModelInfo:
        response = await http.get("/v1/models")
        response.raise_for_status()
        for entry in response.json().get("data", []):
            if entry.get("id") == model and entry.get("max_model_len"):
                return ModelInfo(int(entry["max_model_len"]), "server: /v1/models max_model_len")
        return ModelInfo(0, "")


class Koboldcpp(Dialect):
    """koboldcpp: its own tokenizer and context endpoints."""

    has_tokenizer = True

    async def count_tokens(self, http: httpx.AsyncClient, model: str, text: str) -> int | None:
        response = await http.post("/api/extra/tokencount", json={"prompt": text})
        response.raise_for_status()
        return int(response.json()["value"])

    async def model_info(self, http: httpx.AsyncClient, model: str) -> ModelInfo:
        response = await http.get("/api/extra/true_max_context_length")
        response.raise_for_status()
        return ModelInfo(
            int(response.json()["value"]), "server: /api/extra/true_max_context_length"
        )


class Ollama(Dialect):
    """Ollama, in its native /api/chat protocol (see brain/models/ollama.py)."""

    native_chat = True

    def reasoning_options(self, setting: str) -> dict[str, Any]:
        return {} if setting == "default" else {"think": setting != "off"}

    def structured(self, schema: type[BaseModel], json_schema: dict[str, Any]) -> dict[str, Any]:
        return {"format": json_schema}

    async def model_info(self, http: httpx.AsyncClient, model: str) -> ModelInfo:
        response = await http.post("/api/show", json={"model": model})
        response.raise_for_status()
        return ollama_model_info(response.json())


DIALECTS: dict[str, Dialect] = {
    "openai": Dialect(),
    "llama.cpp": LlamaCpp(),
    "llama-cpp-python": LlamaCppPython(),
    "vllm": Vllm(),
    "koboldcpp": Koboldcpp(),
    "ollama": Ollama(),
}


def dialect_for(kind: str) -> Dialect:
    """The dialect of an endpoint's `kind` (config validation keeps it to the known ones)."""
    return DIALECTS.get(kind, DIALECTS["openai"])
