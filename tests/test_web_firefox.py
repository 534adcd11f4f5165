"""The web page in Firefox too (issue 36's goal: its JavaScript modules work in current
Chromium and Firefox). Debian's Firefox ESR, headless, driven through its own Marionette
protocol with Mozilla's marionette-driver (geckodriver would download from GitHub): the
page opens its channel, shows what was shown, sends, and a reply streams in with its tools.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_openai import Behaviour, FakeOpenAIServer
from tests.test_web import fake_endpoint, mixture, serve

__all__ = ["serve"]  # a fixture, used by name

FIREFOX = "firefox-esr"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def firefox(tmp_path: Path) -> Iterator[Any]:
    """A headless Firefox ESR session; fails in CI and is skipped elsewhere when missing."""
    if not shutil.which(FIREFOX):
        message = "Debian's firefox-esr is needed: scripts/install-chromium.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from marionette_driver.marionette import Marionette

    port = free_port()
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "user.js").write_text(f'user_pref("marionette.port", {port});\n')
    browser = subprocess.Popen(
        [FIREFOX, "--headless", "--marionette", "--no-remote", "-profile", str(profile)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path), "MOZ_HEADLESS": "1"},
    )
    session = Marionette(host="127.0.0.1", port=port, startup_timeout=60)
    try:
        session.start_session()
        yield session
        session.delete_session()
    finally:
        browser.kill()
        browser.wait(timeout=30)


async def until(session: Any, condition: str, timeout: float = 60) -> Any:
    """Wait until a JavaScript expression is truthy in Firefox; returns its value."""
    deadline = time.monotonic() + timeout
    while not (value := await asyncio.to_thread(session.execute_script, f"return {condition};")):
        assert time.monotonic() < deadline, f"timed out waiting for: {condition}"
        await asyncio.sleep(0.05)
    return value


async def test_the_page_works_in_firefox(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, firefox: Any
) -> None:
    fake_server.behaviour = Behaviour(reply="Fine, with `modules`.")
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    await asyncio.to_thread(firefox.navigate, f"{url}#channel=fox")
    await until(firefox, "document.body.dataset.ready === 'fox'")
    send = (
        "document.getElementById('text').value = 'Does it work here?'; "
        "document.getElementById('composer').requestSubmit();"
    )
    await asyncio.to_thread(firefox.execute_script, send)
    reply = "document.querySelector('.msg.bot .body')?.innerText"
    assert await until(firefox, f"{reply} === 'Fine, with modules.' && {reply}") == (
        "Fine, with modules."
    )
    await until(firefox, "!document.getElementById('send').disabled")
    assert await until(firefox, "!!document.querySelector('.msg.latest button.regenerate')")
    await asyncio.to_thread(firefox.refresh)  # what was shown comes back
    await until(firefox, "document.body.dataset.ready === 'fox'")
    shown = "[...document.querySelectorAll('.msg .body')].map(e => e.innerText)"
    assert await asyncio.to_thread(firefox.execute_script, f"return {shown};") == [
        "Does it work here?",
        "Fine, with modules.",
    ]
