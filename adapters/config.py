"""Config sections of the adapters (kept free of any platform library import)."""

from __future__ import annotations

from pydantic import Field

from brain.config import StrictModel


class ConsoleConfig(StrictModel):
    """`mombot chat`: talk to the bot in the terminal."""

    user_name: str = Field("you", min_length=1, description="Your name in the stored history.")
    channel: str = Field("console", min_length=1, description="History channel of the console.")


class DiscordConfig(StrictModel):
    """Discord bot (token from MOMBOT_DISCORD_TOKEN)."""

    enabled: bool = False


class MatrixConfig(StrictModel):
    """Matrix bot account (password from MOMBOT_MATRIX_PASSWORD or MOMBOT_MATRIX_ACCESS_TOKEN)."""

    enabled: bool = False
    homeserver: str = Field("", description="e.g. https://matrix.example.org")
    user_id: str = Field("", description="e.g. @mombot:example.org")
