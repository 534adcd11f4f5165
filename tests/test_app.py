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
from tests.fake_openai import FakeOpenAIServer


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
            assert app.history is not None
            names.append(app.history.instance)
    assert names[0] == names[1] == (tmp_path / "data" / INSTANCE_FILE).read_text().strip()
    assert len(names[0]) == 32
