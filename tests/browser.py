"""Debian's Chromium, driven through its chromedriver by Selenium, for the web page's tests.

No browser is downloaded: scripts/install-chromium.sh installs Debian's packages (.ci/run
calls it). Selenium's calls block, so tests make them through `asyncio.to_thread` while the
page's server runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Without these Chromium reaches for Google's services at every start (refused here).
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1100,900",
)


def chromium() -> Any:
    """A headless Chromium; the test fails in CI and is skipped elsewhere when it is missing."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        message = "Debian's chromium and chromium-driver are needed: scripts/install-chromium.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


class Page:
    """One browser tab on the chat page, with awaitable versions of what the tests do."""

    def __init__(self, driver: Any, handle: str) -> None:
        self.driver = driver
        self.handle = handle

    async def run(self, work: Callable[[], Any]) -> Any:
        def in_this_tab() -> Any:
            self.driver.switch_to.window(self.handle)
            return work()

        return await asyncio.to_thread(in_this_tab)

    async def script(self, code: str, *args: Any) -> Any:
        return await self.run(lambda: self.driver.execute_script(code, *args))

    async def color_scheme(self, scheme: Literal["light", "dark"]) -> None:
        """Render the page as the system's light or dark setting says (Chromium's emulation)."""
        features = [{"name": "prefers-color-scheme", "value": scheme}]
        await self.run(
            lambda: self.driver.execute_cdp_cmd(
                "Emulation.setEmulatedMedia", {"features": features}
            )
        )

    async def open(self, url: str, channel: str) -> None:
        await self.run(lambda: self.driver.get(f"{url}#channel={channel}"))
        await self.until(f"document.body.dataset.ready === {channel!r}")

    async def say(self, text: str) -> None:
        """Type a message and press Enter, as a person does (Shift+Enter between lines)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        def type_it() -> None:
            box = self.driver.find_element(By.ID, "text")
            box.send_keys(text.replace("\n", Keys.SHIFT + Keys.ENTER + Keys.SHIFT))
            box.send_keys(Keys.ENTER)

        await self.run(type_it)

    async def attach(self, *paths: Path) -> None:
        """Choose files with the page's file button, all at once as in the file dialog;
        returns once the page lists the last one."""
        from selenium.webdriver.common.by import By

        chosen = "\n".join(str(path) for path in paths)  # how Selenium picks several files
        await self.run(lambda: self.driver.find_element(By.ID, "file").send_keys(chosen))
        last = paths[-1].name
        await self.until(f"document.getElementById('attached').innerText.includes({last!r})")

    async def hand_over(self, name: str, text: str, how: Literal["drop", "paste"]) -> None:
        """A text file dropped on the page or pasted into the message box, as a person
        does; returns once the page lists it."""
        event = (
            "document.body.dispatchEvent("
            "new DragEvent('drop', {dataTransfer: files, bubbles: true}))"
            if how == "drop"
            else "document.getElementById('text').dispatchEvent("
            "new ClipboardEvent('paste', {clipboardData: files, bubbles: true, cancelable: true}))"
        )
        await self.script(
            "const files = new DataTransfer(); "
            "files.items.add(new File([arguments[0]], arguments[1], {type: 'text/plain'})); "
            + event,
            text,
            name,
        )
        await self.until(f"document.getElementById('attached').innerText.includes({name!r})")

    async def click_confirm(self, label: str) -> None:
        """Click a button of an image proposal, as a person does (the browser's own click,
        so a dialog it opens is left open for the test)."""
        from selenium.webdriver.common.by import By

        await self.until("document.querySelector('.confirm button')")
        path = f"//div[@class='confirm']/button[text()={label!r}]"
        await self.run(lambda: self.driver.find_element(By.XPATH, path).click())

    async def until(self, condition: str, timeout: float = 120) -> Any:
        """Wait until a JavaScript expression is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while not (value := await self.script(f"return {condition};")):
            assert time.monotonic() < deadline, f"timed out waiting for: {condition}"
            await asyncio.sleep(0.05)
        return value

    async def done(self, count: int, timeout: float = 120) -> None:
        """Wait until `count` bot messages (or errors) have arrived and the bot is idle."""
        await self.until(
            f"document.querySelectorAll('.msg.bot').length >= {count} "
            "&& !document.getElementById('send').disabled",
            timeout,
        )

    async def texts(self, selector: str = ".msg") -> list[str]:
        return await self.script(
            f"return [...document.querySelectorAll({selector!r})].map(e => e.innerText);"
        )
