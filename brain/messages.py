"""The platform-neutral message model shared by every adapter and the brain.

Plain data only: no platform objects, no I/O. Adapters download attachments and
hand the brain bytes with a known size and type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Attachment:
    """A file that came with a message, already downloaded by the adapter."""

    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class CommandCall:
    """A parsed command: its name and validated arguments (see `brain.commands.registry`)."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Inbound:
    """One incoming message, as every adapter produces it."""

    platform: str
    channel_id: str
    author_id: str
    author_name: str
    text: str
    is_admin: bool = False  # the adapter decides (console: always; chats: configured admins)
    attachments: tuple[Attachment, ...] = ()
    command: CommandCall | None = None
    message_id: str = ""  # the platform's id of the message, where it has one
    is_direct: bool = False  # a one-to-one conversation with the bot (a DM, the console)

    @property
    def user_key(self) -> str:
        """The author among all platforms' users ("discord:1234"): their persona's key."""
        return f"{self.platform}:{self.author_id}"

    @property
    def direct_user(self) -> str:
        """The author's key where this is their direct conversation with the bot; "" in a
        shared one (whose memory may follow a user: `brain.memory.following`)."""
        return self.user_key if self.is_direct else ""

    @property
    def source(self) -> str:
        """The message's key among all platforms' ("discord:1234"); "" without an id."""
        return f"{self.platform}:{self.message_id}" if self.message_id else ""

    @property
    def channel_key(self) -> str:
        """The key history is stored under: one conversation per platform channel."""
        return f"{self.platform}:{self.channel_id}"
