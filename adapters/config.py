"""Config sections of the adapters (kept free of any platform library import)."""

from __future__ import annotations

from pydantic import Field

from brain.strict_model import StrictModel


class ConsoleConfig(StrictModel):
    """`mombot chat`: talk to the bot in the terminal."""

    user_name: str = Field("you", min_length=1, description="Your name in the stored history.")
    channel: str = Field("console", min_length=1, description="History channel of the console.")


class ChatLimits(StrictModel):
    """Limits every chat platform applies: per-user rate and attachment size."""

    rate_limit_messages: int = Field(6, ge=1, description="Messages a user may send per window.")
    rate_limit_window_s: float = Field(60.0, gt=0, description="Length of that window in seconds.")
    max_attachment_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Larger attachments are refused before download."
    )


class DiscordConfig(ChatLimits):
    """Discord bot (token from MOMBOT_DISCORD_TOKEN). Empty lists mean "no restriction"."""

    enabled: bool = Field(False, description="Run the Discord bot in `mombot run`.")
    guilds: list[int] = Field(
        default_factory=list,
        description="Servers the bot serves; slash commands are synced to these at once "
        "(empty: every server, commands synced globally, which can take up to an hour).",
    )
    answer_channels: list[int] = Field(
        default_factory=list, description="Channels where the bot answers every message."
    )
    start_threads: bool = Field(
        False, description="When mentioned in a channel, answer in a new thread on that message."
    )
    allowed_channels: list[int] = Field(default_factory=list, description="Channel allowlist.")
    allowed_users: list[int] = Field(default_factory=list, description="User allowlist.")
    allowed_roles: list[int] = Field(default_factory=list, description="Role allowlist.")
    admin_users: list[int] = Field(default_factory=list, description="May /reset shared channels.")
    admin_roles: list[int] = Field(default_factory=list, description="Roles that count as admin.")
    edit_interval_s: float = Field(1.0, ge=0.2, description="Seconds between edits of a reply.")
    webhooks: bool = Field(
        False,
        description="Post replies through a channel webhook under the writing character's name "
        "and picture (needs Manage Webhooks; without it, normal messages and one log line).",
    )


class MatrixConfig(ChatLimits):
    """Matrix account (MOMBOT_MATRIX_PASSWORD or MOMBOT_MATRIX_ACCESS_TOKEN); empty: no limit."""

    enabled: bool = Field(False, description="Run the Matrix bot in `mombot run`.")
    homeserver: str = Field("", description="e.g. https://matrix.example.org")
    user_id: str = Field("", description="e.g. @mombot:example.org")
    device_name: str = Field("mombot", min_length=1, description="Shown in the account's sessions.")
    answer_rooms: list[str] = Field(
        default_factory=list, description="Room ids where the bot answers every message."
    )
    allowed_users: list[str] = Field(
        default_factory=list, description="User ids whose invites and messages are accepted."
    )
    allowed_servers: list[str] = Field(
        default_factory=list, description="Homeservers whose users are accepted, e.g. example.org."
    )
    admin_users: list[str] = Field(default_factory=list, description="May /reset shared rooms.")
    edit_interval_s: float = Field(1.5, ge=0.2, description="Seconds between edits of a reply.")
    encryption: bool = Field(True, description="Join and answer in encrypted rooms (E2EE).")
    name_from_character: bool = Field(
        False,
        description="In each room, the bot's display name is the name of the character who "
        "writes the replies (the synthesizer: a card's name).",
    )


class WebConfig(StrictModel):
    """`mombot web`: a chat page in the browser (token from MOMBOT_WEB_TOKEN off this machine)."""

    enabled: bool = Field(False, description="Serve the page in `mombot run` too.")
    host: str = Field(
        "127.0.0.1",
        description="Listen address. Anything but this machine (127.0.0.1, ::1, localhost) "
        "needs MOMBOT_WEB_TOKEN, which the page then asks for.",
    )
    port: int = Field(8765, ge=0, le=65535, description="Port; 0: any free port.")
    user_name: str = Field("you", min_length=1, description="Your name in the stored history.")
    max_attachment_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Larger attachments are refused."
    )
