"""`mombot web`: the chat page in a real browser (Debian's Chromium) against the real bot.

Streaming, /think rounds, /sd on the tiny diffusers pipeline, attachments refused with the
same message as elsewhere, a model's HTML rendered inert, channels kept apart, history
after a reload, and the token a page bound beyond this machine needs.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from adapters.config import WebConfig
from adapters.web import CSP, WebAdapter, WebError
from brain.brain import Brain
from brain.config import CharacterConfig, DiffusersConfig, EndpointConfig, ImagesConfig
from brain.history.store import HistoryStore
from brain.images.backends.local import DiffusersBackend
from brain.images.queue import ImageQueue, QueueConfig
from brain.models.client import ModelClient
from tests.browser import Page, chromium
from tests.conftest import MODEL
from tests.fake_openai import Behaviour, FakeOpenAIServer
from tests.helpers import RecordingGenerator, close_brain, eventually_equal

ROOT = Path(__file__).resolve().parent.parent


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """Start the page for a brain; everything started is closed after the test."""
    started: list[tuple[WebAdapter, Brain]] = []

    async def start(brain: Brain, token: str | None = None, **config: Any) -> str:
        adapter = WebAdapter(brain, WebConfig(port=0, **config), token)
        started.append((adapter, brain))
        return await adapter.start()

    yield start
    for adapter, brain in started:
        await adapter.close()
        await close_brain(brain)


@pytest.fixture
def driver() -> Any:
    browser = chromium()
    yield browser
    browser.quit()


def tab(driver: Any) -> Page:
    return Page(driver, driver.current_window_handle)


def new_tab(driver: Any) -> Page:
    driver.switch_to.new_window("tab")
    return Page(driver, driver.current_window_handle)


def mixture(endpoint: EndpointConfig, sqlite_url: str, **options: Any) -> Brain:
    """Two members and mom on one endpoint (the real SmolLM2 server or a fake one)."""

    def character(name: str, role: str = "member") -> CharacterConfig:
        return CharacterConfig(
            name=name,
            endpoint="local",
            model=MODEL,
            persona=f"You are {name}.",
            max_tokens=24,
            temperature=0,
            role=role,
        )

    return Brain(
        characters=[character("logic"), character("critic"), character("mom", "synthesizer")],
        clients={"local": ModelClient("local", endpoint)},
        history=HistoryStore(sqlite_url),
        **options,
    )


def last_streamed_question(server: FakeOpenAIServer) -> dict[str, Any]:
    """The user message of the last streamed call (what the characters were asked)."""
    return [r.body for r in server.requests if r.body.get("stream")][-1]["messages"][-1]


def fake_endpoint(server: FakeOpenAIServer) -> EndpointConfig:
    return EndpointConfig(base_url=server.base_url, context_window=4096)


async def test_a_reply_streams_in_with_the_proposals_beside_it(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    words = " ".join(f"word{i}" for i in range(40))
    fake_server.behaviour = Behaviour(reply=words, token_delay_s=0.05)
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "main")
    await page.say("What should we cook tonight?")
    partial = await page.until(
        "(() => { const m = document.querySelector('.msg.bot .body'); "
        "return m && m.innerText.length > 0 && !m.innerText.includes('word39') && m.innerText; })()"
    )
    assert partial.startswith("word0")  # part of the reply, shown while it streams
    await page.done(1)
    reply = (await page.texts(".msg.bot .body"))[0]
    assert reply.rstrip().endswith("word39")
    panel = await page.script(
        "const d = document.querySelector('.msg.bot details.how'); d.open = true; "
        "return d.innerText;"
    )
    assert "2 proposals" in panel and "logic (" in panel and "critic (" in panel
    assert "prompt tokens" in panel and "synthesis" in panel  # every call, with its tokens


async def test_think_shows_its_rounds_and_sd_shows_the_image(
    llama_endpoint: EndpointConfig, sqlite_url: str, tiny_pipeline: Path, serve: Any, driver: Any
) -> None:
    diffusers = DiffusersConfig(model=str(tiny_pipeline), local_files_only=True, device="cpu")
    queue = ImageQueue(DiffusersBackend(diffusers, max_batch=2), QueueConfig())
    brain = mixture(
        llama_endpoint,
        sqlite_url,
        extensions=["deep_thinking"],
        image_generator=queue,
        images_config=ImagesConfig(default_size="64x64", default_steps=2),
    )
    url = await serve(brain)
    page = tab(driver)
    await page.open(url, "studio")
    await page.script(
        "window.seen = []; new MutationObserver(() => window.seen.push("
        "document.getElementById('log').innerText + ' | ' + "
        "document.getElementById('status').innerText)).observe(document.body, "
        "{subtree: true, childList: true, characterData: true});"
    )
    await page.say("/think Is tea better than coffee? --rounds 2")
    await page.done(2, timeout=300)
    seen = "\n".join(await page.script("return window.seen;"))
    assert "round 1/2" in seen and "Round 2/2" in seen  # the rounds, as they happened
    assert "votes:" in seen  # ...with the leader and the votes

    await page.say("/sd a lighthouse at dusk --seed 42")
    await page.until("document.querySelector('.msg.image img')", timeout=300)
    await page.done(3, timeout=300)
    image = await page.script(
        "const i = document.querySelector('.msg.image img'); "
        "return [i.naturalWidth, i.src.slice(0, 22), i.closest('.msg').innerText];"
    )
    assert image[0] == 64 and image[1] == "data:image/png;base64,"
    assert "a lighthouse at dusk" in image[2] and "seed 42" in image[2]
    await page.say("Thanks! What colour is the lighthouse?")  # a plain reply, with its panel
    await page.done(4, timeout=300)
    await page.script("document.querySelector('details.how').open = true;")
    # The README's screenshots (docs/web-*.png are made this way): desktop (the whole story
    # in one shot) and phone, light and dark.
    folder = os.environ.get("MOMBOT_SCREENSHOT_DIR")
    before = await page.run(driver.get_window_size)
    for name, (width, height) in {"page": (1100, 1500), "phone": (390, 844)}.items():
        for scheme in ("light", "dark"):
            await page.run(lambda w=width, h=height: driver.set_window_size(w, h))
            await page.color_scheme(scheme)
            await page.script("const l = document.getElementById('log'); l.scrollTop = 1e9;")
            fits = await page.script(
                "const r = document.getElementById('theme').getBoundingClientRect(); "
                "return [document.documentElement.scrollWidth <= innerWidth, r.right <= innerWidth]"
            )
            assert fits == [True, True], (name, scheme)  # nothing wider than the screen
            shot = await page.run(driver.get_screenshot_as_png)
            assert shot.startswith(b"\x89PNG")
            if folder:
                suffix = "" if scheme == "light" else "-dark"
                path = Path(folder, f"web-{name}{suffix}.png")
                await asyncio.to_thread(path.write_bytes, shot)
    await page.run(lambda: driver.set_window_size(before["width"], before["height"]))


async def proposing(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any, channel: str
) -> tuple[Page, RecordingGenerator]:
    """A page on a bot that proposes its image prompts first, asked for a scene."""
    fake_server.behaviour = Behaviour(reply="a lighthouse at dusk")  # the prompt it writes
    generator = RecordingGenerator()
    brain = mixture(
        fake_endpoint(fake_server),
        sqlite_url,
        image_generator=generator,
        images_config=ImagesConfig(default_size="64x64", confirm=True),
    )
    url = await serve(brain)
    page = tab(driver)
    await page.open(url, channel)
    await page.say("/sd scene")
    return page, generator


async def test_an_image_proposal_is_drawn_with_its_button(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    page, generator = await proposing(fake_server, sqlite_url, serve, driver, "art")
    labels = await page.until(
        "[...document.querySelectorAll('.confirm button')].map(b => b.textContent).join(',')"
    )
    assert labels == "Draw it,Edit,Cancel"
    assert "I'd draw: a lighthouse at dusk" in (await page.texts(".msg.bot .body"))[0]
    await page.script("document.querySelector('.confirm button').click();")
    await page.until("document.querySelector('.msg.image img')")
    assert generator.requests[0].prompt.endswith("a lighthouse at dusk")


async def test_an_image_proposal_can_be_edited_or_cancelled_with_its_buttons(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Edit asks for the prompt in the browser's own dialog and draws that; Cancel draws
    nothing and says so."""
    page, generator = await proposing(fake_server, sqlite_url, serve, driver, "edits")
    await page.click_confirm("Edit")

    def edit_in_the_dialog() -> None:
        dialog = driver.switch_to.alert
        assert dialog.text == "Edit the prompt"
        dialog.send_keys("a red lighthouse at dawn")
        dialog.accept()

    await page.run(edit_in_the_dialog)
    await page.until("document.querySelector('.msg.image img')")
    assert generator.requests[-1].prompt.endswith("a red lighthouse at dawn")

    await page.until("!document.getElementById('send').disabled")
    await page.say("/sd scene")
    await page.click_confirm("Cancel")
    await page.until(
        "[...document.querySelectorAll('.msg.bot .body')]"
        '.some(e => e.innerText.includes("All right, I won\'t draw it."))'
    )
    assert not await page.script("return document.querySelector('.confirm');")
    assert len(generator.requests) == 1


async def test_a_file_it_cannot_read_gets_the_same_clear_message(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any, tmp_path: Path
) -> None:
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url), max_attachment_bytes=8192)
    page = tab(driver)
    await page.open(url, "files")
    archive = tmp_path / "holiday.zip"
    archive.write_bytes(b"PK\x03\x04 not really")

    await page.attach(archive)
    await page.say("what is in it?")
    await page.done(2)
    texts = await page.texts(".msg.bot .body")
    assert any("I can't read holiday.zip" in t and "send images" in t for t in texts)

    big = tmp_path / "novel.txt"  # over this page's 8 KB limit: sent without its bytes
    await asyncio.to_thread(big.write_text, "It was a dark and stormy night. " * 1000)

    await page.attach(big)
    await page.say("summarise it")
    await page.done(4)
    texts = await page.texts(".msg.bot .body")
    assert any("novel.txt is too large (31 KB; the limit is 8 KB)" in t for t in texts)


async def test_ten_files_each_under_the_limit_all_arrive_and_an_eleventh_is_refused(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any, tmp_path: Path
) -> None:
    """Ten files near the limit make one large message: it arrives whole (the connection
    is not dropped), and the page says it keeps an eleventh back."""
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url), max_attachment_bytes=8192)
    page = tab(driver)
    await page.open(url, "many")
    paths = [tmp_path / f"part{n}.txt" for n in range(1, 12)]  # 7 KB each
    for n, path in enumerate(paths, start=1):
        await asyncio.to_thread(path.write_text, f"Part {n}. " + "Lorem ipsum dolor. " * 360)
    for path in paths[:10]:
        await page.attach(path)
    eleventh = str(paths[10])
    await page.run(lambda: page.driver.find_element("id", "file").send_keys(eleventh))
    await page.until(
        "document.querySelector('.msg.error')?.innerText.includes("
        "'At most 10 files go with one message: part11.txt was not attached.')"
    )
    await page.say("read them all")
    await page.until(
        "[...document.querySelectorAll('.msg.bot')].some(m => m.innerText.includes('part10.txt'))"
    )
    await page.done(2)
    asked = last_streamed_question(fake_server)
    assert "[file part1.txt]" in asked["content"]


async def test_a_tab_reconnects_when_the_bot_restarts(
    fake_server: FakeOpenAIServer, sqlite_url: str, driver: Any
) -> None:
    """A restart drops the page's connection; the page opens it again by itself, and a
    message typed while it was away stays in the box, not lost."""
    brain = mixture(fake_endpoint(fake_server), sqlite_url)
    first = WebAdapter(brain, WebConfig(port=0))
    url = await first.start()
    page = tab(driver)
    await page.open(url, "restarts")
    await first.close()
    await page.until("document.getElementById('status').innerText.includes('reconnecting')")
    await page.say("are you there?")
    assert await page.script("return document.getElementById('text').value;") == "are you there?"
    again = WebAdapter(brain, WebConfig(port=first.port))
    try:
        await again.start()
        await page.until("document.body.dataset.ready === 'restarts'", timeout=60)
        await page.script("document.getElementById('send').click();")
        await page.done(1)
        assert fake_server.requests and (await page.texts(".msg.user .body")) == ["are you there?"]
    finally:
        await again.close()
        await close_brain(brain)


class SlowHistory(WebAdapter):
    """The history of channel "slow" waits for `gate`; `asked` says when it was asked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked, self.gate, self.fast_served = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def _history(self, request: Any) -> Any:
        if request.query.get("channel") == "slow":
            self.asked.set()
            await self.gate.wait()
        response = await super()._history(request)
        if request.query.get("channel") == "fast":
            self.fast_served.set()
        return response


async def test_a_channel_opened_while_another_loads_is_the_one_shown(
    fake_server: FakeOpenAIServer, sqlite_url: str, driver: Any
) -> None:
    """Picking a channel while the previous pick is still loading: the page shows and
    talks to the last one picked, not a mix of both."""
    brain = mixture(fake_endpoint(fake_server), sqlite_url)
    await brain.history.add("web:slow", "user", "from the slow channel", "you")
    adapter = SlowHistory(brain, WebConfig(port=0))
    url = await adapter.start()
    page = tab(driver)
    try:
        await page.open(url, "main")
        both = asyncio.create_task(
            page.run(
                lambda: driver.execute_async_script(
                    "const done = arguments[arguments.length - 1]; "
                    "Promise.all([import('/static/connection.js'), import('/static/state.js')])"
                    ".then(([connection, shared]) => { "
                    "const slow = connection.openChannel('slow'); connection.openChannel('fast'); "
                    "slow.then(() => done([shared.state.socket.url, "
                    "document.getElementById('log').innerText])); });"
                )
            )
        )
        await adapter.asked.wait()
        await adapter.fast_served.wait()
        adapter.gate.set()  # the slow channel's history comes last
        socket_url, shown = await both
        assert socket_url.endswith("channel=fast") and "from the slow channel" not in shown
    finally:
        await adapter.close()
        await close_brain(brain)


async def test_a_dropped_text_file_is_read_and_reasoning_is_folded_away(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    fake_server.behaviour = Behaviour(reply="Two items.", reasoning="Count the lines first.")
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "notes")
    await page.hand_over("shopping.txt", "lentils\ncumin\n", "drop")  # as from a file manager
    await page.say("How many items are on my list?")
    await page.done(1)
    asked = last_streamed_question(fake_server)
    assert "[file shopping.txt]\n```\nlentils\ncumin" in asked["content"]  # the file, read
    folded = await page.script(
        "const d = document.querySelector('.msg.bot details.reasoning'); "
        "return [d.open, d.textContent, document.querySelector('.msg.bot .body').innerText];"
    )
    assert folded[0] is False and "Count the lines first." in folded[1]
    assert folded[2].strip() == "Two items."  # the reasoning is not in the reply


async def test_a_file_pasted_into_the_message_box_is_attached(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "pasted")
    await page.hand_over("pantry.txt", "rice\nbeans\n", "paste")  # into the message box
    await page.say("What is in my pantry?")
    await page.done(1)
    asked = last_streamed_question(fake_server)
    assert "[file pantry.txt]\n```\nrice\nbeans" in asked["content"]


async def test_html_from_a_model_renders_inert(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    fake_server.behaviour = Behaviour(
        reply='Look: <script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> done'
    )
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "safe")
    await page.say("show me some html")
    await page.done(1)
    reply = await page.script(
        "const b = document.querySelector('.msg.bot .body'); "
        "return [b.innerText, b.querySelectorAll('script, img').length, "
        "window.pwned === undefined];"
    )
    assert "<script>window.pwned = 1</script>" in reply[0]  # shown as text...
    assert reply[1] == 0 and reply[2] is True  # ...never run


async def test_two_tabs_on_two_channels_do_not_mix_and_a_reload_shows_the_history(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    brain = mixture(fake_endpoint(fake_server), sqlite_url)
    url = await serve(brain)
    first, second = tab(driver), new_tab(driver)
    await first.open(url, "kitchen")
    await second.open(url, "garden")
    await first.say("Which spices go with lentils?")
    await first.done(1)
    await second.say("When do I plant tulips?")
    await second.done(1)
    assert "tulips" not in " ".join(await first.texts())
    assert "lentils" not in " ".join(await second.texts())
    assert [t.content for t in await brain.history.recent("web:garden")][-1] == (
        "When do I plant tulips?"
    )

    await first.run(lambda: driver.refresh())
    await first.until("document.body.dataset.ready === 'kitchen'")
    texts = await first.texts()
    assert texts[0].endswith("Which spices go with lentils?")
    assert "Hello from the fake server." in texts[1]


async def test_commands_complete_as_they_are_typed(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url, extensions=["deep_thinking"]))
    page = tab(driver)
    await page.open(url, "main")
    from selenium.webdriver.common.by import By

    await page.run(lambda: driver.find_element(By.ID, "text").send_keys("/th"))
    shown = await page.until(
        "!document.getElementById('completions').hidden && "
        "document.getElementById('completions').innerText"
    )
    assert "/think <question> [--rounds N]" in shown and "/sd" not in shown


async def test_beyond_this_machine_the_page_needs_its_token(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any
) -> None:
    brain = mixture(fake_endpoint(fake_server), sqlite_url)
    with pytest.raises(WebError, match="MOMBOT_WEB_TOKEN is not set"):
        WebAdapter(brain, WebConfig(host="0.0.0.0"))
    url = await serve(brain, host="0.0.0.0", token="s3cret-token-for-tests")
    local = url.replace("0.0.0.0", "127.0.0.1")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(local + "api/setup") as refused:
            assert refused.status == 401
        async with http.get(local + "?token=wrong") as wrong:
            assert wrong.status == 401
        async with http.get(local + "?token=s3cret-token-for-tests") as page:
            assert page.status == 200
            assert page.headers["Content-Security-Policy"] == CSP
            assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        async with http.get(local + "api/setup") as allowed:  # the cookie from the page
            assert allowed.status == 200 and "/characters" in await allowed.text()


def test_the_readme_shows_the_screenshots_the_tests_made() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ("web-page", "web-page-dark", "web-phone", "web-phone-dark"):
        assert (ROOT / "docs" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert f"docs/{name}.png" in readme


def web_config(folder: Path, server: FakeOpenAIServer, web: str = "") -> Path:
    """A config file for `mombot web`: one character on the fake server, any free port."""
    config = folder / "config.toml"
    config.write_text(
        f'[bot]\ndata_dir = "{folder / "data"}"\n'
        f'[endpoints.fake]\nbase_url = "{server.base_url}"\ncontext_window = 4096\n'
        '[[characters]]\nname = "mom"\nendpoint = "fake"\nmodel = "fake"\n'
        f"[web]\nport = 0\n{web}"
    )
    return config


def test_mombot_web_serves_the_page_until_sigterm(
    fake_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    config = web_config(tmp_path, fake_server)
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), "web"],
        cwd=tmp_path,
        text=True,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    line = ""
    while "the chat page is at" not in line:
        line = process.stderr.readline()
        assert line, "mombot web ended before serving the page"
    url = line.split("the chat page is at ")[1].strip()
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=10) as page:
        assert b'<script type="module" src="/static/app.js"></script>' in page.read()
        assert page.headers["Content-Security-Policy"] == CSP
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


async def test_other_sites_cannot_use_the_page(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any
) -> None:
    """A site open in the same browser may not open its WebSocket (no CORS guards those), and
    a domain that resolves to 127.0.0.1 (DNS rebinding) is not this page."""
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url + "ws", origin=url.rstrip("/")) as same_site:
            assert not same_site.closed
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url + "ws", origin="http://evil.example")
        assert refused.value.status == 403
        async with http.get(url + "api/setup", headers={"Host": "evil.example"}) as rebound:
            assert rebound.status == 403
        async with http.get(url + "api/setup") as ours:
            assert ours.status == 200


def test_mombot_web_beyond_this_machine_says_it_needs_the_token(
    fake_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    config = web_config(tmp_path, fake_server, 'host = "0.0.0.0"\n')
    environment = {k: v for k, v in os.environ.items() if k != "MOMBOT_WEB_TOKEN"}
    refused = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "web"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert refused.returncode == 2
    assert "MOMBOT_WEB_TOKEN is not set" in refused.stderr


async def test_command_answers_keep_their_line_breaks(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Issue 36 defect 6: /help, /characters and /stats are one line per item, as written;
    in HTML a single newline is a space unless it is rendered as a break."""
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "main")
    await page.say("/help")
    await page.done(1)
    shown = (await page.texts(".msg.bot .body"))[0]
    assert shown.splitlines()[:3] == [
        "Commands:",
        "/help — Show what I can do.",
        "/reset — " + ("Forget this channel's conversation."),
    ]


async def test_enter_does_not_send_while_a_reply_is_written(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Issue 36 defect 5: the send button was greyed but Enter still sent, and two replies
    ran at once. The next message waits in the box until the reply is done."""
    hold = threading.Event()
    fake_server.behaviour = Behaviour(reply="Here.", hold=hold)
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "main")
    await page.say("first question")
    await page.until("document.getElementById('send').disabled")  # a reply is being written
    await page.say("second question")
    waiting = await page.script(
        "return [document.getElementById('text').value, "
        "document.querySelectorAll('.msg.user').length]"
    )
    assert waiting == ["second question", 1]  # kept in the box, not sent
    hold.set()
    await page.done(1)
    await page.say("")  # Enter: the waiting message goes now
    await page.done(2)
    users = await page.texts(".msg.user .body")
    assert users == ["first question", "second question"]


async def test_several_files_chosen_at_once_are_all_attached(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any, tmp_path: Path
) -> None:
    """Issue 36 defect 1: the file input's list was cleared while its first file was read,
    so only the first of several chosen files went with the message."""
    fake_server.behaviour = Behaviour(reply="Three lists.")
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "files")
    paths = []
    for name in ("monday.txt", "tuesday.txt", "wednesday.txt"):
        paths.append(tmp_path / name)
        paths[-1].write_text(f"{name}: bread\n")
    await page.attach(*paths)
    await page.say("What is on my lists?")
    await page.done(1)
    asked = last_streamed_question(fake_server)
    for name in ("monday.txt", "tuesday.txt", "wednesday.txt"):
        assert f"[file {name}]" in asked["content"]


async def test_the_token_leaves_the_address_bar_and_a_wrong_one_is_said_on_the_page(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Issue 36 defect 15: `?token=…` stayed in the address bar and the history after logging
    in, and a wrong token got a bare text page."""
    url = await serve(
        mixture(fake_endpoint(fake_server), sqlite_url), host="0.0.0.0", token="s3cret-web"
    )
    local = url.replace("0.0.0.0", "127.0.0.1")
    page = tab(driver)
    await page.run(lambda: driver.get(f"{local}?token=wrong#channel=main"))
    said = await page.until(
        "!document.getElementById('token-form').hidden && "
        "[document.getElementById('token-form').innerText, location.search, location.hash]"
    )
    assert "not right" in said[0] and said[1:] == ["", "#channel=main"]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    await page.run(lambda: driver.find_element(By.ID, "token").send_keys("s3cret-web" + Keys.ENTER))
    await page.until("document.body.dataset.ready === 'main'")
    assert await page.script("return location.href") == f"{local}#channel=main"


async def test_a_channel_name_it_cannot_take_is_refused_with_its_rule(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Issue 36 defect 12: the name field's `pattern` was invalid under the browser's rules
    (a `-` unescaped in a `v`-mode class), so it was ignored and a bad name did nothing."""
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "main")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    await page.run(
        lambda: driver.find_element(By.ID, "new-channel-name").send_keys("bad name!" + Keys.ENTER)
    )
    field = await page.script(
        "const f = document.getElementById('new-channel-name'); "
        "return [f.validity.patternMismatch, f.title, location.hash];"
    )
    assert field == [True, "Letters, digits, _ and -, up to 64.", "#channel=main"]
    await page.run(lambda: driver.find_element(By.ID, "new-channel-name").clear())
    await page.run(
        lambda: driver.find_element(By.ID, "new-channel-name").send_keys("good-name_2" + Keys.ENTER)
    )
    await page.until("document.body.dataset.ready === 'good-name_2'")


async def test_the_page_has_an_icon(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any
) -> None:
    """Issue 36: `favicon.ico` was a 404 in every browser's console; the page names its own."""
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as page:
            icon = re.search(r'<link rel="icon" href="([^"]+)"', await page.text())
        assert icon is not None
        async with http.get(url.rstrip("/") + icon.group(1)) as served:
            assert served.status == 200 and served.content_type == "image/svg+xml"
            assert (await served.text()).startswith("<svg")


async def test_the_conversation_stays_on_the_page_while_the_bot_is_away(
    fake_server: FakeOpenAIServer, sqlite_url: str, driver: Any
) -> None:
    """Issue 36 defect 2: each try to reconnect emptied the log before fetching the history,
    and the fetch failed while the bot was down: the conversation vanished from the page."""
    fake_server.behaviour = Behaviour(reply="Soup.")
    brain = mixture(fake_endpoint(fake_server), sqlite_url)
    first = WebAdapter(brain, WebConfig(port=0))
    url = await first.start()
    page = tab(driver)
    await page.open(url, "away")
    await page.say("What is for dinner?")
    await page.done(1)
    await first.close()
    # "try 2": one try to open the channel again has failed (the server is gone)
    await page.until("document.getElementById('status').innerText.includes('try 2')")
    assert await page.texts(".msg .body") == ["What is for dinner?", "Soup."]
    again = WebAdapter(brain, WebConfig(port=first.port))
    try:
        await again.start()
        await page.until("document.body.dataset.ready === 'away'", timeout=60)
        assert await page.texts(".msg .body") == ["What is for dinner?", "Soup."]  # once
    finally:
        await again.close()
        await close_brain(brain)


async def test_a_command_is_chosen_from_the_list_with_the_keyboard(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Issue 36 defect 10: the list shown after `/` could not be used from the keyboard, and
    Enter sent the partial `/he`. Arrows move through it, Enter or Tab takes the command."""
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "main")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = await page.run(lambda: driver.find_element(By.ID, "text"))
    await page.run(lambda: box.send_keys("/"))
    await page.until("!document.getElementById('completions').hidden")
    await page.run(lambda: box.send_keys(Keys.ARROW_DOWN, Keys.ARROW_DOWN))
    active = await page.script(
        "const a = document.querySelector('#completions li.active'); "
        "return [a && a.firstChild.textContent, a && a.getAttribute('aria-selected'), "
        "document.getElementById('text').getAttribute('aria-activedescendant') === a.id];"
    )
    assert active == ["/reset", "true", True]  # the second command, marked for readers too
    await page.run(lambda: box.send_keys(Keys.ARROW_UP, Keys.ENTER))
    chosen = await page.script(
        "return [document.getElementById('text').value, "
        "document.getElementById('completions').hidden, document.querySelectorAll('.msg').length]"
    )
    assert chosen == ["/help ", True, 0]  # taken into the box, nothing sent
    await page.run(lambda: box.send_keys(Keys.BACK_SPACE, Keys.BACK_SPACE, Keys.BACK_SPACE))
    await page.run(lambda: box.send_keys(Keys.TAB))  # "/he" and Tab: the only match
    assert await page.script("return document.getElementById('text').value") == "/help "


async def test_files_are_attached_and_removed_from_the_keyboard(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any, tmp_path: Path
) -> None:
    """Issue 36 defect 11: 📎 could not be reached with the keyboard, and an attached file
    could not be taken off before sending."""
    fake_server.behaviour = Behaviour(reply="Noted.")
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "main")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = await page.run(lambda: driver.find_element(By.ID, "text"))
    await page.run(lambda: box.send_keys(Keys.TAB))
    focused = await page.script(
        "const a = document.activeElement; return [a.tagName, a.getAttribute('aria-label')]"
    )
    assert focused == ["BUTTON", "attach files"]
    keep, drop = tmp_path / "keep.txt", tmp_path / "drop.txt"
    keep.write_text("kept\n")
    drop.write_text("dropped\n")
    await page.attach(drop, keep)
    remove = await page.run(
        lambda: driver.find_element(
            By.CSS_SELECTOR, "#attached button[aria-label='remove drop.txt']"
        )
    )
    await page.run(lambda: remove.send_keys(Keys.ENTER))  # a button: Enter presses it
    assert await page.script("return document.getElementById('attached').innerText") == (
        "keep.txt×"
    )
    await page.say("two files?")
    await page.done(1)
    asked = last_streamed_question(fake_server)
    assert "[file keep.txt]" in asked["content"] and "drop.txt" not in asked["content"]


CONTRAST = """
const lum = (rgb) => {
  const [r, g, b] = rgb.match(/[\\d.]+/g).slice(0, 3).map((v) => {
    const c = Number(v) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const background = (el) => {
  for (; el; el = el.parentElement) {
    const bg = getComputedStyle(el).backgroundColor;
    if (!/rgba\\(.*, 0\\)$/.test(bg) && bg !== 'transparent') return bg;
  }
  return 'rgb(255, 255, 255)';
};
const ratio = (el) => {
  const [a, b] = [lum(getComputedStyle(el).color), lum(background(el))];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
};
const faded = (el) => {
  for (; el; el = el.parentElement) if (Number(getComputedStyle(el).opacity) < 1) return true;
  return false;
};
return [...document.querySelectorAll(arguments[0])].map((el) =>
  [el.className || el.id, Math.round(ratio(el) * 100) / 100, faded(el),
   lum(getComputedStyle(document.body).backgroundColor)]);
"""


async def test_text_is_readable_in_light_and_dark_and_the_log_is_not_re_read(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Issue 36 defect 14: speaker labels were below WCAG AA contrast (4.29:1, 3.98:1), there
    was no dark mode, and the whole log was one live region re-read while a reply streamed."""
    fake_server.behaviour = Behaviour(reply="Tea.")
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "main")
    await page.say("/characters")
    await page.done(1)
    await page.say("Tea or coffee?")
    await page.done(2)
    shown = ".msg .who, .msg .body, #status, header h1"
    for dark in (False, True):
        await page.color_scheme("dark" if dark else "light")
        measured = await page.script(CONTRAST, shown)
        assert measured and all(r >= 4.5 and not faded for _, r, faded, _ in measured), measured
        assert (measured[0][3] < 0.05) is dark  # the page's background follows the system
    await page.script("document.getElementById('theme').click()")  # the toggle overrides it
    assert await page.script("return document.documentElement.dataset.theme") == "light"
    live = await page.script(
        "return [document.getElementById('log').getAttribute('aria-live'), "
        "document.getElementById('announce').textContent]"
    )
    assert live == [None, "Tea."]  # a finished reply is announced once, not every edit


async def test_the_channel_list_comes_from_the_bot(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Issue 36 defect 13: the list lived in this browser's localStorage, so channels talked
    in from another browser never appeared. It is the bot's: its web channels, newest first."""
    brain = mixture(fake_endpoint(fake_server), sqlite_url)
    elsewhere = f"elsewhere-{uuid.uuid4().hex[:8]}"
    await brain.history.add(f"web:{elsewhere}", "user", "from another browser", "you")
    await brain.history.add("discord:123", "user", "not a web channel", "ann")
    url = await serve(brain)
    page = tab(driver)
    await page.open(url, "main")
    names = await page.until(
        "(() => { const names = [...document.getElementById('channels').options]"
        f".map((o) => o.value); return names.includes({elsewhere!r}) && names; }})()"
    )
    assert names[0] == "main" and "123" not in names  # the open one first, then the bot's


async def test_your_message_looks_the_same_after_a_reload(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any, tmp_path: Path
) -> None:
    """Issue 36 defect 8: your own message was shown as typed while live and as Markdown
    (with the files' contents in it) after a reload."""
    fake_server.behaviour = Behaviour(reply="Noted.")
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "as-typed")
    notes = tmp_path / "notes.txt"
    notes.write_text("eggs\nflour\n")
    await page.attach(notes)
    await page.say("# not a heading\n*not emphasis*\n\nand a line after a gap")
    await page.done(1)
    live = await page.texts(".msg.user .body")
    assert live == ["# not a heading\n*not emphasis*\n\nand a line after a gap", "📎 notes.txt"]
    await page.run(lambda: driver.refresh())
    await page.until("document.body.dataset.ready === 'as-typed'")
    assert await page.texts(".msg.user .body") == live


async def test_a_message_longer_than_is_kept_shows_what_was_kept(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Issue 36: a 200 KB message was shown in full (45,000 px tall) though only its first
    32,000 characters were kept. The page shows what was kept, and says what was not."""
    fake_server.behaviour = Behaviour(reply="That is long.")
    brain = mixture(fake_endpoint(fake_server), sqlite_url)
    kept = brain.chat.history_config.max_turn_chars
    url = await serve(brain)
    page = tab(driver)
    await page.open(url, "long")
    await page.script(f"document.getElementById('text').value = 'x'.repeat({kept + 8000});")
    await page.say("")  # Enter
    await page.done(1)
    shown = await page.script(
        "const m = document.querySelector('.msg.user'); "
        "return [m.querySelector('.body').textContent.length, m.querySelector('.note').innerText]"
    )
    assert shown == [kept, f"Only the first {kept:,} characters were kept; 8,000 were not."]
    assert [len(t.content) for t in await brain.history.recent("web:long")][-1] == kept


async def test_code_is_highlighted_and_replies_and_code_can_be_copied(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Issue 36: code blocks highlighted with their language's label (Pygments, on the
    server: no script, no CDN), and a copy button on each reply and each code block."""
    fake_server.behaviour = Behaviour(reply="Like this:\n\n```python\nprint('hi')\n```")
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "code")
    await page.run(
        lambda: driver.execute_cdp_cmd(
            "Browser.grantPermissions",
            {"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"], "origin": url},
        )
    )
    await page.say("How do I print?")
    await page.done(1)
    code = await page.script(
        "const pre = document.querySelector('.msg.bot pre'); "
        "return [getComputedStyle(pre, '::before').content, "
        "pre.querySelectorAll('code span[class]').length, "
        "getComputedStyle(pre.querySelector('code span[class]')).color, "
        "getComputedStyle(pre.querySelector('code')).color];"
    )
    assert code[0] == '"python"' and code[1] >= 2 and code[2] != code[3]  # coloured by its CSS

    # What the page hands the clipboard, recorded on its way there (reading the clipboard
    # back needs the window focused, which a browser test cannot count on).
    await page.script(
        "const write = navigator.clipboard.writeText.bind(navigator.clipboard); "
        "window.copied = []; "
        "navigator.clipboard.writeText = (t) => { copied.push(t); return write(t); };"
    )

    async def copied(selector: str) -> str:
        await page.script(f"document.querySelector({selector!r}).click()")
        return await page.until("window.copied.length && window.copied.pop()")

    assert await copied(".msg.bot pre button.copy") == "print('hi')\n"
    assert await copied(".msg.bot > .tools button.copy") == "Like this:\n\nprint('hi')"


async def test_a_reply_is_labelled_with_who_wrote_it_live_and_after_a_reload(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Issue 36 defect 4 (its first part): live reply bubbles had no author name, and said
    "mom" after a reload. The character who wrote it, both times."""
    fake_server.behaviour = Behaviour(reply="Rice.")
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "names")
    await page.say("What goes with curry?")
    await page.done(1)
    live = await page.texts(".msg.bot .who")
    assert live == ["mom"]  # the synthesizer wrote the reply
    await page.run(lambda: driver.refresh())
    await page.until("document.body.dataset.ready === 'names'")
    assert await page.texts(".msg.bot .who") == live


async def test_your_messages_can_be_edited_and_deleted_from_the_page(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Issue 36: edit and delete your own messages from the page, as the same events as a
    Discord edit or a Matrix redaction (the history, the memory and the summary follow)."""
    fake_server.behaviour = Behaviour(reply="Noted.")
    brain = mixture(fake_endpoint(fake_server), sqlite_url)
    url = await serve(brain)
    page = tab(driver)
    await page.open(url, "changes")
    await page.say("My dog is called Rex.")
    await page.done(1)
    await page.say("My cat is called Tom.")
    await page.done(2)

    async def stored() -> list[str]:
        return [t.content for t in reversed(await brain.history.recent("web:changes"))]

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    mine = "//div[contains(@class, 'user')][.//div[@class='body'][text()='{}']]"
    cat = await page.run(
        lambda: driver.find_element(By.XPATH, mine.format("My cat is called Tom."))
    )
    await page.run(lambda: cat.find_element(By.CSS_SELECTOR, "button[aria-label='delete']").click())
    await page.until("document.querySelectorAll('.msg.user').length === 1")
    await eventually_equal(stored, ["My dog is called Rex.", "Noted.", "Noted."])
    dog = await page.run(
        lambda: driver.find_element(By.XPATH, mine.format("My dog is called Rex."))
    )
    await page.run(lambda: dog.find_element(By.CSS_SELECTOR, "button[aria-label='edit']").click())
    editor = await page.run(lambda: dog.find_element(By.CSS_SELECTOR, "textarea"))
    await page.run(lambda: editor.clear())
    await page.run(lambda: editor.send_keys("My dog is called Max." + Keys.ENTER))
    await page.until(
        "(document.querySelector('.msg.user .body') || {}).textContent === 'My dog is called Max.'"
    )
    await eventually_equal(stored, ["My dog is called Max.", "Noted.", "Noted."])
    await page.run(lambda: driver.refresh())
    await page.until("document.body.dataset.ready === 'changes'")
    assert await page.texts(".msg.user .body") == ["My dog is called Max."]


async def test_axe_finds_nothing_serious_on_the_page(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Issue 36: an automated check of contrast, labels and roles on the rendered page
    (axe-core, shipped in the axe-selenium-python package: offline), light and dark."""
    from axe_selenium_python import Axe

    fake_server.behaviour = Behaviour(reply="Use **salt**:\n\n```python\nsalt = 1\n```")
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "checked")
    await page.say("How much salt?")
    await page.done(1)
    await page.script("document.getElementById('controls-toggle').click();")  # the panel too
    await page.until("document.getElementById('length-value').innerText")
    axe = Axe(driver)
    for scheme in ("light", "dark"):
        await page.color_scheme(scheme)
        await page.run(axe.inject)
        found = await page.run(axe.run)
        checked = {rule["id"] for rule in found["passes"]}
        assert {"color-contrast", "label", "button-name"} <= checked  # it did look
        serious = [
            (v["id"], v["impact"], [n["html"][:80] for n in v["nodes"]])
            for v in found["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert serious == [], scheme


async def test_a_reply_can_be_stopped_from_the_page(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Issue 36: a stop button while a reply is being written; the reply ends where it was,
    is marked stopped and is not stored (the history keeps complete answers only)."""
    fake_server.behaviour = Behaviour(reply="word " * 400, token_delay_s=0.02)
    brain = mixture(fake_endpoint(fake_server), sqlite_url)
    url = await serve(brain)
    page = tab(driver)
    await page.open(url, "stops")
    assert await page.script("return document.getElementById('stop').hidden") is True
    await page.say("Tell me a long story")
    await page.until(
        "(() => { const b = document.querySelector('.msg.bot .body'); "
        "return b && b.innerText.includes('word'); })()"
    )
    await page.script("document.getElementById('stop').click()")
    await page.done(1)
    shown = await page.texts(".msg.bot .body")
    assert shown[-1] == "⏹ Stopped." and 0 < shown[0].count("word") < 400
    assert await page.script("return document.getElementById('stop').hidden") is True
    stored = [t.content for t in await brain.history.recent("web:stops")]
    assert stored == ["Tell me a long story"]
