"""Lorebooks (issue 34 item 4): the three formats read into one, entries fired by their keys
in the last messages as the spec and SillyTavern match them, within the budget, placed by
their order and position; and in a real prompt, with /debug saying what fired and why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import load_config
from brain.characters.lorebook import Lore, LoreEntry, fire, read_lore
from brain.messages import Inbound
from tests.fake_openai import FakeOpenAIServer, system_of
from tests.helpers import RecordingOutbox, close_brain
from tests.test_characters_cli import card_png, on_the_fake_server

ROOT = Path(__file__).resolve().parent.parent


async def words(text: str) -> int:
    return len(text.split())  # a simple tokenizer: what is tested is the budget's use


def entry(**fields: object) -> LoreEntry:
    return LoreEntry.model_validate({"content": "lore", **fields})


async def fired(lore: Lore, *messages: str) -> list[str]:
    return [f.entry.name for f in await fire(lore, list(messages), words)]


def test_the_three_formats_read_into_one() -> None:
    card_book = {
        "scan_depth": 2,
        "token_budget": 300,
        "recursive_scanning": True,
        "entries": [
            {
                "keys": ["glade"],
                "content": "A quiet clearing.",
                "insertion_order": 5,
                "position": "after_char",
                "selective": True,
                "secondary_keys": ["night"],
                "extensions": {"selectiveLogic": 2},
            }
        ],
    }
    book = read_lore(card_book)
    assert (book.scan_depth, book.token_budget, book.recursive_scanning) == (2, 300, True)
    (glade,) = book.entries
    assert glade.position == "after_char" and glade.logic == "not_any" and glade.selective
    v3 = read_lore(
        {"spec": "lorebook_v3", "data": {"entries": [{"keys": ["x"], "use_regex": True}]}}
    )
    assert v3.entries[0].use_regex
    world_info = {
        "entries": {
            "0": {
                "key": ["river"],
                "keysecondary": [],
                "content": "It floods.",
                "order": 3,
                "position": 1,
                "constant": False,
                "disable": False,
                "comment": "river",
            },
            "1": {"key": ["old"], "content": "Gone.", "disable": True},
        }
    }
    river, old = read_lore(world_info).entries
    assert river.name == "river" and river.position == "after_char" and river.insertion_order == 3
    assert not old.enabled
    with pytest.raises(ValueError):
        read_lore({"name": "not a book"})


async def test_keys_match_whole_words_in_any_case_unless_the_entry_says_otherwise() -> None:
    lore = Lore(
        entries=[
            entry(name="glade", keys=["glade"]),
            entry(name="Exact", keys=["Elf"], case_sensitive=True),
            entry(name="regex", keys=[r"drag(on|ons)\b"], use_regex=True),
            entry(name="always", constant=True),
            entry(name="off", keys=["glade"], enabled=False),
        ]
    )
    assert await fired(lore, "We reach the GLADE.") == ["glade", "always"]
    assert await fired(lore, "Many glades here.") == ["always"]  # whole words only
    assert await fired(lore, "an elf and an Elf") == ["Exact", "always"]
    assert await fired(lore, "dragons!") == ["regex", "always"]


async def test_secondary_keys_follow_the_entrys_logic() -> None:
    def selective(logic: str) -> Lore:
        return Lore(
            entries=[
                entry(
                    name=logic,
                    keys=["wolf"],
                    selective=True,
                    secondary_keys=["night", "moon"],
                    logic=logic,
                )
            ]
        )

    said = "a wolf howls at night"
    assert await fired(selective("and_any"), said) == ["and_any"]
    assert await fired(selective("and_all"), said) == []
    assert await fired(selective("not_any"), said) == []
    assert await fired(selective("not_all"), said) == ["not_all"]


async def test_only_the_last_messages_are_scanned_and_the_budget_keeps_the_important() -> None:
    lore = Lore(
        scan_depth=2,
        token_budget=6,
        entries=[
            entry(
                name="cave", keys=["cave"], content="one two three", priority=1, insertion_order=1
            ),
            entry(
                name="bear", keys=["bear"], content="four five six", priority=9, insertion_order=2
            ),
            entry(name="fire", keys=["fire"], content="seven eight", priority=5, insertion_order=3),
        ],
    )
    # "cave" is three messages back: out of the scan; bear and fire fit the budget of 6 words
    assert await fired(lore, "a cave", "a bear", "a fire") == ["bear", "fire"]
    crowded = lore.model_copy(update={"scan_depth": 3})
    # all three wake; the lowest priority (cave) is left out, the rest in insertion order
    assert await fired(crowded, "a cave", "a bear", "a fire") == ["bear", "fire"]


async def test_recursive_scanning_wakes_entries_named_by_entries_and_stops() -> None:
    chain = [entry(name=f"e{n}", keys=[f"k{n}"], content=f"see k{n + 1}") for n in range(10)]
    flat = Lore(entries=chain)
    assert await fired(flat, "k0") == ["e0"]
    deep = Lore(entries=chain, recursive_scanning=True, token_budget=1000)
    assert await fired(deep, "k0") == ["e0", "e1", "e2", "e3"]  # bounded: three more rounds


async def test_a_cards_book_and_a_world_info_file_reach_the_prompt_and_debug_says_why(
    tmp_path: Path, fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    config = tmp_path / "config.toml"
    shutil.copy(ROOT / "config.toml", config)
    assert main(["--config", str(config), "characters", "import", str(card_png(tmp_path))]) == 0
    world = tmp_path / "world.json"
    world.write_text(
        json.dumps(
            {
                "entries": {
                    "0": {
                        "key": ["river"],
                        "content": "The river floods in spring.",
                        "position": 1,
                        "comment": "river",
                    }
                }
            }
        )
    )
    config.write_text(config.read_text() + 'lorebooks = ["world.json"]\n')  # on Seraphina's table
    brain = on_the_fake_server(config, "Seraphina", fake_server, sqlite_url)
    await brain.handle(
        Inbound("test", "g", "u1", "Ann", "/debug on", is_admin=True), RecordingOutbox()
    )
    shown = RecordingOutbox()
    await brain.handle(Inbound("test", "g", "u1", "Ann", "Is the glade near the river?"), shown)
    system = system_of(fake_server.requests[-1].body)
    assert system.startswith("A quiet clearing.")  # the card's entry: before the character
    order = ["Scenario:", "The river floods in spring.", "Example dialogues"]
    assert [system.index(p) for p in order] == sorted(system.index(p) for p in order)  # after it
    assert (
        "📖 lore:\nSeraphina: 'glade', key 'glade'\nSeraphina: 'river', key 'river'" in shown.text
    )
    cast = RecordingOutbox()
    await brain.handle(Inbound("test", "g", "u1", "Ann", "/characters"), cast)
    assert "card characters/seraphina.json · lorebook entries: 2 (with world.json)" in cast.text
    await brain.handle(Inbound("test", "g", "u1", "Ann", "Tell me a story."), RecordingOutbox())
    later = system_of(fake_server.requests[-1].body)
    assert "A quiet clearing." in later  # the glade was named in the last messages still
    await close_brain(brain)


async def test_a_book_attached_to_a_channel_reaches_every_character_there_only(
    tmp_path: Path, fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    config = tmp_path / "config.toml"
    shutil.copy(ROOT / "config.toml", config)
    (tmp_path / "harbour.json").write_text(
        json.dumps({"entries": {"0": {"key": ["harbour"], "content": "Ships dock at dawn."}}})
    )
    config.write_text(config.read_text() + '\n[lorebooks]\n"test:port" = ["harbour.json"]\n')
    loaded, _ = load_config(config)
    assert set(loaded.channel_lore) == {"test:port"}
    brain = on_the_fake_server(config, "mom", fake_server, sqlite_url)
    for channel in ("port", "elsewhere"):
        said = Inbound("test", channel, "u1", "Ann", "When do ships reach the harbour?")
        await brain.handle(said, RecordingOutbox())
    here, elsewhere = (system_of(r.body) for r in fake_server.requests[-2:])
    assert here.startswith("Ships dock at dawn.") and "Ships dock" not in elsewhere
    await close_brain(brain)


async def test_a_catastrophic_pattern_is_cut_short_and_matches_nothing() -> None:
    """A lorebook's regex that backtracks for ages `(a+)+$` on "aaaa…!" is time-boxed."""
    lore = Lore(entries=[entry(name="bad", keys=[r"(a+)+$"], use_regex=True)])
    assert await fired(lore, "a" * 64 + "!") == []
