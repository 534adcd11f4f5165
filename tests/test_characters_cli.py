"""`mombot characters import | export | list` on a copy of the shipped config.toml, and the
prompt an imported card makes (issue 34 items 1 and 2)."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from bot.cli import main
from bot.config import load_config
from brain.brain import Brain
from brain.characters.cards import read_card
from brain.config import EndpointConfig
from brain.history.store import HistoryStore
from brain.messages import Inbound
from brain.models.client import ModelClient
from tests.fake_openai import FakeOpenAIServer, system_of
from tests.helpers import RecordingOutbox, close_brain
from tests.test_cards import V2_DATA

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    shutil.copy(ROOT / "config.toml", path)
    return path


def characters(config: Path, *args: str) -> int:
    """`mombot --config CONFIG characters ARGS…`, its exit status."""
    return main(["--config", str(config), "characters", *args])


def card_png(folder: Path) -> Path:
    info = PngImagePlugin.PngInfo()
    document = {"spec": "chara_card_v2", "spec_version": "2.0", "data": V2_DATA}
    info.add_text("chara", base64.b64encode(json.dumps(document).encode()).decode())
    out = io.BytesIO()
    Image.new("RGB", (40, 60), "green").save(out, format="PNG", pnginfo=info)
    path = folder / "Seraphina card.png"
    path.write_bytes(out.getvalue())
    return path


def on_the_fake_server(
    config: Path,
    name: str,
    server: FakeOpenAIServer,
    sqlite_url: str,
    window: int = 4096,
    **changes: object,
) -> Brain:
    """A brain of the config's character `name` alone, as the config reads it, answering
    through the fake server (`changes` to its settings)."""
    loaded, _ = load_config(config)
    character = next(c for c in loaded.characters if c.name == name)
    character = character.model_copy(update={"endpoint": "fake", "model": "fake", **changes})
    endpoint = EndpointConfig(base_url=server.base_url, context_window=window)
    return Brain(
        characters=[character],
        clients={"fake": ModelClient("fake", endpoint)},
        history=HistoryStore(sqlite_url),
        channel_lore=loaded.channel_lore,
    )


def test_import_adds_the_character_beside_the_config_and_its_card_makes_the_persona(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = config.read_text()
    assert characters(config, "import", str(card_png(config.parent))) == 0
    assert "Added Seraphina (member)" in capsys.readouterr().out
    added = config.read_text()
    assert added.startswith(before.rstrip("\n"))  # comments and the rest kept as they were
    assert 'card = "characters/seraphina.json"' in added
    assert (config.parent / "characters" / "seraphina.png").read_bytes().startswith(b"\x89PNG")

    loaded, _ = load_config(config)
    seraphina = next(c for c in loaded.characters if c.name == "Seraphina")
    persona = seraphina.persona
    assert persona.startswith("Write Seraphina's next reply in a fictional chat")  # {{original}}
    order = ["is a guardian", "Seraphina's personality: kind", "Scenario: {{user}} wakes up"]
    assert [persona.index(part) for part in order] == sorted(persona.index(p) for p in order)
    assert "Example dialogues" not in persona  # kept apart: left out first where tight
    assert "I keep this forest." in seraphina.examples
    assert seraphina.post_history == "Answer as Seraphina only."

    characters(config, "list")
    assert "Seraphina: member, smollm2-135m on embedded; card characters/seraphina.json" in (
        capsys.readouterr().out
    )


def test_export_then_import_gives_the_same_card(config: Path, tmp_path: Path) -> None:
    assert characters(config, "import", str(card_png(tmp_path))) == 0
    exported = tmp_path / "out.png"
    assert characters(config, "export", "Seraphina", str(exported)) == 0
    assert read_card(exported).data == read_card(tmp_path / "Seraphina card.png").data
    assert read_card(exported).data["extensions"]["x_unknown"] == [1, 2]
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(ROOT / "config.toml", other / "config.toml")
    assert characters(other / "config.toml", "import", str(exported)) == 0
    first = (config.parent / "characters" / "seraphina.json").read_text()
    assert (other / "characters" / "seraphina.json").read_text() == first


def test_an_import_that_would_break_the_config_changes_nothing(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = str(card_png(tmp_path))
    before = config.read_text()
    # an endpoint the config does not have: refused, and nothing is left behind
    assert characters(config, "import", card, "--endpoint", "nowhere") == 2
    assert "nowhere" in capsys.readouterr().out
    assert config.read_text() == before and not list((config.parent / "characters").iterdir())
    assert characters(config, "import", card) == 0
    assert characters(config, "import", card) == 2  # twice: refused
    assert "is in" in capsys.readouterr().out


def test_imported_as_synthesizer_the_card_writes_and_the_old_synthesizer_is_a_member(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Import a card and talk to it: `--as synthesizer` makes it the voice people read."""
    assert characters(config, "import", str(card_png(tmp_path)), "--as", "synthesizer") == 0
    assert "mom is a member now" in capsys.readouterr().out
    loaded, _ = load_config(config)
    roles = {c.name: c.role for c in loaded.characters}
    assert roles["Seraphina"] == "synthesizer" and roles["mom"] == "member"
    assert "# merges the members' answers, streams the reply" in config.read_text()  # kept


async def test_the_cards_prompt_names_the_writer_and_ends_with_its_instructions(
    config: Path, tmp_path: Path, fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """{{user}} is whoever wrote the message; the post-history instructions come after the
    conversation, just before the reply."""
    assert characters(config, "import", str(card_png(tmp_path))) == 0
    brain = on_the_fake_server(config, "Seraphina", fake_server, sqlite_url)
    await brain.handle(Inbound("test", "glade", "u1", "Ann", "Where am I?"), RecordingOutbox())
    body = fake_server.requests[-1].body
    assert "Scenario: Ann wakes up in Seraphina's glade." in system_of(body)
    assert "Best with a warm model." not in str(body["messages"])  # creator_notes: never
    last = body["messages"][-1]["content"]
    assert last.startswith("Where am I?") and last.endswith("Answer as Seraphina only.")
    await close_brain(brain)


async def test_a_card_greets_a_new_channel_once_and_greeting_n_opens_again(
    config: Path, tmp_path: Path, fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """Issue 34 item 3: the first time a channel talks to a card with a first message, the
    character opens with it (to whoever wrote) and it is stored as the character's turn;
    `/greeting` lists the greetings and `/greeting 2` opens with the alternate one."""
    assert characters(config, "import", str(card_png(tmp_path))) == 0
    fake_server.behaviour.reply = "The forest is safe."
    brain = on_the_fake_server(config, "Seraphina", fake_server, sqlite_url)
    first = RecordingOutbox()
    await brain.handle(Inbound("test", "glade", "u1", "Ann", "Where am I?"), first)
    assert first.messages[0] == "*Seraphina smiles.* You're awake, Ann."
    assert first.messages[-1] == "The forest is safe."
    asked = [m["content"] for m in fake_server.requests[-1].body["messages"]]
    assert asked[1] == "*Seraphina smiles.* You're awake, Ann."  # the reply follows from it
    again = RecordingOutbox()
    await brain.handle(Inbound("test", "glade", "u1", "Ann", "And now?"), again)
    assert "awake" not in again.text  # once per channel
    listed = RecordingOutbox()
    await brain.handle(Inbound("test", "glade", "u1", "Ann", "/greeting"), listed)
    assert "1. *Seraphina smiles.*" in listed.text and "2. *She waves.* Hello again." in listed.text
    opened = RecordingOutbox()
    await brain.handle(Inbound("test", "glade", "u1", "Ann", "/greeting 2"), opened)
    assert opened.messages == ["*She waves.* Hello again."]
    turns = [(t.role, t.content) for t in reversed(await brain.history.recent("test:glade"))]
    assert turns[0] == ("assistant", "*Seraphina smiles.* You're awake, Ann.")
    assert turns[-1] == ("assistant", "*She waves.* Hello again.")
    await close_brain(brain)


async def test_example_dialogues_are_left_out_first_where_the_window_is_tight(
    config: Path, tmp_path: Path, fake_server: FakeOpenAIServer, sqlite_url: str
) -> None:
    """Issue 34 item 2: the example dialogues are the most expendable part of a card; they
    follow the persona in a window with room for them, and not in a small one."""
    assert characters(config, "import", str(card_png(tmp_path))) == 0
    long_examples = ("Example dialogues:\n\n" + "Seraphina: The forest hums. " * 80).strip()
    systems = []
    for window in (2048, 8192):
        brain = on_the_fake_server(
            config, "Seraphina", fake_server, sqlite_url, window, examples=long_examples
        )
        await brain.handle(Inbound("test", f"w{window}", "u1", "Ann", "Hi"), RecordingOutbox())
        systems.append(system_of(fake_server.requests[-1].body))
        await close_brain(brain)
    small, large = systems
    assert "The forest hums." not in small and "Scenario: Ann wakes up" in small
    assert large.startswith(small) and large.endswith("The forest hums.")
