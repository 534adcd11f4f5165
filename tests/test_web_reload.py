"""The web page after a reload or a restart shows what it showed, and a reply can be
answered again (regenerate), its versions flipped through with the one shown stored (issue
36: defects 3 and 4, regenerate). Selenium on Debian's Chromium, as tests/test_web.py."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from adapters.config import WebConfig
from adapters.web import WebAdapter
from brain.brain import Brain
from tests.browser import Page
from tests.fake_openai import Behaviour, FakeOpenAIServer, long_slow_reply
from tests.helpers import close_brain, eventually_equal
from tests.test_web import driver, fake_endpoint, mixture, serve, tab

__all__ = ["driver", "serve"]  # fixtures, used by name


async def stored_replies(brain: Brain, channel: str) -> list[str]:
    turns = reversed(await brain.history.recent(f"web:{channel}"))
    return [t.content for t in turns if t.role == "assistant"]


async def reload(page: Page, channel: str) -> None:
    await page.run(page.driver.refresh)
    await page.until(f"document.body.dataset.ready === {channel!r}")


async def test_a_reload_shows_what_was_shown(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Defect 4: a reload dropped the "how this reply was made" panel, the truncation note,
    every command with its answer, and the /sd error. Now it shows the same messages, each
    with the same text, and the same panels."""
    fake_server.behaviour = Behaviour(reply="Rice and dal.")
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "shown")
    await page.say("What goes with curry?")  # a reply, and its panel
    await page.done(1)
    await page.say("/help")  # a command and its answer
    await page.done(2)
    await page.say("/sd a cat")  # no image generator here: an error
    await page.done(3)
    fake_server.behaviour = Behaviour(reply="It all began", finish_reason="length")
    await page.say("Tell me everything.")  # cut at its length limit: a note says so
    await page.done(4)
    live = await page.texts(".msg")
    panels = "return document.querySelectorAll('details.how').length"
    assert await page.script(panels) == 2
    seen = "\n".join(live)
    assert "/help" in seen and "Commands:" in seen  # what the reload used to drop
    assert "length limit" in seen and "error" in await page.script(
        "return [...document.querySelectorAll('.msg.bot')].at(-2).className"
    )
    await reload(page, "shown")
    assert await page.texts(".msg") == live
    assert await page.script(panels) == 2


async def test_regenerate_keeps_each_version_and_stores_the_one_shown(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    """Regenerate answers the last message again (new member answers, a new synthesis),
    the earlier reply stays as a version to flip back to, and the version shown last is
    the one stored: the next prompt holds what was seen. A reload shows the same."""
    numbers = itertools.count(1)
    fake_server.behaviour = Behaviour(reply_for=lambda body: f"Version {next(numbers)}.")
    brain = mixture(fake_endpoint(fake_server), sqlite_url)
    url = await serve(brain)
    page = tab(driver)
    await page.open(url, "versions")
    await page.say("Which colour would you paint a small kitchen?")  # past the fast path
    await page.done(1)
    (first,) = await page.texts(".msg.bot .body")
    calls = len(fake_server.requests)

    shown = "document.querySelector('.msg.latest .body').innerText"
    counter = "document.querySelector('.msg.latest .swipes output').innerText"
    await page.script("document.querySelector('.msg.latest button.regenerate').click();")
    await page.until(f"{counter} === '2/2' && !document.getElementById('send').disabled")
    second = await page.script(f"return {shown};")
    assert second != first and len(await page.texts(".msg.bot")) == 1  # one bubble, 2 versions
    assert len(fake_server.requests) - calls == 3  # both members and the synthesizer again
    asked = [m["content"] for m in fake_server.requests[-1].body["messages"]]
    assert not any(first in str(content) for content in asked)  # not shown its first try
    assert await stored_replies(brain, "versions") == [second]

    await page.script("document.querySelector('.msg.latest button.previous').click();")
    await page.until(f"{counter} === '1/2' && !document.getElementById('send').disabled")
    assert await page.script(f"return {shown};") == first
    await eventually_equal(lambda: stored_replies(brain, "versions"), [first])

    await reload(page, "versions")
    assert await page.script(f"return [{shown}, {counter}];") == [first, "1/2"]
    await page.script("document.querySelector('.msg.latest button.next').click();")
    await page.until(f"{counter} === '2/2' && !document.getElementById('send').disabled")
    await eventually_equal(lambda: stored_replies(brain, "versions"), [second])


async def test_a_reply_cut_off_by_a_restart_is_marked_and_can_be_answered_again(
    fake_server: FakeOpenAIServer, sqlite_url: str, driver: Any
) -> None:
    """Defect 3: a reply cut off by a shutdown vanished; after the restart the question stood
    alone, with no mark and no way to retry. Now what was written stays, marked interrupted,
    and regenerate answers the question."""
    fake_server.behaviour = long_slow_reply()
    brain = mixture(fake_endpoint(fake_server), sqlite_url)
    first = WebAdapter(brain, WebConfig(port=0))
    url = await first.start()
    page = tab(driver)
    await page.open(url, "restart")
    await page.say("Tell me a long story.")
    await page.until("document.querySelector('.msg.bot .body')?.innerText.split(' ').length > 5")
    await brain.shutdown(grace_s=0)
    await first.close()
    await close_brain(brain)

    fake_server.behaviour = Behaviour(reply="The end.")
    again = mixture(fake_endpoint(fake_server), sqlite_url)
    second = WebAdapter(again, WebConfig(port=first.port))
    try:
        await second.start()
        await page.until("document.body.dataset.ready === 'restart'", timeout=60)
        await reload(page, "restart")  # as after closing the page during the restart
        mark = "document.querySelector('.msg.latest .interrupted')"
        assert "Interrupted" in await page.until(f"{mark}?.innerText")
        assert await page.texts(".msg.user .body") == ["Tell me a long story."]
        await page.script("document.querySelector('.msg.latest button.regenerate').click();")
        await page.until("document.querySelector('.msg.latest .body').innerText === 'The end.'")
        await eventually_equal(lambda: stored_replies(again, "restart"), ["The end."])
    finally:
        await second.close()
        await close_brain(again)


async def test_an_uploaded_image_is_shown_as_a_thumbnail_then_and_after_a_reload(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any, tmp_path: Path
) -> None:
    """Uploads shown as thumbnails (issue 36): your message shows a small copy of the image
    you sent, and a reload shows the same one."""
    from PIL import Image

    picture = tmp_path / "garden.png"
    await asyncio.to_thread(Image.new("RGB", (640, 320), (30, 140, 60)).save, picture)
    url = await serve(mixture(fake_endpoint(fake_server), sqlite_url))
    page = tab(driver)
    await page.open(url, "pictures")
    await page.attach(picture)
    await page.say("What do you see?")
    await page.done(1)
    thumb = "document.querySelector('.msg.user.file img.thumb')"
    size = f"return [{thumb}.naturalWidth, {thumb}.naturalHeight, {thumb}.alt];"
    await page.until(f"{thumb}?.complete && {thumb}.naturalWidth > 0")
    assert await page.script(size) == [160, 80, "garden.png"]
    await reload(page, "pictures")
    await page.until(f"{thumb}?.complete && {thumb}.naturalWidth > 0")
    assert await page.script(size) == [160, 80, "garden.png"]


async def test_a_characters_picture_shows_beside_its_name_live_and_after_a_reload(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any, tmp_path: Path
) -> None:
    """Issue 34 item 6: the web page shows each character's name and picture (a card's) on
    its messages and its proposals."""
    from PIL import Image

    from brain.config import CharacterConfig, EndpointConfig
    from brain.history.store import HistoryStore
    from brain.models.client import ModelClient

    picture = tmp_path / "seraphina.png"
    await asyncio.to_thread(Image.new("RGB", (64, 64), (40, 120, 60)).save, picture)
    fake_server.behaviour = Behaviour(reply="Welcome to the glade.")
    seraphina = CharacterConfig(
        name="Seraphina", endpoint="f", model="f", avatar=str(picture), role="synthesizer"
    )
    members = [
        CharacterConfig(name=name, endpoint="f", model="f", avatar=str(picture))
        for name in ("Oak", "Fern")
    ]
    brain = Brain(
        characters=[*members, seraphina],
        clients={"f": ModelClient("f", EndpointConfig(base_url=fake_server.base_url))},
        history=HistoryStore(sqlite_url),
    )
    url = await serve(brain)
    page = tab(driver)
    await page.open(url, "glade")
    await page.say("Is anyone here in the glade?")  # past the fast path: members answer
    await page.done(1)
    avatar = "document.querySelector('.msg.bot .who img.avatar')"
    loaded = f"{avatar}?.complete && {avatar}.naturalWidth === 64"
    await page.until(loaded)
    assert await page.texts(".msg.bot .who") == ["Seraphina"]
    proposals = "[...document.querySelectorAll('.proposal img.avatar')].length"
    assert await page.script(f"return {proposals};") == 2  # and each member's, in its panel
    await reload(page, "glade")
    await page.until(loaded)
