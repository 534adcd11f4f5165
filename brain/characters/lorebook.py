"""Lorebooks (world info): entries that enter a prompt when their keys come up.

Read from a card's `character_book` (V2/V3), a stand-alone V3 lorebook
(`spec: "lorebook_v3"`) or SillyTavern's World Info export (`{"entries": {"0": {...}}}`),
all into one shape (`Lore`). For each message, the last `scan_depth` messages are scanned:
an entry fires when one of its keys appears (case-insensitive and whole-word unless the entry
says otherwise; a regular expression with `use_regex`), and, for a selective entry, when its
secondary keys agree as its logic says; `constant` entries always fire. Fired entries may
name further keys in their own text (`recursive_scanning`, at most `MAX_RECURSION` rounds).
They are taken by priority within the book's `token_budget` (counted by the model's own
tokenizer), then placed by `insertion_order`, before or after the character's description.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import regex
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

MAX_RECURSION = 3  # rounds of entries waking entries
REGEX_TIMEOUT_S = 0.05  # one use_regex key's search, at most
MAX_ENTRIES = 2000  # a book larger than this is cut (bounded work per message)
Logic = Literal["and_any", "not_all", "not_any", "and_all"]
ST_LOGIC: dict[int, Logic] = {0: "and_any", 1: "not_all", 2: "not_any", 3: "and_all"}


class StrictModel(BaseModel):
    """As brain.config's models: unknown keys are refused (this module is imported by it)."""

    model_config = ConfigDict(extra="forbid")


class LoreEntry(StrictModel):
    """One entry, whichever format it came from."""

    name: str = ""
    keys: list[str] = Field(default_factory=list)
    secondary_keys: list[str] = Field(default_factory=list)
    selective: bool = False  # the secondary keys count, as `logic` says
    logic: Logic = "and_any"
    content: str = ""
    constant: bool = False
    enabled: bool = True
    insertion_order: float = 100
    priority: float = 100  # kept first when the budget is short
    position: Literal["before_char", "after_char"] = "before_char"
    case_sensitive: bool = False
    whole_words: bool = True
    use_regex: bool = False


class Lore(StrictModel):
    """A character's lorebook (its card's and any attached ones, merged)."""

    entries: list[LoreEntry] = Field(default_factory=list)
    scan_depth: int = Field(4, ge=0, le=100)  # messages scanned, the newest included
    token_budget: int = Field(512, ge=0)
    recursive_scanning: bool = False


# What fired in this message's prompts, for /debug (set by the chat pipeline).
fired_lore: ContextVar[list[str] | None] = ContextVar("fired_lore", default=None)


@dataclass(frozen=True)
class Fired:
    """An entry in this prompt, and why (for /debug)."""

    entry: LoreEntry
    why: str  # "constant", "key 'glade'", "key 'glade' (from entry 'forest')"


def read_lore(document: Any) -> Lore:
    """A lorebook of any of the three formats (raises ValueError if it is none)."""
    if not isinstance(document, dict):
        raise ValueError("a lorebook is a JSON object")
    if document.get("spec") == "lorebook_v3":
        document = document.get("data") or {}
    entries = document.get("entries")
    if isinstance(entries, dict):  # SillyTavern's World Info: entries keyed by uid
        parsed = [_from_world_info(e) for e in entries.values() if isinstance(e, dict)]
        return Lore(entries=parsed[:MAX_ENTRIES])
    if not isinstance(entries, list):
        raise ValueError("a lorebook has a list (or SillyTavern's table) of entries")
    parsed = [_from_card_book(e) for e in entries if isinstance(e, dict)]
    settings = {
        key: document[key]
        for key in ("scan_depth", "token_budget", "recursive_scanning")
        if document.get(key) is not None
    }
    return Lore(entries=parsed[:MAX_ENTRIES], **settings)


def merge(books: Iterable[Lore]) -> Lore | None:
    """Several books as one (the widest scan, the largest budget); None if all are empty."""
    books = [b for b in books if b.entries]
    if not books:
        return None
    return Lore(
        entries=[e for b in books for e in b.entries],
        scan_depth=max(b.scan_depth for b in books),
        token_budget=max(b.token_budget for b in books),
        recursive_scanning=any(b.recursive_scanning for b in books),
    )


def _from_card_book(raw: dict[str, Any]) -> LoreEntry:
    """A V2/V3 `character_book` entry (V3 adds use_regex and its extensions)."""
    given = raw.get("extensions")
    extensions: dict[str, Any] = given if isinstance(given, dict) else {}
    position = "after_char" if raw.get("position") == "after_char" else "before_char"
    logic = _logic(extensions.get("selectiveLogic"))  # SillyTavern's, kept in extensions
    return LoreEntry(
        name=str(raw.get("name") or raw.get("comment") or ""),
        keys=_texts(raw.get("keys")),
        secondary_keys=_texts(raw.get("secondary_keys")),
        selective=bool(raw.get("selective")),
        logic=logic,
        content=str(raw.get("content") or ""),
        constant=bool(raw.get("constant")),
        enabled=raw.get("enabled") is not False,
        insertion_order=_number(raw.get("insertion_order"), 100),
        priority=_number(raw.get("priority"), 100),
        position=position,
        case_sensitive=bool(raw.get("case_sensitive")),
        whole_words=extensions.get("match_whole_words") is not False,
        use_regex=bool(raw.get("use_regex")),
    )


def _from_world_info(raw: dict[str, Any]) -> LoreEntry:
    """An entry of SillyTavern's World Info export."""
    return LoreEntry(
        name=str(raw.get("comment") or ""),
        keys=_texts(raw.get("key")),
        secondary_keys=_texts(raw.get("keysecondary")),
        selective=bool(raw.get("selective")),
        logic=_logic(raw.get("selectiveLogic")),
        content=str(raw.get("content") or ""),
        constant=bool(raw.get("constant")),
        enabled=not raw.get("disable"),
        insertion_order=_number(raw.get("order"), 100),
        priority=_number(raw.get("order"), 100),
        position="after_char" if raw.get("position") == 1 else "before_char",
        case_sensitive=bool(raw.get("caseSensitive")),
        whole_words=raw.get("matchWholeWords") is not False,
        use_regex=bool(raw.get("useRegex")),
    )


def _texts(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str) and v.strip()] if isinstance(value, list) else []


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def _logic(value: Any) -> Logic:
    """SillyTavern's selectiveLogic number as a name (AND ANY where it says nothing)."""
    return ST_LOGIC.get(value, "and_any") if isinstance(value, int) else "and_any"


def found(key: str, text: str, entry: LoreEntry) -> bool:
    """Whether `key` appears in `text` as the entry says keys are matched."""
    flags = 0 if entry.case_sensitive else re.IGNORECASE
    if entry.use_regex:  # a card's own pattern: time-boxed, and a broken one matches nothing
        try:
            return regex.search(key, text, flags, timeout=REGEX_TIMEOUT_S) is not None
        except (regex.error, TimeoutError):
            log.warning("lorebook: the pattern %r failed or took too long: skipped", key[:80])
            return False
    pattern = re.escape(key.strip())
    if entry.whole_words:
        pattern = rf"(?<!\w){pattern}(?!\w)"
    return re.search(pattern, text, flags) is not None


def _why(entry: LoreEntry, text: str) -> str | None:
    """Why the entry fires on `text`, or None."""
    if entry.constant:
        return "constant"
    key = next((k for k in entry.keys if found(k, text, entry)), None)
    if key is None:
        return None
    if entry.selective and entry.secondary_keys:
        hits = [found(k, text, entry) for k in entry.secondary_keys]
        agree = {
            "and_any": any(hits),
            "and_all": all(hits),
            "not_any": not any(hits),
            "not_all": not all(hits),
        }[entry.logic]
        if not agree:
            return None
    return f"key {key!r}"


async def fire(
    lore: Lore, scanned: list[str], cost: Callable[[str], Awaitable[int]]
) -> list[Fired]:
    """The entries for a prompt whose last messages are `scanned` (oldest first), within the
    budget, in insertion order."""
    text = "\n".join(scanned[-lore.scan_depth :]) if lore.scan_depth else ""
    candidates = [e for e in lore.entries if e.enabled and e.content.strip()]
    fired: dict[int, Fired] = {}
    for round_number in range(1 + (MAX_RECURSION if lore.recursive_scanning else 0)):
        new = {}
        for index, entry in enumerate(candidates):
            if index in fired:
                continue
            why = _why(entry, text)
            if why is not None:
                new[index] = Fired(entry, why if round_number == 0 else f"{why} (from lore)")
        if not new:
            break
        fired |= new
        text = "\n".join(f.entry.content for f in new.values())  # what they say wakes others
    chosen, spent = [], 0
    for shot in sorted(fired.values(), key=lambda f: -f.entry.priority):
        tokens = await cost(shot.entry.content)
        if spent + tokens <= lore.token_budget:
            chosen.append(shot)
            spent += tokens
    return sorted(chosen, key=lambda f: f.entry.insertion_order)


def with_lore(persona: str, shots: list[Fired], character: str) -> str:
    """The persona with the fired entries before or after it, and each noted for /debug."""
    noted = fired_lore.get()
    if noted is not None:
        for shot in shots:
            label = shot.entry.name or (shot.entry.keys[:1] or ["(constant)"])[0]
            noted.append(f"{character}: {label!r}, {shot.why}")
    before = [s.entry.content.strip() for s in shots if s.entry.position == "before_char"]
    after = [s.entry.content.strip() for s in shots if s.entry.position == "after_char"]
    return "\n\n".join([*before, persona, *after])
