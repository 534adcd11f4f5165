"""The web page in Debian's Chromium: how soon it paints, how soon a channel's conversation is
back after a reload, and how soon the status line answers a message (issue 36's goals: first
paint ≤ 150 ms, status line ≤ 100 ms after send).

A fake model server answers at once, so what is timed is the page and mombot, not a model.
The channel is filled with `--messages` exchanges through the page's own WebSocket first.
Run it in two checkouts, alternating, to compare them side by side:

    .venv/bin/python -m bench.bench_web [--messages 100] [--loads 15] [--sends 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from adapters.config import WebConfig
from adapters.web import WebAdapter
from tests.browser import chromium
from tests.fake_openai import FakeOpenAIServer
from tests.helpers import close_brain
from tests.load import fake_brain

CHANNEL = "bench"

# Resolves with the milliseconds from the send to the status line's first text.
STATUS_AFTER_SEND = """
const done = arguments[arguments.length - 1];
const status = document.getElementById('status');
status.textContent = '';
let sent = 0;
new MutationObserver((_, observer) => {
  if (sent && status.textContent) { observer.disconnect(); done(performance.now() - sent); }
}).observe(status, {childList: true, characterData: true, subtree: true});
document.getElementById('text').value = arguments[0];
sent = performance.now();
document.getElementById('composer').requestSubmit();
"""

# First contentful paint, and when the channel's history had arrived, after a load.
LOAD_TIMES = """
const paint = performance.getEntriesByName('first-contentful-paint')[0];
const history = performance.getEntriesByType('resource').find(e => e.name.includes('/api/history'));
return [paint ? paint.startTime : null, history ? history.responseEnd : null,
        document.querySelectorAll('.msg').length];
"""


async def fill(url: str, messages: int) -> None:
    """`messages` questions sent through the page's WebSocket, each answered before the next."""
    socket_url = url.replace("http://", "ws://") + f"ws?channel={CHANNEL}"
    async with aiohttp.ClientSession() as session, session.ws_connect(socket_url) as socket:
        for n in range(messages):
            frame = {"type": "message", "id": str(uuid.uuid4()), "text": f"Question {n}?"}
            await socket.send_str(json.dumps({**frame, "files": []}))
            async for reply in socket:
                if json.loads(reply.data).get("event") == "done":
                    break


def measure(url: str, loads: int, sends: int) -> dict[str, list[float]]:
    """In Chromium (blocking: run in a thread)."""
    driver = chromium()
    times: dict[str, list[float]] = {"paint": [], "history": [], "status": []}
    try:
        for _ in range(loads):
            driver.get("about:blank")
            driver.get(f"{url}#channel={CHANNEL}")
            deadline = time.monotonic() + 30
            while driver.execute_script("return document.body.dataset.ready") != CHANNEL:
                assert time.monotonic() < deadline, "the page did not open its channel"
                time.sleep(0.01)
            paint, history, shown = driver.execute_script(LOAD_TIMES)
            assert shown > 0, "the conversation was not shown"
            times["paint"].append(paint)
            times["history"].append(history)
        for n in range(sends):
            times["status"].append(driver.execute_async_script(STATUS_AFTER_SEND, f"Send {n}?"))
            deadline = time.monotonic() + 30
            while driver.execute_script("return document.getElementById('send').disabled"):
                assert time.monotonic() < deadline, "the reply did not finish"
                time.sleep(0.01)
    finally:
        driver.quit()
    return times


async def main(messages: int, loads: int, sends: int) -> None:
    server = FakeOpenAIServer().start()
    server.behaviour.reply = "A short answer, with **some** Markdown and `code`."
    with tempfile.TemporaryDirectory() as folder:
        brain = fake_brain(server, f"sqlite:///{Path(folder) / 'history.db'}")
        adapter = WebAdapter(brain, WebConfig(port=0))
        url = await adapter.start()
        try:
            await fill(url, messages)
            times = await asyncio.to_thread(measure, url, loads, sends)
        finally:
            await adapter.close()
            await close_brain(brain)
            server.stop()
    print(f"{messages} exchanges in the channel; {loads} loads, {sends} sends (ms)")
    for name, label in (
        ("paint", "first contentful paint"),
        ("history", "history arrived"),
        ("status", "status line after send"),
    ):
        values: list[Any] = times[name]
        print(f"  {label:<24} median {statistics.median(values):6.1f}  max {max(values):6.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--loads", type=int, default=15)
    parser.add_argument("--sends", type=int, default=15)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.messages, arguments.loads, arguments.sends))
