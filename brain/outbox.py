"""The interface adapters implement so the brain can answer on any platform.

The outbox declares what its platform can do (`Capabilities`: message length, edits);
the brain adapts to it instead of assuming Discord or Matrix behaviour. Markdown goes
out as written: each outbox renders it the way its platform shows formatted text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable


@dataclass(frozen=True)
class Capabilities:
    """What a platform allows when the bot writes to it."""

    max_message_length: int = 2000
    # Minimum seconds between two edits of one message; None: messages cannot be edited.
    edit_interval_s: float | None = 1.0


Ref = TypeVar("Ref")
"""What an outbox needs to find a message it sent again: Discord's message object, a Matrix
event id, a line number in the console. Each outbox names its own; the brain only hands
back what `send` gave it, so to the brain a reference is an opaque `object`."""


class Outbox(Protocol[Ref]):
    """Where the brain's replies go. One outbox per inbound message."""

    capabilities: Capabilities

    async def send(self, text: str) -> Ref:
        """Send a new message and return a reference that `edit` accepts."""

    async def edit(self, ref: Ref, text: str) -> None:
        """Replace the whole text of a message sent earlier."""

    async def send_image(self, data: bytes, filename: str, caption: str) -> Ref:
        """Upload an image (PNG bytes) with a caption."""

    async def send_reasoning(self, text: str) -> None:
        """Show a model's reasoning folded away (a spoiler, a file, <details>, dimmed text)."""

    async def typing(self) -> None:
        """Show that the bot is working (a no-op where the platform has no such signal)."""

    async def error(self, text: str) -> None:
        """Tell the user something went wrong, in words fit for chat."""


RefIn = TypeVar("RefIn", contravariant=True)  # a `Ref` that is only taken, never given


@runtime_checkable
class ConfirmingOutbox(Protocol[RefIn]):
    """An outbox whose platform has buttons, for the image-prompt confirm step.

    The proposal gets "draw it", "edit" and "cancel" controls for the user it was written
    for. Pressing one comes back to the brain as that user's plain answer ("yes", "no" or
    the edited prompt), exactly as if they had typed it; typing still works too. Outboxes
    without buttons just show the text.
    """

    async def ask_to_confirm(
        self, ref: RefIn, text: str, prompt: str, user_id: str, timeout_s: float
    ) -> None:
        """Replace message `ref` with `text` and the controls; `prompt` fills the edit form."""


@runtime_checkable
class ProgressOutbox(Protocol):
    """An outbox that shows a passing status line while the bot works (the console in a
    terminal): which characters have answered, the /think round. The next message it
    sends replaces the line. Outboxes without it show nothing extra (chat platforms have
    their typing indicator; the /think status message is edited everywhere)."""

    async def progress(self, text: str) -> None:
        """Show `text` as the current status, replacing the previous one."""


@runtime_checkable
class DetailOutbox(Protocol):
    """An outbox that shows how a reply was made, beside it (the web page's panel): each
    member's proposal (`brain.chat.mixture.Proposal`) with its time, and every model call of the
    message (`brain.models.usage.Usage`) with its tokens. Others show them only with /debug on."""

    async def details(self, proposals: list[Any], calls: list[Any]) -> None:
        """Attach the proposals and calls to the reply just sent."""


@runtime_checkable
class AuthoredOutbox(Protocol):
    """An outbox that shows who wrote each message (the console's `name>` label). A
    character's reply is sent as that character; everything else (notes, command answers)
    through `send`, as the bot's own."""

    async def send_as(self, author: str, text: str) -> Any:
        """Send a new message written by character `author`; returns what `send` would."""


async def send_as(outbox: Outbox, author: str | None, text: str) -> object:
    """Send `text` as `author` where the outbox shows authors, else as any message."""
    if author is not None and isinstance(outbox, AuthoredOutbox):
        return await outbox.send_as(author, text)
    return await outbox.send(text)


Reporter = Callable[[str], Awaitable[None]]
"""Where the brain reports what it is doing (see `reporter`)."""


def reporter(outbox: Outbox) -> Reporter:
    """The outbox's status line where it has one, else a reporter that shows nothing."""
    if isinstance(outbox, ProgressOutbox):
        return outbox.progress

    async def nothing(text: str) -> None:
        return None

    return nothing


def answered_line(prefix: str, names: list[str], done: set[str]) -> str:
    """'round 2/3: logic ✓  critic …': who has answered so far."""
    marks = "  ".join(f"{name} {'✓' if name in done else '…'}" for name in names)
    return f"{prefix}{marks}"
