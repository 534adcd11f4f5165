"""The web page's controls panel (issue 36): the debug view, /think with its rounds, and the
channel's reply length and members' temperature, set with checkboxes and sliders and applied
as the commands that do it. Selenium on Debian's Chromium, as tests/test_web.py."""

from __future__ import annotations

from typing import Any

from tests.fake_openai import Behaviour, FakeOpenAIServer
from tests.test_web import driver, fake_endpoint, mixture, serve, tab

__all__ = ["driver", "serve"]  # fixtures, used by name

QUESTION = "Which colour would you paint a small kitchen?"  # past the fast path


def slide(name: str, value: float) -> str:
    """Move a slider and let it go, as a person does (`change` fires on release)."""
    return (
        f"const s = document.getElementById({name!r}); s.value = {value}; "
        "s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change'));"
    )


async def test_the_panel_sets_debug_think_and_this_channels_reply_length_and_temperature(
    fake_server: FakeOpenAIServer, sqlite_url: str, serve: Any, driver: Any
) -> None:
    fake_server.behaviour = Behaviour(reply="Sage green.")
    brain = mixture(fake_endpoint(fake_server), sqlite_url, extensions=["deep_thinking"])
    url = await serve(brain)
    page = tab(driver)
    await page.open(url, "panel")
    await page.script("document.getElementById('controls-toggle').click();")
    value = "document.getElementById('{}-value').innerText"
    await page.until(f"{value.format('length')} === '24'")  # the characters' own (config)
    assert await page.script(f"return {value.format('temperature')};") == "0"

    await page.script("document.getElementById('debug-view').click();")
    await page.done(1)
    await page.script(slide("length", 96))
    await page.done(2)
    await page.script(slide("temperature", 0.3))
    await page.done(3)
    shown = "\n".join(await page.texts(".msg"))
    assert "/debug on" in shown and "/settings --length 96" in shown
    assert "replies up to 96 tokens; members' temperature 0.3." in shown

    calls = len(fake_server.requests)
    await page.say(QUESTION)
    await page.until("document.getElementById('log').innerText.includes('Sage green.')")
    await page.done(5)
    asked = [r.body for r in fake_server.requests[calls:]]
    members = [b for b in asked if not b.get("stream")]
    (synthesis,) = [b for b in asked if b.get("stream")]
    assert len(members) == 2 and all(b["temperature"] == 0.3 for b in members)
    assert synthesis["max_tokens"] == 96 and synthesis["temperature"] == 0
    assert "proposals:" in "\n".join(await page.texts(".msg"))  # the debug view is on

    await page.script("document.getElementById('think').click();" + slide("rounds", 2))
    await page.say("Is tea better than coffee?")
    # its status message says which round of 2, however quickly the rounds pass
    await page.until("/[Rr]ound [12]\\/2/.test(document.getElementById('log').innerText)")
    mine = await page.texts(".msg.user .body")
    assert mine[-1] == "/think Is tea better than coffee? --rounds 2"

    await page.run(driver.refresh)  # the panel shows the bot's values, not the page's
    await page.until("document.body.dataset.ready === 'panel'")
    await page.script("document.getElementById('controls-toggle').click();")
    await page.until(f"{value.format('length')} === '96'")
    assert await page.script("return document.getElementById('debug-view').checked;")
