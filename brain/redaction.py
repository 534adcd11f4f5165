"""Keeps secrets out of log records, whichever library writes them.

Libraries log more than we would: matrix-nio, at DEBUG, logs each response it validates,
the login response with its access token included. So every log handler mombot installs
gets `RedactingFilter`, which replaces each secret that a component registered (API keys,
passwords, tokens) and anything shaped like an access token or a bearer credential.
"""

from __future__ import annotations

import logging
import re
import traceback

MASK = "[redacted]"
_secrets: set[str] = set()
_SHAPES = (
    re.compile(r"""(["']?access_token["']?\s*[:=]\s*["']?)([^"'\s,&}]+)"""),
    re.compile(r"(Bearer\s+)(\S+)", re.IGNORECASE),
)


def register_secret(value: str | None) -> None:
    """Remember a secret so that no log line shows it (short values would mask too much)."""
    if value and len(value) >= 6:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for shape in _SHAPES:
        text = shape.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and traceback) with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_redaction(handler: logging.Handler) -> logging.Handler:
    handler.addFilter(RedactingFilter())
    return handler
