"""`App`: what it opens it closes, on every way out, and its instance name persists."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bot.app import INSTANCE_FILE, App
from bot.config import MombotConfig, Secrets
from brain.config import CharacterConfig, EndpointConfig
from brain.errors import MombotError
from brain.images.gpu import GpuMonitor
from tests.fake_openai import FakeOpenAIServer
from tests.helpers import FakeNvml


def open_sockets() -> int:
    """Sockets this process holds open (connections to the model server and the database)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except FileNotFoundError:  # the directory listing's own descriptor, closed meanwhile
            continue
    return count


def config(server: FakeOpenAIServer, tmp_path: Path, **images: object) -> MombotConfig:
    return MombotConfig.model_validate(
        {
            "bot": {"data_dir": str(tmp_path / "data")},
            "endpoints": {"f": EndpointConfig(base_url=server.base_url, context_window=4096)},
            "characters": [CharacterConfig(name="mom", endpoint="f", model="fake")],
            "routing": {"mode": "off"},
            "images": images or {"backend": "none"},
        }
    )


async def test_a_start_that_fails_half_way_closes_what_it_opened(
    fake_server: FakeOpenAIServer, tmp_path: Path, postgres_url: str
) -> None:
    """Issue 17 item 13: the model clients, the database and the image thread pool are open
    when loading the image model fails; all of them are closed before the error leaves."""
    broken = config(
        fake_server,
        tmp_path,
        backend="diffusers",
        diffusers={"model": str(tmp_path / "no-such-model"), "load_at_start": True},
    )
    broken.history.database_url = postgres_url  # a server: its connections are sockets
    threads, sockets = set(threading.enumerate()), open_sockets()
    app = App(broken, Secrets(), serve_status=False)
    with pytest.raises(MombotError):
        async with app:
            pass
    started = {t.name for t in set(threading.enumerate()) - threads}
    assert {name for name in started if not name.startswith("asyncio_")} == set()  # the
    # event loop's own worker threads (asyncio.to_thread) belong to the loop, not to App
    assert open_sockets() <= sockets
    assert app.clients == {} and app.history is None


async def test_the_instance_name_is_made_once_and_kept(
    fake_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    """Two bots on one database tell their image jobs apart by it (see test_history)."""
    names = []
    for _ in range(2):
        async with App(config(fake_server, tmp_path), Secrets(), serve_status=False) as app:
            assert app.image_jobs is not None
            names.append(app.image_jobs.instance)
    assert names[0] == names[1] == (tmp_path / "data" / INSTANCE_FILE).read_text().strip()
    assert len(names[0]) == 32


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """The app's GPU monitor on a stand-in NVML that records its shutdown."""
    nvml = FakeNvml([[50]])
    monkeypatch.setattr("bot.app.GpuMonitor", lambda config: GpuMonitor(config, nvml=nvml))
    return nvml


async def test_leaving_stops_the_embedder_thread_and_shuts_nvml_down(
    fake_server: FakeOpenAIServer, tmp_path: Path, fake_gpu: FakeNvml
) -> None:
    async with App(config(fake_server, tmp_path), Secrets(), serve_status=False) as app:
        embedder = app.embedder
        assert embedder is not None
        assert await embedder.run(sum, [1, 2]) == 3  # its thread runs
        assert fake_gpu.shut_down == 0
    with pytest.raises(RuntimeError, match="shutdown"):
        await embedder.run(sum, [1, 2])  # the thread pool is shut down: nothing runs on it
    assert fake_gpu.shut_down == 1


async def test_a_close_that_fails_does_not_keep_the_rest_open(
    fake_server: FakeOpenAIServer, tmp_path: Path, postgres_url: str, fake_gpu: FakeNvml
) -> None:
    """The GPU monitor closes before the database and the model clients; its failure is
    raised, after they are closed too."""
    settings = config(fake_server, tmp_path)
    settings.history.database_url = postgres_url  # a server: its connections are sockets
    sockets = open_sockets()
    fake_gpu.shutdown_fails = True
    with pytest.raises(RuntimeError, match="while closing"):
        async with App(settings, Secrets(), serve_status=False) as app:
            assert app.history is not None
            assert await app.history.count("test:lifetimes") == 0  # a database connection
            assert open_sockets() > sockets
    assert fake_gpu.shut_down == 1
    assert open_sockets() <= sockets
