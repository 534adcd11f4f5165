"""Extensions: discovered by entry point, hooks and commands work, broken ones are disabled."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from brain.brain import Brain
from brain.commands.registry import Arg, CommandSpec
from brain.config import CharacterConfig, EndpointConfig
from brain.extensions import Extension, available_extensions
from brain.history.store import HistoryStore, StoredTurn
from brain.messages import CommandCall, Inbound
from brain.models.client import ModelClient
from brain.outbox import Outbox
from brain.strict_model import StrictModel
from tests.fake_openai import FakeOpenAIServer, last_user
from tests.helpers import RecordingOutbox, close_brain


class ShoutSettings(StrictModel):
    suffix: str = "!"


class Shout(Extension):
    """Upper-cases what the user says and signs the stored reply; adds /echo."""

    name = "shout"
    settings_model = ShoutSettings

    def commands(self) -> list[CommandSpec]:
        return [CommandSpec("echo", "Echo.", (Arg("words", "Words.", required=True, text=True),))]

    async def run_command(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        await outbox.send(call.args["words"] + self.settings.suffix)

    async def pre_process(self, message: Inbound, history: list[StoredTurn]) -> Inbound:
        from dataclasses import replace

        return replace(message, text=message.text.upper())

    async def post_process(self, reply: str, history: list[StoredTurn]) -> str:
        return reply + " (signed)"


class Exploding(Extension):
    name = "exploding"

    async def pre_process(self, message: Inbound, history: list[StoredTurn]) -> Inbound:
        raise RuntimeError("boom")


class FakeEntryPoint:
    def __init__(self, name: str, target: Any) -> None:
        self.name, self._target = name, target

    def load(self) -> Any:
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    found = {
        "shout": FakeEntryPoint("shout", Shout),
        "exploding": FakeEntryPoint("exploding", Exploding),
        "missing_dep": FakeEntryPoint("missing_dep", ImportError("No module named 'nothing'")),
    }
    monkeypatch.setattr("brain.extensions.available_extensions", lambda: found)


def make_brain(
    server: FakeOpenAIServer,
    history: HistoryStore,
    names: list[str],
    settings: dict[str, Any] | None = None,
) -> Brain:
    client = ModelClient("fake", EndpointConfig(base_url=server.base_url, context_window=4096))
    return Brain(
        characters=[CharacterConfig(name="mom", endpoint="fake", model="fake")],
        clients={"fake": client},
        history=history,
        extensions=names,
        extension_settings=settings or {},
    )


def test_deep_thinking_is_registered_as_an_entry_point() -> None:
    assert available_extensions()["deep_thinking"].value == "brain.commands.thinking:DeepThinking"


async def test_hooks_and_commands_of_an_extension(
    entry_points: None, fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    history = HistoryStore(sqlite_url)
    brain = make_brain(fake_server, history, ["shout"], {"shout": {"suffix": "?!"}})
    outbox = RecordingOutbox()
    await brain.handle(Inbound("t", "c", "u", "ann", "/echo hello there"), outbox)
    assert outbox.messages == ["hello there?!"]
    answered = RecordingOutbox()
    await brain.handle(Inbound("t", "c", "u", "ann", "please answer me"), answered)
    assert last_user(fake_server.requests[0].body) == "PLEASE ANSWER ME"
    stored = (await history.recent("t:c"))[0].content
    assert stored == "Hello from the fake server. (signed)"
    assert answered.text == stored  # what is shown is what is stored
    await close_brain(brain)


async def test_broken_extensions_are_disabled_and_the_bot_keeps_answering(
    entry_points: None,
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    brain = make_brain(
        fake_server,
        HistoryStore(sqlite_url),
        ["missing_dep", "not_installed", "exploding", "shout"],
    )
    assert [e.name for e in brain.extensions] == ["exploding", "shout"]
    assert "extension missing_dep failed to load and is disabled" in caplog.text
    assert "extension not_installed is not installed" in caplog.text
    outbox = RecordingOutbox()
    await brain.handle(Inbound("t", "c", "u", "ann", "are you still there?"), outbox)
    assert outbox.errors == [] and outbox.text == "Hello from the fake server. (signed)"
    assert "extension exploding failed in pre_process and is disabled" in caplog.text
    assert [e.name for e in brain.extensions] == ["shout"]
    await close_brain(brain)


async def test_bad_extension_settings_disable_only_that_extension(
    entry_points: None,
    fake_server: FakeOpenAIServer,
    sqlite_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    brain = make_brain(fake_server, HistoryStore(sqlite_url), ["shout"], {"shout": {"volume": 11}})
    assert brain.extensions == []
    assert "extension shout failed to load" in caplog.text
    await close_brain(brain)
