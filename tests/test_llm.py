"""The model client layer against the real llama.cpp server, and against injected faults."""

from __future__ import annotations

import asyncio
import itertools
import time
from functools import partial
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from bot.embedded import EmbeddedConfig, EmbeddedServer, free_port
from brain.config import EndpointConfig
from brain.errors import ContextTooLong, ModelBadResponse, ModelTimeout, ModelUnavailable
from brain.models.client import ModelClient, stream_text
from brain.models.tokens import estimate_tokens
from brain.models.usage import Usage
from tests.conftest import MODEL, TEST_N_CTX, TEST_SLOTS
from tests.fake_openai import Behaviour, FakeOpenAIServer

HELLO = [{"role": "user", "content": "Say hello."}]


async def test_streams_a_real_answer_and_records_usage(llama_endpoint: EndpointConfig) -> None:
    usage: list[Usage] = []
    client = ModelClient("local", llama_endpoint, on_usage=usage.append)
    pieces = [p async for p in client.stream_chat(MODEL, HELLO, max_tokens=64, temperature=0)]
    await client.aclose()
    assert len(pieces) > 1
    assert "".join(pieces).strip()
    assert len(usage) == 1
    record = usage[0]
    assert record.endpoint == "local" and record.model == MODEL
    # The server's own usage: at most one streamed piece per token (the first characters of
    # a model not yet known to reason or not are held back a moment and come as one piece).
    assert len(pieces) <= record.completion_tokens <= 64
    assert record.prompt_tokens > 0 and record.cached_tokens is not None
    assert record.first_token_s is not None and 0 < record.first_token_s < record.seconds
    assert record.tokens_per_s > 0


async def test_the_temperature_and_length_asked_for_are_sent(
    fake_server: FakeOpenAIServer,
) -> None:
    """What a call asks for reaches the server as given (whether the server then repeats
    itself at temperature 0 is the server's business, not mombot's)."""
    client = ModelClient("f", EndpointConfig(base_url=fake_server.base_url, max_retries=0))
    await client.chat("fake", HELLO, max_tokens=12, temperature=0)
    await client.chat("fake", HELLO, max_tokens=7, temperature=0.9)
    sent = [(r.body["temperature"], r.body["max_tokens"]) for r in fake_server.requests]
    assert sent == [(0, 12), (0.9, 7)]
    await client.aclose()


class Pet(BaseModel):
    name: str
    legs: int


async def test_json_schema_output_is_validated(llama_client: ModelClient) -> None:
    messages = [{"role": "user", "content": "Describe a cat as JSON with name and legs."}]
    pet = await llama_client.chat_json(MODEL, messages, Pet, max_tokens=64)
    assert isinstance(pet, Pet)
    assert isinstance(pet.legs, int)


async def test_token_count_comes_from_the_server(llama_client: ModelClient) -> None:
    assert await llama_client.count_tokens(MODEL, "Hello world") == 2
    long_text = "tokenization " * 50
    count = await llama_client.count_tokens(MODEL, long_text)
    assert 50 <= count <= 150
    assert count < estimate_tokens(long_text)  # the estimate is on the safe side


async def test_overlong_prompt_is_a_typed_error(llama_client: ModelClient) -> None:
    messages = [{"role": "user", "content": "word " * 800}]
    with pytest.raises(ContextTooLong) as caught:
        await llama_client.chat(MODEL, messages, max_tokens=16)
    assert "context window" in caught.value.user_message
    # llama-server names it "exceed_context_size_error", streamed too: the same typed error,
    # so the runner's retry with a smaller prompt happens on it
    with pytest.raises(ContextTooLong):
        await stream_text(llama_client, MODEL, messages, max_tokens=16)


async def test_server_down_is_model_unavailable() -> None:
    config = EndpointConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    client = ModelClient("gone", config)
    with pytest.raises(ModelUnavailable) as caught:
        await client.chat("x", HELLO)
    await client.aclose()
    assert caught.value.user_message == "The model server 'gone' cannot be reached."


def _client(server: FakeOpenAIServer, **kwargs: object) -> ModelClient:
    config = EndpointConfig(base_url=server.base_url, max_retries=0, **kwargs)  # type: ignore[arg-type]
    return ModelClient("fake", config)


async def test_a_streamed_call_s_deadline_starts_when_it_is_sent_not_while_it_waits_its_turn(
    fake_server: FakeOpenAIServer,
) -> None:
    """Issue 33 defect 5: the wait for a free request slot counted against the deadline."""
    fake_server.behaviour = Behaviour(reply="fine", request_delay_s=0.8)  # each answer: 0.8 s
    client = _client(fake_server, max_parallel=1)  # one request at a time: the second waits
    first, second = (stream_text(client, "fake", HELLO, timeout_s=1.2) for _ in range(2))
    assert await asyncio.gather(first, second) == ["fine", "fine"]  # 1.6 s in all, 0.8 each
    await client.aclose()


async def test_hanging_server_times_out(fake_server: FakeOpenAIServer) -> None:
    fake_server.behaviour.mode = "hang"
    client = _client(fake_server)
    started = time.monotonic()
    with pytest.raises(ModelTimeout):
        await client.chat("fake", HELLO, timeout_s=0.5)
    assert time.monotonic() - started < 3
    await client.aclose()


async def test_slow_stream_is_cut_at_the_total_deadline(fake_server: FakeOpenAIServer) -> None:
    fake_server.behaviour.token_delay_s = 0.2
    fake_server.behaviour.reply = "one two three four five six seven eight nine ten"
    client = _client(fake_server)
    started = time.monotonic()
    with pytest.raises(ModelTimeout):
        await stream_text(client, "fake", HELLO, timeout_s=0.7)
    assert time.monotonic() - started < 2
    await client.aclose()


UNUSABLE = "The model server 'fake' gave an answer I could not use."
UNFINISHED = "The model server 'fake' stopped before finishing its answer."


@pytest.mark.parametrize(
    ("kind", "mode", "streamed", "text"),
    [
        ("openai", "http500", False, "The model server 'fake' answered with an error (HTTP 500)."),
        ("openai", "http500", True, "The model server 'fake' answered with an error (HTTP 500)."),
        ("openai", "http429", False, "The model server 'fake' is busy; try again soon."),
        ("openai", "http429", True, "The model server 'fake' is busy; try again soon."),
        ("openai", "garbage", False, UNUSABLE),
        ("openai", "garbage", True, UNFINISHED),  # no events at all: the stream never finished
        ("openai", "cut_stream", True, UNUSABLE),  # a broken event in the middle of a stream
        # Ollama's native /api/chat (JSON lines; a failure mid-stream comes as an `error` line)
        ("ollama", "http500", False, "The model server 'fake' answered with an error (HTTP 500)."),
        ("ollama", "http500", True, "The model server 'fake' answered with an error (HTTP 500)."),
        ("ollama", "http429", True, "The model server 'fake' is busy; try again soon."),
        ("ollama", "garbage", False, UNUSABLE),
        ("ollama", "garbage", True, UNUSABLE),
        ("ollama", "cut_stream", True, UNUSABLE),
    ],
)
async def test_faults_become_typed_errors(
    fake_server: FakeOpenAIServer, kind: str, mode: str, streamed: bool, text: str
) -> None:
    fake_server.behaviour.mode = mode
    client = _client(fake_server, kind=kind, context_window=4096)
    call = partial(stream_text, client) if streamed else client.chat
    with pytest.raises(ModelBadResponse) as caught:
        await call("fake", HELLO)
    await client.aclose()
    assert caught.value.user_message == text


@pytest.mark.parametrize("kind", ["openai", "llama.cpp"])
async def test_a_stream_dropped_mid_answer_says_so_not_that_the_server_cannot_be_reached(
    fake_server: FakeOpenAIServer, kind: str
) -> None:
    """Issue 33 defect 9: the server answered, then dropped the connection mid-stream."""
    fake_server.behaviour = Behaviour(reply="one two three four five six", mode="drop_stream")
    client = _client(fake_server, kind=kind, context_window=4096)
    with pytest.raises(ModelUnavailable) as caught:
        await stream_text(client, "fake", HELLO)
    await client.aclose()
    assert caught.value.user_message == UNFINISHED


async def test_invalid_json_answer_is_a_typed_error(fake_server: FakeOpenAIServer) -> None:
    fake_server.behaviour.json_reply = '{"name": "Rex", "legs": "many"}'
    client = _client(fake_server)
    with pytest.raises(ModelBadResponse):
        await client.chat_json("fake", HELLO, Pet)
    await client.aclose()


async def test_retries_are_bounded(fake_server: FakeOpenAIServer) -> None:
    fake_server.behaviour.mode = "http500"
    client = ModelClient("fake", EndpointConfig(base_url=fake_server.base_url, max_retries=2))
    with pytest.raises(ModelBadResponse):
        await client.chat("fake", HELLO)
    await client.aclose()
    assert len(fake_server.requests) == 3  # the first try and two retries


async def test_llama_cpp_python_requests_are_queued_one_at_a_time(
    fake_server: FakeOpenAIServer,
) -> None:
    import asyncio

    fake_server.behaviour.request_delay_s = 0.2
    client = _client(fake_server, kind="llama-cpp-python")
    await asyncio.gather(*(client.chat("fake", HELLO) for _ in range(3)))
    await client.aclose()
    spans = sorted((r.started, r.ended) for r in fake_server.requests)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


OLLAMA_SHOW = {
    "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
    "capabilities": ["completion", "vision"],
}


@pytest.mark.parametrize(
    ("kind", "setup", "window", "source", "vision"),
    [
        (
            "llama.cpp",
            {"props": {"default_generation_settings": {"n_ctx": 8192}}},
            8192,
            "/props n_ctx",
            None,
        ),
        ("vllm", {"max_model_len": 32768}, 32768, "max_model_len", None),
        ("koboldcpp", {"kobold_context": 12288}, 12288, "true_max_context_length", None),
        (
            "ollama",
            {"ollama_show": {**OLLAMA_SHOW, "parameters": 'stop "<|eot|>"\nnum_ctx 16384'}},
            16384,
            "num_ctx",
            True,
        ),
        ("ollama", {"ollama_show": OLLAMA_SHOW}, 8192, "mombot's default for Ollama", True),
        ("openai", {}, 2048, "default", None),
    ],
)
async def test_the_context_size_is_asked_from_each_kind_of_server(
    fake_server: FakeOpenAIServer,
    kind: str,
    setup: dict,
    window: int,
    source: str,
    vision: bool | None,
) -> None:
    for name, value in setup.items():
        setattr(fake_server, name, value)
    client = ModelClient("s", EndpointConfig(base_url=fake_server.base_url, kind=kind))
    info = await client.model_info("fake")
    assert (info.context_window, info.vision) == (window, vision) and source in info.source
    assert await client.context_window("fake") == window
    if kind == "ollama":
        assert info.trained_context == 131072
        assert [r.body for r in fake_server.requests if r.path == "/api/show"] == [
            {"model": "fake"}
        ]
    await client.model_info("fake")  # cached: asked once
    assert len([r for r in fake_server.requests if r.path == "/api/show"]) <= 1
    # the config value overrides what the server says, and then nothing is asked
    fixed = ModelClient(
        "s", EndpointConfig(base_url=fake_server.base_url, kind=kind, context_window=999)
    )
    assert await fixed.context_window("fake") == 999
    assert (await fixed.model_info("fake")).source == "config"
    await client.aclose()
    await fixed.aclose()


async def test_llama_server_tells_its_window_per_slot_and_its_slots(
    llama_endpoint: EndpointConfig,
) -> None:
    """The real llama-server's /props: the window of one slot (not the whole KV cache)."""
    unset = ModelClient("local", llama_endpoint.model_copy(update={"context_window": None}))
    info = await unset.model_info(MODEL)
    assert (info.context_window, info.source) == (TEST_N_CTX, "server: /props n_ctx")
    assert info.slots == TEST_SLOTS
    await unset.aclose()


async def test_the_embedded_server_asks_for_its_key_and_the_client_sends_it_everywhere(
    tmp_path: Path,
) -> None:
    """mombot's own llama-server refuses requests without the key made at its start (any web
    page can reach loopback); a client with the key gets the window, the slots and the
    tokenizer from it, not stand-ins."""
    server = EmbeddedServer(EmbeddedConfig(n_ctx=256, parallel=2), tmp_path / "server.log")
    await server.start()
    client = ModelClient(
        "keyed", EndpointConfig(base_url=server.base_url, kind="llama.cpp"), api_key=server.api_key
    )
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            assert (
                await http.post("/chat/completions", json={"messages": HELLO})
            ).status_code == 401
            assert (await http.get("/models")).status_code == 401
        info = await client.model_info(MODEL)
        assert (info.context_window, info.slots) == (256, 2)
        assert await client.count_tokens(MODEL, "Hello world") == 2  # an estimate says 4
        assert await client.chat(MODEL, HELLO, max_tokens=4, temperature=0)
    finally:
        await client.aclose()
        await server.stop()


async def test_llama_cpp_python_has_no_props_so_its_window_comes_from_config(
    fake_server: FakeOpenAIServer,
) -> None:
    """llama-cpp-python's server has no /props (the fake answers 404, as it does)."""
    unset = _client(fake_server, kind="llama-cpp-python")
    info = await unset.model_info(MODEL)
    assert (info.context_window, info.source) == (2048, "default")  # and a warning in the log
    assert info.slots is None
    await unset.aclose()


def test_check_prints_what_each_endpoint_said(
    fake_server: FakeOpenAIServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bot.cli import main

    fake_server.ollama_show = {**OLLAMA_SHOW, "parameters": "num_ctx 16384"}
    config = tmp_path / "ollama.toml"
    config.write_text(
        f'[bot]\ndata_dir = "{tmp_path}"\n[endpoints.box]\nbase_url = "{fake_server.base_url}"\n'
        'kind = "ollama"\n[[characters]]\nname = "mom"\nendpoint = "box"\nmodel = "fake"\n'
        '[[characters]]\nname = "blind"\nendpoint = "box"\nmodel = "fake"\nvision = false\n'
    )
    assert main(["check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert (
        "character mom: box/fake, context 16384 tokens (server: /api/show num_ctx, sent with each "
        "request, trained for 131072)"
    ) in out
    assert "  vision: yes, from the server\ncharacter blind:" in out  # unset: taken from the server
    assert "note: the server says this model can see images, but vision = false" in out


async def test_a_failed_probe_is_asked_again_after_a_back_off(
    fake_server: FakeOpenAIServer,
) -> None:
    """Issue 17 item 8: a server that was down at the first probe is asked again once it is
    back (after 5 s, then doubling), rather than the 2048-token stand-in and `vision=None`
    staying for the life of the process."""
    now = [1000.0]
    client = ModelClient("s", EndpointConfig(base_url=fake_server.base_url, kind="ollama"))
    client.facts.clock = lambda: now[0]
    shows = lambda: len([r for r in fake_server.requests if r.path == "/api/show"])  # noqa: E731
    first = await client.model_info("fake")  # /api/show answers 404: the probe failed
    assert (first.vision, shows()) == (None, 1)
    fake_server.ollama_show = {**OLLAMA_SHOW, "parameters": "num_ctx 16384"}  # the server is back
    assert (await client.model_info("fake")).vision is None and shows() == 1  # within the back-off
    now[0] += 5
    info = await client.model_info("fake")
    assert (info.context_window, info.vision, shows()) == (16384, True, 2)
    now[0] += 3600
    await client.model_info("fake")
    assert shows() == 2  # a good answer is kept: never asked again
    await client.aclose()


async def test_failed_probes_back_off_doubling(fake_server: FakeOpenAIServer) -> None:
    now = [0.0]
    client = ModelClient("s", EndpointConfig(base_url=fake_server.base_url, kind="ollama"))
    client.facts.clock = lambda: now[0]
    asked_at = []
    for second in range(0, 40):
        now[0] = float(second)
        before = len(fake_server.requests)
        await client.model_info("fake")  # /api/show keeps failing
        if len(fake_server.requests) > before:
            asked_at.append(second)
    assert asked_at == [0, 5, 15, 35]  # waits of 5, 10, 20 seconds
    await client.aclose()


async def test_a_connection_the_server_dropped_is_tried_again_for_the_token_count() -> None:
    """Seen under `mombot eval`: llama-server closed a kept-alive connection as the next
    /tokenize went out on it ("Server disconnected without sending a response"), and the
    prompt was planned on the estimate. A dropped connection is retried once."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        if connections > 1:
            body = b'{"tokens": [1, 2, 3, 4, 5, 6, 7]}'
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        writer.close()  # the first connection: closed with no answer

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoint = EndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", kind="llama.cpp")
    client = ModelClient("dropping", endpoint)
    try:
        assert await client.count_tokens(MODEL, "Hello world") == 7
        assert connections == 2
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
