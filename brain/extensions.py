"""Extensions: optional behaviour around the brain, found through Python entry points.

An extension may add commands and hook into every message with
`pre_process(message, history)` and `post_process(reply, history)`. Built-ins are
registered exactly like third-party ones (entry point group `mombot.extensions`).
A broken extension is disabled with a logged error; the bot keeps running.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol

from brain.characters.runner import CharacterRunner, Turn
from brain.chat.mixture import Mixture
from brain.commands.registry import CommandRegistry, CommandSpec
from brain.config import CharacterConfig
from brain.errors import FeatureUnavailable
from brain.history.store import HistoryStore, StoredTurn
from brain.messages import CommandCall, Inbound
from brain.models.usage import TokenTracker
from brain.outbox import Outbox
from brain.streaming import ReplyStreamer
from brain.strict_model import StrictModel

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mombot.extensions"


class NoSettings(StrictModel):
    """An extension without settings."""


@dataclass(frozen=True)
class ExtensionContext:
    """What the brain lends an extension.

    `replies` ends a reply the way every chat reply ends (hooks, storing, the empty-reply
    note) and recalls for a turn what the memory holds; `cool_down` waits for a hot GPU
    before model work.
    """

    members: list[CharacterConfig]
    synthesizer: CharacterConfig
    runner: CharacterRunner
    mixture: Mixture
    history: HistoryStore
    tracker: TokenTracker
    replies: ReplyEnding
    cool_down: Callable[[Outbox], Awaitable[None]]


class ReplyEnding(Protocol):
    """The one way a streamed reply is finalized and stored (see `brain.chat.pipeline`), and the
    one way a turn gets what the memory recalls for it."""

    async def remembered(self, turn: Turn, text: str) -> Turn: ...

    def streamer(self, outbox: Outbox, channel: str) -> ReplyStreamer: ...

    async def store(self, channel: str, reply: str, author: str, outbox: Outbox) -> None: ...


class Extension:
    """Base class. Override what you need; every hook is optional."""

    name: ClassVar[str] = ""
    settings_model: ClassVar[type[StrictModel]] = NoSettings

    def __init__(self, context: ExtensionContext, settings: Any) -> None:
        self.context = context
        self.settings = settings

    def commands(self) -> list[CommandSpec]:
        """Commands this extension answers (registered with the brain's registry)."""
        return []

    async def run_command(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        """Answer one of the commands from `commands()` (extensions that add commands do)."""
        raise FeatureUnavailable(
            f"/{call.name} is registered by {self.name} but not handled by it."
        )

    async def pre_process(self, message: Inbound, history: list[StoredTurn]) -> Inbound:
        """Called before a chat message is answered; may return a changed message."""
        return message

    async def post_process(self, reply: str, history: list[StoredTurn]) -> str:
        """Called with the finished reply before it is stored; may return a changed reply."""
        return reply


def available_extensions() -> dict[str, Any]:
    """Installed extensions by name (entry points, not yet imported)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_extensions(
    names: list[str],
    settings: dict[str, dict[str, Any]],
    context: ExtensionContext,
    registry: CommandRegistry,
) -> list[Extension]:
    """Import, configure and register each listed extension; skip (and log) broken ones."""
    found = available_extensions()
    loaded: list[Extension] = []
    for name in names:
        if name not in found:
            log.error("extension %s is not installed (known: %s); skipped", name, ", ".join(found))
            continue
        try:
            cls = found[name].load()
            extension = cls(context, cls.settings_model.model_validate(settings.get(name, {})))
            for spec in extension.commands():
                registry.register(spec, extension.run_command)
        except Exception:  # an extension is third-party code: any failure disables it
            log.exception("extension %s failed to load and is disabled", name)
            continue
        loaded.append(extension)
        log.info("extension %s loaded", name)
    return loaded


class Hooks:
    """Runs the extensions' `pre_process` and `post_process` hooks; one that raises is disabled.

    The channel's recent history is read once per hook, and only if some extension wants it.
    """

    def __init__(self, history: HistoryStore) -> None:
        self.history = history
        self.extensions: list[Extension] = []

    async def pre_process(self, message: Inbound, channel: str) -> Inbound:
        return await self._run("pre_process", message, channel)

    async def post_process(self, reply: str, channel: str) -> str:
        return await self._run("post_process", reply, channel)

    async def _run(self, hook: str, value: Any, channel: str) -> Any:
        hooked = [
            e for e in self.extensions if getattr(type(e), hook) is not getattr(Extension, hook)
        ]
        if not hooked:
            return value
        recent = await self.history.recent(channel, limit=20)
        for extension in hooked:
            try:
                value = await getattr(extension, hook)(value, recent) or value
            except Exception:  # third-party code, as above
                log.exception("extension %s failed in %s and is disabled", extension.name, hook)
                self.extensions.remove(extension)
        return value
