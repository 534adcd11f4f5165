"""What can happen to a channel, as typed events every adapter produces.

A message (text, files or a command), a button answer and a reply chosen among the
alternatives of a message answered again are taken in their turn; an
edit or a deletion names the platform message it changes (`Inbound.source`), which may
still wait in the channel's inbox, be the one being answered, or be a stored turn.
"""

from __future__ import annotations

from dataclasses import dataclass

from brain.messages import Inbound
from brain.outbox import Outbox


@dataclass(frozen=True)
class NewMessage:
    """A message to answer: words, files, or a command."""

    message: Inbound
    outbox: Outbox


@dataclass(frozen=True)
class ButtonAnswer:
    """A button or form answering the question open for its user (`message.text` is the
    answer: "yes", "no" or an edited prompt). Never parsed as a command."""

    message: Inbound
    outbox: Outbox


@dataclass(frozen=True)
class ReplyChosen:
    """Of the last message's replies (it was answered again: /retry), the one its reader
    now shows, by `author`: stored in place of the others (`brain.history.replies`)."""

    message: Inbound  # who chose it, and where
    outbox: Outbox
    text: str
    author: str


@dataclass(frozen=True)
class Edit:
    """The platform message `source` ("discord:1234") now says `text`."""

    source: str
    text: str


@dataclass(frozen=True)
class Deletion:
    """The platform message `source` was deleted (or redacted) there."""

    source: str


Answerable = NewMessage | ButtonAnswer | ReplyChosen
Change = Edit | Deletion
ChannelEvent = Answerable | Change
