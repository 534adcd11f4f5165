"""The files a character's config names — its card, its lorebooks, its picture — read into
it when the config is read (`bot.config.load_config`), so the brain gets plain settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from brain.characters.card_prompt import (
    CARD_SYSTEM,
    card_examples,
    card_greetings,
    card_persona,
    card_post_history,
)
from brain.characters.cards import CardError, read_card
from brain.characters.lorebook import Lore, merge, read_lore
from brain.config import CharacterConfig

if TYPE_CHECKING:  # the config imports this module
    from bot.config import MombotConfig


class CharacterFileError(ValueError):
    """A file a character names cannot be read (the message says which, and the fix)."""


def with_files(config: MombotConfig, folder: Path) -> MombotConfig:
    """Each character with a `card` gets the persona, post-history instructions, example
    dialogues and greetings its card makes (`brain.characters.card_prompt`); its own
    `persona` is the card's {{original}}, its own `post_history` kept when it has one. Its
    lore is its card's book with its `lorebooks` files; each channel's `lorebooks` are read
    into `channel_lore`. Avatar paths are made absolute (they are relative to the config
    file)."""
    channel_lore = {}
    for channel, files in config.lorebooks.items():
        books = [_lorebook(folder / file, f"lorebooks.{channel}") for file in files]
        if (lore := merge(books)) is not None:
            channel_lore[channel] = lore
    characters = [_with_card(c, folder) for c in config.characters]
    return config.model_copy(update={"characters": characters, "channel_lore": channel_lore})


def _with_card(character: CharacterConfig, folder: Path) -> CharacterConfig:
    changes: dict[str, Any] = {}
    if character.avatar:  # read by the adapters, wherever mombot runs from
        changes["avatar"] = str((folder / character.avatar).resolve())
    where = f"characters.{character.name}.lorebooks"
    books = [_lorebook(folder / file, where) for file in character.lorebooks]
    if character.card:
        try:
            card = read_card(folder / character.card)
        except CardError as exc:
            raise CharacterFileError(
                f"characters.{character.name}.card: {exc}. Fix: import the card "
                "again (mombot characters import FILE) or correct the path"
            ) from None
        own = "persona" in character.model_fields_set  # else the card's usual default
        changes |= {
            "persona": card_persona(card, character.persona if own else CARD_SYSTEM),
            "post_history": character.post_history or card_post_history(card),
            "greetings": character.greetings or card_greetings(card),
            "examples": character.examples or card_examples(card),
        }
        if isinstance(book := card.data.get("character_book"), dict) and book.get("entries"):
            books.insert(0, _lore(book, f"{character.card} (its character_book)"))
    changes["lore"] = merge(books)
    return character.model_copy(update=changes)


def _lorebook(path: Path, where: str) -> Lore:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CharacterFileError(
            f"{where}: cannot read {path} ({exc}). "
            "Fix: correct the path (relative to the config file)"
        ) from None
    return _lore(document, str(path))


def _lore(document: Any, where: str) -> Lore:
    try:
        return read_lore(document)
    except (ValueError, ValidationError) as exc:
        raise CharacterFileError(f"{where} is not a lorebook mombot can read: {exc}") from None
