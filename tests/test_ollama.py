"""Ollama endpoints speak Ollama's native /api/chat, so the context size goes with each request.

The fake server answers /api/chat as Ollama does (JSON lines, `thinking`, eval counts at
the end); the OpenAI-compatible path is never used for an Ollama endpoint.
"""

from __future__ import annotations

import base64

import pytest
from pydantic import BaseModel

from brain.brain import Brain
from brain.config import CharacterConfig, EndpointConfig
from brain.errors import ModelBadResponse, ModelTimeout
from brain.history.store import HistoryStore
from brain.messages import Attachment, Inbound
from brain.models.client import ModelClient, stream_text
from brain.models.usage import Usage
from tests.fake_openai import FakeOpenAIServer
from tests.helpers import RecordingOutbox, close_brain
from tests.test_attachments import png
from tests.test_llm import HELLO, OLLAMA_SHOW

PNG = b"\x89PNG\r\n\x1a\n-not-really-an-image"


def ollama(server: FakeOpenAIServer, **settings: object) -> ModelClient:
    return ModelClient("box", EndpointConfig(base_url=server.base_url, kind="ollama", **settings))


def chat_requests(server: FakeOpenAIServer) -> list[dict]:
    assert not [r for r in server.requests if r.path.startswith("/v1/")]
    return [r.body for r in server.requests if r.path == "/api/chat"]


@pytest.mark.parametrize(
    ("show", "configured", "num_ctx"),
    [
        (
            OLLAMA_SHOW,
            None,
            8192,
        ),  # no num_ctx in the model: mombot's default, below the trained 131072
        ({**OLLAMA_SHOW, "parameters": "num_ctx 16384"}, None, 16384),  # the model's own setting
        (OLLAMA_SHOW, 32768, 32768),  # config overrides both
        (
            {"model_info": {"llama.context_length": 4096}},
            None,
            4096,
        ),  # never beyond what it was trained for
    ],
)
async def test_every_request_carries_the_window_the_prompts_were_planned_for(
    fake_server: FakeOpenAIServer,
    show: dict,
    configured: int | None,
    num_ctx: int,
) -> None:
    fake_server.ollama_show = show
    client = ollama(fake_server, context_window=configured)
    assert await client.context_window("fake") == num_ctx
    await stream_text(client, "fake", HELLO)
    await client.chat("fake", HELLO)
    await client.aclose()
    streamed, whole = chat_requests(fake_server)
    assert streamed["stream"] is True and whole["stream"] is False
    for body in (streamed, whole):
        assert body["options"]["num_ctx"] == num_ctx
        assert body["messages"] == HELLO and body["model"] == "fake"


async def test_a_streamed_answer_with_thinking_usage_and_an_image(
    fake_server: FakeOpenAIServer,
) -> None:
    fake_server.ollama_show = OLLAMA_SHOW
    fake_server.behaviour.reply = "A red fox in the snow."
    fake_server.behaviour.reasoning = "Look at the colours first."
    usage: list[Usage] = []
    thoughts: list[str] = []
    client = ModelClient(
        "box", EndpointConfig(base_url=fake_server.base_url, kind="ollama"), on_usage=usage.append
    )
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    question = [
        {"role": "system", "content": "Describe images."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": data_url}},
            ],
        },
    ]
    pieces = [
        p
        async for p in client.stream_chat(
            "fake",
            question,
            max_tokens=99,
            temperature=0.3,
            on_reasoning=thoughts.append,
            reasoning="high",
        )
    ]
    await client.aclose()
    assert "".join(pieces) == "A red fox in the snow." and len(pieces) == 6
    assert thoughts == ["Look at the colours first."]  # folded, never in the reply
    (body,) = chat_requests(fake_server)
    assert body["messages"][1] == {
        "role": "user",
        "content": "What is this?",
        "images": [base64.b64encode(PNG).decode()],
    }
    assert body["think"] is True
    assert body["options"] == {"num_ctx": 8192, "temperature": 0.3, "num_predict": 99}
    (record,) = usage
    assert (record.prompt_tokens, record.completion_tokens) == (10, 6)  # Ollama's own counts


async def test_json_answers_use_ollamas_format_field(fake_server: FakeOpenAIServer) -> None:

    class Pet(BaseModel):
        name: str
        legs: int

    fake_server.behaviour.json_reply = '{"name": "Rex", "legs": 4}'
    client = ollama(fake_server, context_window=4096)
    assert await client.chat_json("fake", HELLO, Pet) == Pet(name="Rex", legs=4)
    await client.aclose()
    (body,) = chat_requests(fake_server)
    assert body["format"] == Pet.model_json_schema() and body["stream"] is False


# Faults (500, 429, garbage, an error line mid-stream) are in tests/test_llm.py's table,
# run for both protocols.


async def test_an_unknown_model_is_named_as_such(fake_server: FakeOpenAIServer) -> None:
    client = ollama(fake_server, context_window=4096)
    with pytest.raises(ModelBadResponse) as caught:
        await stream_text(client, "missing", HELLO)
    await client.aclose()
    assert caught.value.user_message == "The model server 'box' does not know that model."


async def test_retries_are_bounded_and_a_hang_times_out(fake_server: FakeOpenAIServer) -> None:
    fake_server.behaviour.mode = "http500"
    client = ollama(fake_server, context_window=4096, max_retries=2)
    with pytest.raises(ModelBadResponse):
        await stream_text(client, "fake", HELLO)
    assert len(chat_requests(fake_server)) == 3  # the first try and two retries
    fake_server.behaviour.mode = "hang"
    with pytest.raises(ModelTimeout):
        await client.chat("fake", HELLO, timeout_s=0.5)
    await client.aclose()


@pytest.mark.parametrize("capabilities", [["completion", "vision"], ["completion"]])
async def test_vision_unset_in_config_is_taken_from_ollamas_capabilities(
    fake_server: FakeOpenAIServer, sqlite_url: str, capabilities: list[str]
) -> None:
    fake_server.ollama_show = {**OLLAMA_SHOW, "capabilities": capabilities}
    fake_server.behaviour.reply = "A small red square."
    clients = {
        "box": ollama(fake_server),
        "plain": ModelClient(
            "plain", EndpointConfig(base_url=fake_server.base_url, context_window=4096)
        ),
    }
    characters = [
        CharacterConfig(name="eye", endpoint="box", model="fake"),  # vision unset
        CharacterConfig(name="mom", endpoint="plain", model="fake"),
    ]
    brain = Brain(characters=characters, clients=clients, history=HistoryStore(sqlite_url))
    outbox = RecordingOutbox()
    await brain.handle(
        Inbound(
            "t",
            "c",
            "u",
            "ann",
            "What is this?",
            attachments=(Attachment("shape.png", "image/png", png()),),
        ),
        outbox,
    )
    await close_brain(brain)
    sent_images = [
        m.get("images")
        for r in fake_server.requests
        if r.path == "/api/chat"
        for m in r.body["messages"]
        if m.get("images")
    ]
    if "vision" in capabilities:
        assert len(sent_images) == 1 and base64.b64decode(sent_images[0][0]).startswith(b"\x89PNG")
        assert outbox.errors == [] and "can't look at images" not in outbox.text
    else:  # the server says no, so nobody can look
        assert sent_images == []
        assert "no character with vision is configured" in outbox.text
    # a plain OpenAI server says nothing about vision: its character never gets the image
    assert not [
        r
        for r in fake_server.requests
        if r.path.startswith("/v1/chat")
        and any(isinstance(m["content"], list) for m in r.body["messages"])
    ]
