"""Extensions: optional behaviour around the brain, found through Python entry points.

An extension may add commands and hook into every message with
`pre_process(message, history)` and `post_process(reply, history)`. Built-ins are
registered exactly like third-party ones (entry point group `mombot.extensions`).
A broken extension is disabled with a logged error; the bot keeps running.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

from brain.commands import CommandRegistry, CommandSpec
from brain.config import CharacterConfig, StrictModel
from brain.errors import FeatureUnavailable
from brain.history import HistoryStore, StoredTurn
from brain.messages import CommandCall, Inbound
from brain.metrics import TokenTracker
from brain.mixture import Mixture
from brain.outbox import Outbox
from brain.runner import CharacterRunner

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mombot.extensions"


class NoSettings(StrictModel):
    """An extension without settings."""


@dataclass(frozen=True)
class ExtensionContext:
    """What the brain lends an extension."""

    members: list[CharacterConfig]
    synthesizer: CharacterConfig
    runner: CharacterRunner
    mixture: Mixture
    history: HistoryStore
    tracker: TokenTracker


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
        """Answer one of the commands from `commands()`; extensions that add commands override it."""
        raise FeatureUnavailable(f"/{call.name} is registered by {self.name} but not handled by it.")

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
                registry.register(spec)
        except Exception:
            log.exception("extension %s failed to load and is disabled", name)
            continue
        loaded.append(extension)
        log.info("extension %s loaded", name)
    return loaded
