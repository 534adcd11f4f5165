"""Typed errors of the brain.

Every error a user may see is a `MombotError` carrying a short, user-facing text.
Adapters never format exceptions themselves: `Brain.handle` is the one boundary
that turns these into a message (and anything else into a generic one, logged
with its traceback).
"""

from __future__ import annotations


class MombotError(Exception):
    """An error whose `user_message` is safe and useful to show in chat."""

    def __init__(self, user_message: str, *, detail: str | None = None) -> None:
        super().__init__(detail or user_message)
        self.user_message = user_message


class ModelUnavailable(MombotError):
    """The model server cannot be reached (refused, DNS, dropped connection)."""


class ModelTimeout(MombotError):
    """The model server did not answer within the configured timeout."""


class ModelBadResponse(MombotError):
    """The model server answered with an error status or with something unparseable."""


class ContextTooLong(MombotError):
    """The prompt cannot be made to fit the model's context window."""


class BadCommand(MombotError):
    """A command was malformed: unknown name, bad argument, value out of range."""


class Busy(MombotError):
    """Too much work queued; the user should try again later."""


class FeatureUnavailable(MombotError):
    """The bot is not set up for what was asked (e.g. images without a generator)."""
