"""`mombot characters import | export | list`: character cards into the config and out again.

An imported card is kept whole in a file of its own, `characters/NAME.json` beside the config
file (the V3 card, every field and extension as it came), with its picture as
`characters/NAME.png`; `config.toml` gets a short `[[characters]]` table that points to it
(name, card, role, and the endpoint and model when given), so it stays readable. Imported
`--as synthesizer`, the card writes the replies and the synthesizer before it becomes a
member (its `role` line changed). The new config is checked before it replaces the old one:
a card that would break it changes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from bot.config import ConfigError, load_config
from brain.characters.cards import Card, CardError, card_data, read_card, write_png

CARDS_FOLDER = "characters"


def add_characters_arguments(command: argparse.ArgumentParser) -> None:
    actions = command.add_subparsers(dest="action", metavar="ACTION", required=True)
    adding = actions.add_parser(
        "import", help="add a character from a card: PNG, APNG, JSON (V1, V2, V3) or CHARX"
    )
    adding.add_argument("file", type=Path, help="the card file")
    adding.add_argument(
        "--as", dest="role", choices=("member", "synthesizer"), default="member", help="its role"
    )
    adding.add_argument("--endpoint", help="an [endpoints.NAME] section (default: embedded)")
    adding.add_argument("--model", help="the model name as that endpoint knows it")
    writing = actions.add_parser("export", help="write a character as a V3 card PNG")
    writing.add_argument("name", help="the character's name")
    writing.add_argument("file", type=Path, help="the PNG to write")
    actions.add_parser("list", help="the characters, and the card each comes from")


def run_characters(args: argparse.Namespace) -> int:
    """Returns the exit status; says what it did, or what is wrong and how to fix it."""
    path: Path = args.config or Path("config.toml")
    try:
        if args.action == "import":
            return _import(path, args.file, args.role, args.endpoint, args.model)
        if args.action == "export":
            return _export(path, args.name, args.file)
        return _list(path)
    except (CardError, ConfigError) as exc:
        print(f"mombot: {exc}")
        return 2


def _import(path: Path, file: Path, role: str, endpoint: str | None, model: str | None) -> int:
    if not path.is_file():
        raise ConfigError(f"{path}: no such file. Fix: run it where config.toml is, or --config")
    card = read_card(file)
    config, _ = load_config(path)
    name = card.name.strip()[:64]
    if any(c.name == name for c in config.characters):
        raise ConfigError(
            f"a character named {name!r} is in {path} already. Fix: remove or rename that one"
        )
    folder = path.parent / CARDS_FOLDER
    folder.mkdir(exist_ok=True)
    stem = _free_stem(folder, name)
    card_file = folder / f"{stem}.json"
    card_file.write_text(json.dumps(card.as_v3(), indent=2, ensure_ascii=False) + "\n")
    written = [card_file]
    if card.avatar is not None:
        written.append(folder / f"{stem}.png")
        written[-1].write_bytes(card.avatar)
    table = {"name": name, "card": f"{CARDS_FOLDER}/{stem}.json", "role": role}
    if card.avatar is not None:
        table["avatar"] = f"{CARDS_FOLDER}/{stem}.png"
    table |= {k: v for k, v in (("endpoint", endpoint), ("model", model)) if v}
    lines = [f"\n[[characters]]  # imported from {file.name}"]
    lines += [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in table.items()]
    candidate = path.with_name(f".{path.name}.new")
    kept = path.read_text(encoding="utf-8").rstrip("\n")
    writer = next((c for c in config.characters if c.role == "synthesizer"), None)
    if role == "synthesizer" and writer is not None:  # the card writes the replies now
        kept = _as_member(kept, writer.name)
    candidate.write_text(kept + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    try:
        load_config(candidate)  # the config as it would be: refused whole if it breaks
    except ConfigError:
        candidate.unlink()
        for made in written:
            made.unlink()
        raise
    os.replace(candidate, path)
    print(f"Added {name} ({role}) from {file.name}: {table['card']}, listed in {path}.")
    if role == "synthesizer" and writer is not None:
        print(f"{writer.name} is a member now: {name} writes the replies.")
    return 0


def _as_member(text: str, name: str) -> str:
    """The config's text with the `[[characters]]` table of `name` made a member (its
    `role = "synthesizer"` line; the rest, comments included, as it was)."""
    tables = re.split(r"(?m)^(?=\[)", text)  # at each table header
    own_name = re.compile(rf"(?m)^name\s*=\s*{re.escape(json.dumps(name))}")
    for index, table in enumerate(tables):
        if table.startswith("[[characters]]") and own_name.search(table):
            tables[index] = re.sub(
                r'(?m)^(role\s*=\s*)"synthesizer"', r'\1"member"', table, count=1
            )
    return "".join(tables)


def _free_stem(folder: Path, name: str) -> str:
    """A file name for the card: its name in plain letters, numbered if taken."""
    stem = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "character"
    taken = {p.stem for p in folder.iterdir()}
    number, free = 2, stem
    while free in taken:
        free, number = f"{stem}-{number}", number + 1
    return free


def _export(path: Path, name: str, file: Path) -> int:
    config, _ = load_config(path if path.is_file() else None)
    character = next((c for c in config.characters if c.name == name), None)
    if character is None:
        known = ", ".join(c.name for c in config.characters)
        raise ConfigError(f"no character named {name!r}. Fix: one of {known}")
    if character.card:
        card = read_card(path.parent / character.card)
        card.avatar = Path(character.avatar).read_bytes() if character.avatar else None
    else:  # a character of the config alone: its persona is the card's system prompt
        card = Card(card_data({"name": character.name, "system_prompt": character.persona}))
    write_png(card, file)
    print(f"Wrote {character.name} to {file} (a V3 card, with a V2 copy for older programs).")
    return 0


def _list(path: Path) -> int:
    config, _ = load_config(path if path.is_file() else None)
    for c in config.characters:
        source = f"card {c.card}" if c.card else "persona in the config"
        state = "" if c.enabled else ", disabled"
        print(f"{c.name}: {c.role}{state}, {c.model} on {c.endpoint}; {source}")
    return 0
