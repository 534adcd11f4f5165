"""Platform-free command parsing: values, limits and usage lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from brain.commands.registry import Arg, CommandRegistry, CommandSpec
from brain.config import MemoryConfig
from brain.errors import BadCommand
from brain.models.embedder import Embedder
from brain.routing.router import bundled_embedding_model
from tests.fake_openai import FakeOpenAIServer
from tests.helpers import RecordingGenerator, close_brain
from tests.load import fake_brain

TABLE_START = "<!-- commands: generated from the command registry (tests/test_commands.py) -->"
TABLE_END = "<!-- end of commands -->"
README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


async def nothing(*args: object) -> None:
    """A handler for commands these tests only parse."""


@pytest.fixture
def registry() -> CommandRegistry:
    r = CommandRegistry()
    r.register(CommandSpec("reset", "Forget."), nothing)
    r.register(
        CommandSpec(
            "think",
            "Think hard.",
            (
                Arg("question", "What to think about.", required=True, text=True),
                Arg("rounds", "Rounds.", type=int, default=3, min=2, max=20),
            ),
        ),
        nothing,
    )
    return r


def test_plain_text_is_not_a_command(registry: CommandRegistry) -> None:
    assert registry.parse_text("hello there") is None
    assert registry.parse_text("/ not a command") is None
    assert registry.parse_text("!!!") is None
    assert registry.parse_text("and/or") is None


def test_parses_free_text_and_options(registry: CommandRegistry) -> None:
    call = registry.parse_text("/think why is the sky blue --rounds 5")
    assert call is not None
    assert call.name == "think"
    assert call.args == {"question": "why is the sky blue", "rounds": 5}


def test_bang_prefix_and_equals_form(registry: CommandRegistry) -> None:
    call = registry.parse_text("!think why? --rounds=4")
    assert call is not None and call.args == {"question": "why?", "rounds": 4}


def test_defaults_apply(registry: CommandRegistry) -> None:
    call = registry.parse_text("/THINK what")
    assert call is not None and call.args["rounds"] == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/think", "/think needs question.\nUsage: /think <question> [--rounds N]"),
        ("/think x --rounds 1000", "`rounds` must be between 2 and 20, not 1000."),
        ("/think x --rounds many", "`rounds` must be a whole number, not `many`."),
        ("/think x --color red", "/think has no option `color`."),
        ("/think x --rounds", "`--rounds` needs a value."),
        ("/reset now", "/reset takes no text."),
        ("/frobnicate", "I don't know the command /frobnicate. Commands: /reset, /think"),
    ],
)
def test_errors_say_what_is_wrong(registry: CommandRegistry, text: str, message: str) -> None:
    with pytest.raises(BadCommand) as caught:
        registry.parse_text(text)
    assert caught.value.user_message.startswith(message)


def test_duplicate_registration_is_refused(registry: CommandRegistry) -> None:
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(CommandSpec("reset", "again"), nothing)


def test_help_lists_usage(registry: CommandRegistry) -> None:
    assert "`/think <question> [--rounds N]` — Think hard." in registry.help_text()


async def test_the_readme_lists_every_command_the_bot_has(
    fake_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    """Issue 33 defect 11: the README's table is the registry's, with every part switched on
    (images, memory, /think): regenerate it from `CommandRegistry.markdown_table` when a
    command changes."""
    folder = bundled_embedding_model()
    assert folder is not None
    brain = fake_brain(
        fake_server,
        f"sqlite:///{tmp_path / 'history.db'}",
        image_generator=RecordingGenerator(),
        extensions=["deep_thinking"],
        embedder=Embedder(folder),
        memory_config=MemoryConfig(),
    )
    try:
        start, end = README.index(TABLE_START) + len(TABLE_START), README.index(TABLE_END)
        assert {"forget", "look", "memory", "sd", "think"} <= set(brain.commands.specs)
        assert README[start:end].strip() == brain.commands.markdown_table()
    finally:
        await close_brain(brain)


def test_a_question_keeps_its_dashed_words_and_its_newlines() -> None:
    """Issue 33 defect 3: in a question, only the command's own options are options."""
    registry = CommandRegistry()
    question = Arg("question", "q", required=True, text=True, prose=True)
    rounds = Arg("rounds", "r", type=int, default=3)
    registry.register(CommandSpec("think", "t", (question, rounds)), nothing)
    call = registry.parse_text("/think what does rm --force do")
    assert call is not None
    assert call.args == {"question": "what does rm --force do", "rounds": 3}
    call = registry.parse_text("/think first line\nsecond  line --rounds 5\n--dry-run?")
    assert call is not None
    assert call.args == {"question": "first line\nsecond  line --dry-run?", "rounds": 5}


def test_an_unknown_option_of_a_prompt_is_still_an_error(registry: CommandRegistry) -> None:
    """Where the text is not prose (an image prompt), `--cfg 30` is a mistyped option."""
    prompt = Arg("prompt", "p", required=True, text=True)
    registry.register(CommandSpec("sd", "Draw.", (prompt, Arg("steps", "s", type=int))), nothing)
    with pytest.raises(BadCommand, match="has no option `cfg`"):
        registry.parse_text("/sd a cat --cfg 30")
