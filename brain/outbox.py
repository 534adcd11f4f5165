"""The interface adapters implement so the brain can answer on any platform.

The outbox declares what its platform can do (`Capabilities`); the brain adapts
to it instead of assuming Discord or Matrix behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Capabilities:
    """What a platform allows when the bot writes to it."""

    max_message_length: int = 2000
    # Minimum seconds between two edits of one message; None: messages cannot be edited.
    edit_interval_s: float | None = 1.0
    markdown: bool = True
    max_upload_bytes: int = 8 * 1024 * 1024


MessageRef = Any
"""Whatever the adapter needs to find a message it sent again (an id, an object)."""


class Outbox(Protocol):
    """Where the brain's replies go. One outbox per inbound message."""

    capabilities: Capabilities

    async def send(self, text: str) -> MessageRef:
        """Send a new message and return a reference that `edit` accepts."""

    async def edit(self, ref: MessageRef, text: str) -> None:
        """Replace the whole text of a message sent earlier."""

    async def send_image(self, data: bytes, filename: str, caption: str) -> MessageRef:
        """Upload an image (PNG bytes) with a caption."""

    async def send_reasoning(self, text: str) -> None:
        """Show a model's reasoning folded away (a spoiler, a file, <details>, dimmed text)."""

    async def typing(self) -> None:
        """Show that the bot is working (a no-op where the platform has no such signal)."""

    async def error(self, text: str) -> None:
        """Tell the user something went wrong, in words fit for chat."""
