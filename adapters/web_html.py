"""Markdown for the web page: Matrix's sanitized subset, with code blocks highlighted.

The page shows what `adapters.matrix_html` renders (markdown-it, raw HTML escaped, nh3 keeping
a short list of tags), and code blocks are highlighted on the server by Pygments with its
token classes, so the page needs no script and no CDN for it. The classes can only come from
here: the model's own HTML is escaped before anything reads it. The colours are one
stylesheet made from two Pygments styles, light and dark, following the page's theme.
"""

from __future__ import annotations

from typing import Any

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from adapters.matrix_html import ALLOWED_ATTRIBUTES, ALLOWED_TAGS

PREFIX = "hl-"  # Pygments' token classes, kept apart from the page's own
FORMATTER = HtmlFormatter(nowrap=True, classprefix=PREFIX)
LIGHT, DARK = "default", "monokai"


def _highlight(code: str, language: str, _attributes: Any) -> str:
    """Token-coloured HTML for a fenced block of a language Pygments knows; "" otherwise
    (markdown-it then escapes the block as plain code)."""
    if not language:
        return ""
    try:
        lexer = get_lexer_by_name(language)
    except ClassNotFound:
        return ""
    return highlight(code, lexer, FORMATTER)


_markdown = (
    MarkdownIt(
        "commonmark",
        {"html": False, "linkify": False, "breaks": True, "highlight": _highlight},
    )
    .enable("table")
    .enable("strikethrough")
)
_ATTRIBUTES = {**ALLOWED_ATTRIBUTES, "span": {"class"}, "code": {"class"}}


def markdown_to_html(text: str) -> str:
    """Render Markdown for the page and sanitize the result."""
    html = nh3.clean(
        _markdown.render(text),
        tags=ALLOWED_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )
    return html.strip()


def highlight_css() -> str:
    """The token colours: light by default, dark where the page is dark (by the system's
    setting unless the page's toggle says light, or by the toggle)."""
    light = HtmlFormatter(style=LIGHT, classprefix=PREFIX).get_style_defs(".msg pre")
    dark = HtmlFormatter(style=DARK, classprefix=PREFIX).get_style_defs(
        ":root[data-theme=dark] .msg pre"
    )
    system_dark = HtmlFormatter(style=DARK, classprefix=PREFIX).get_style_defs(
        ":root:not([data-theme=light]) .msg pre"
    )
    return f"{light}\n{dark}\n@media (prefers-color-scheme: dark) {{\n{system_dark}\n}}\n"
