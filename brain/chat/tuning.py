"""Per-channel settings people change from chat (/settings) or the web page's panel: how long
the reply may be, and how freely the members answer.

Checked like config.toml (a pydantic model with the character settings' own bounds), and
kept in memory for the most recently tuned channels, as /debug's switch is: a restart goes
back to config.toml, which stays the one place for lasting settings.
"""

from __future__ import annotations

from pydantic import Field, ValidationError

from brain.bounded import BoundedDict
from brain.config import CharacterConfig
from brain.errors import BadCommand
from brain.strict_model import StrictModel

TUNED_CHANNELS = 4096  # channels whose settings are remembered


class ChannelSettings(StrictModel):
    """A channel's settings; None: the character's own from config.toml."""

    length: int | None = Field(
        None, ge=16, le=32768, description="The reply's length in tokens (its writer's)."
    )
    temperature: float | None = Field(
        None, ge=0, le=2, description="The members' temperature (the synthesizer keeps its own)."
    )

    def member(self, character: CharacterConfig) -> CharacterConfig:
        """A member as it answers in this channel."""
        if self.temperature is None:
            return character
        return character.model_copy(update={"temperature": self.temperature})

    def writer(self, character: CharacterConfig) -> CharacterConfig:
        """The character who writes the reply, as it writes in this channel."""
        if self.length is None:
            return character
        return character.model_copy(update={"max_tokens": self.length})


class ChannelTuning:
    """Each channel's settings (bounded: the most recently tuned `TUNED_CHANNELS`)."""

    def __init__(self) -> None:
        self._settings: BoundedDict[str, ChannelSettings] = BoundedDict(TUNED_CHANNELS)

    def get(self, channel: str) -> ChannelSettings:
        return self._settings.get(channel) or ChannelSettings()

    def change(self, channel: str, **changes: float | None) -> ChannelSettings:
        """The channel's settings with `changes`, checked; a bad value changes nothing."""
        merged = {**self.get(channel).model_dump(), **changes}
        try:
            settings = ChannelSettings.model_validate(merged)
        except ValidationError as exc:
            problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
            raise BadCommand(f"That setting is out of range ({problems}).") from None
        self._settings[channel] = settings
        return settings

    def reset(self, channel: str) -> None:
        self._settings.pop(channel, None)
