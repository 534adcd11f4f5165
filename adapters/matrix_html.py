"""Markdown to the HTML subset Matrix clients render, sanitized in one place.

Model output is Markdown; Matrix wants `formatted_body` in HTML. markdown-it renders
it (raw HTML in the input is escaped, not passed through), then nh3 (Ammonia)
keeps only the tags and attributes the Matrix spec suggests, so a model can never
inject scripts, styles or tracking images.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

# The Matrix client-server spec's recommended subset for m.room.message HTML.
ALLOWED_TAGS = {
    "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol", "sup", "sub",
    "li", "b", "i", "u", "strong", "em", "s", "code", "hr", "br", "div", "table", "thead",
    "tbody", "tr", "th", "td", "caption", "pre", "span", "details", "summary",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href"},
    "ol": {"start"},
    "code": {"class"},
    "span": {"data-mx-spoiler"},
}
# `breaks`: a newline is a line break, as in chat (Discord, Element's own composer), not a
# space as in a document: command answers and lists of one item a line stay one a line.
_markdown = (
    MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True})
    .enable("table")
    .enable("strikethrough")
)


def sanitize_html(html: str) -> str:
    """Keep only Matrix-safe tags and attributes; links only http(s) (matrix.to too) and mailto."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )


def markdown_to_html(text: str) -> str:
    """Render Markdown and sanitize the result."""
    return sanitize_html(_markdown.render(text)).strip()
