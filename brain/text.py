"""Cleaning what people type before anything reads it."""

from __future__ import annotations

import re

# C0/C1 controls except tab and newline, and zero-width/bidi formatting characters.
_INVISIBLE = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]"
)


def clean_text(text: str) -> str:
    """Drop control and invisible formatting characters; normalise line ends."""
    return _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
