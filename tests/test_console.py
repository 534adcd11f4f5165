"""`mombot chat` as a user runs it: a real process, the real embedded server, piped stdin."""

from __future__ import annotations

import io
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from adapters.config import ConsoleConfig
from adapters.console import CLEAR_LINE, DIM, NORMAL, ConsoleAdapter, ConsoleOutbox
from brain.after_turn import Work
from brain.brain import Brain
from brain.channels.events import Answerable, Change
from brain.channels.registry import Channels, Ticket
from brain.config import CharacterConfig, EndpointConfig
from brain.history.store import HistoryStore
from brain.models.client import ModelClient
from brain.routing.question import ASK
from tests.conftest import MODEL
from tests.fake_openai import FakeOpenAIServer
from tests.helpers import asking_brain, close_brain

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n'
        "[embedded]\nn_ctx = 512\n"
        '[[characters]]\nname = "mom"\ntemperature = 0\nmax_tokens = 32\n'
        'persona = "You are mom, a kind assistant."\n'
    )
    return config


def mombot(tmp_path: Path, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(write_config(tmp_path)), *args],
        cwd=tmp_path,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        **kwargs,  # type: ignore[arg-type]
    )


def server_port(tmp_path: Path) -> int:
    log = (tmp_path / "data" / "mombot.log").read_text()
    return int(log.split("embedded server on port ")[1].split()[0])


def test_scripted_session_gets_real_answers(tmp_path: Path) -> None:
    process = mombot(tmp_path, "chat")
    out, err = process.communicate(
        "Hello! Who are you?\n/help\nWhat is two plus two?\n", timeout=180
    )
    assert process.returncode == 0, err
    replies = out.split("\n\n")
    assert len([r for r in replies if r.strip()]) >= 3
    assert replies[0].strip() and not replies[0].startswith("[!]")
    assert "Commands:" in out and "/reset" in out
    assert "Model ready in" in err
    assert "Traceback" not in err
    assert "\x1b" not in out  # piped: no status line, no terminal codes
    # both user turns and both replies were stored in the configured SQLite file
    store = HistoryStore(f"sqlite:///{tmp_path / 'data' / 'mombot.db'}")
    import asyncio

    assert asyncio.run(store.count("console:console")) == 4
    store.close()
    # and the embedded server is gone
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server_port(tmp_path)}/v1/models", timeout=2)


def test_ctrl_c_stops_the_embedded_server(tmp_path: Path) -> None:
    process = mombot(tmp_path, "chat")
    assert process.stdin is not None
    deadline = time.monotonic() + 60
    log = tmp_path / "data" / "mombot.log"
    while not (log.exists() and "embedded server on port" in log.read_text()):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    port = server_port(tmp_path)
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    # up, and only for mombot: anything else on this machine is refused without the key
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 401
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    assert process.returncode == 130
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


def test_check_reports_the_endpoint(tmp_path: Path) -> None:
    process = mombot(tmp_path, "check")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "endpoint embedded (llama.cpp" in out
    assert "models: smollm2-135m" in out
    assert "context 512 tokens (config), 'Hello, world!' = 4 tokens" in out
    assert out.strip().endswith("check: all good")


async def test_console_adapter_streams_into_the_terminal(
    llama_endpoint: EndpointConfig, sqlite_url: str, tmp_path: Path
) -> None:
    character = CharacterConfig(
        name="mom", endpoint="local", model=MODEL, temperature=0, max_tokens=16
    )
    brain = Brain(
        characters=[character],
        clients={"local": ModelClient("local", llama_endpoint)},
        history=HistoryStore(sqlite_url),
    )
    stdin, stdout = io.StringIO("Hi there\n\n/reset\n/quit\nnever read\n"), io.StringIO()
    adapter = ConsoleAdapter(
        brain, ConsoleConfig(), stdin=stdin, stdout=stdout, images_dir=tmp_path / "img"
    )
    assert not adapter.interactive
    await adapter.run()
    replies = [r for r in stdout.getvalue().split("\n\n") if r.strip()]
    assert len(replies) == 2
    assert replies[1] == "Forgot this conversation (2 messages)."
    await close_brain(brain)


async def test_console_images_never_use_the_user_file_name_as_a_path(tmp_path: Path) -> None:
    out = io.StringIO()
    outbox = ConsoleOutbox(out, tmp_path / "img")
    await outbox.send_image(b"\x89PNG", "../../etc/passwd", "a cat")
    saved = list((tmp_path / "img").iterdir())
    assert [p.name for p in saved] == ["passwd"]
    assert "a cat" in out.getvalue()


def test_run_with_a_bad_discord_token_says_how_to_fix_it(tmp_path: Path) -> None:
    """`mombot run` really tries to log in; Discord is unreachable here: a clear failure."""
    config = write_config(tmp_path)
    config.write_text(config.read_text() + "[discord]\nenabled = true\n")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MOMBOT_DISCORD_TOKEN": "not-a-real-token"},
    )
    assert result.returncode == 1
    assert any(
        line.startswith("mombot: cannot reach the chat server (")
        for line in result.stderr.splitlines()
    )
    assert "Traceback" not in result.stderr
    assert "not-a-real-token" not in result.stderr + (tmp_path / "data" / "mombot.log").read_text()


def test_run_without_platforms(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(write_config(tmp_path)), "run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no platform is enabled" in result.stderr


class FailingBrain:
    """A brain with a bug: its first answer raises (the real one never should)."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.channels = Channels(self, self.change_stored, max_waiting=20)

    async def report_lost_image_jobs(self, platform: str, notify: object) -> int:
        return 0

    def arrive(self, channel_key: str, source: str = "") -> Ticket:
        return self.channels.arrive(channel_key, source)

    def stop(self, channel_key: str) -> bool:
        return self.channels.stop(channel_key)

    async def answer(self, event: Answerable) -> list[Work]:
        self.asked.append(event.message.text)
        if len(self.asked) == 1:
            raise RuntimeError("a bug in the brain")
        await event.outbox.send(f"answer to {event.message.text}")
        return []

    async def change_stored(self, change: Change) -> None:
        return None


async def test_a_failed_answer_is_logged_and_the_chat_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17 item 14: the console used to discard the error of a failed answer unseen."""
    brain = FailingBrain()
    stdin, stdout = io.StringIO("first\nsecond\n"), io.StringIO()
    adapter = ConsoleAdapter(
        brain,
        ConsoleConfig(),
        stdin=stdin,
        stdout=stdout,  # type: ignore[arg-type]
        images_dir=tmp_path / "img",
    )
    with caplog.at_level("ERROR", logger="adapters.console"):
        await adapter.run()
    assert brain.asked == ["first", "second"]
    assert "answer to second" in stdout.getvalue()
    failure = next(r for r in caplog.records if r.name == "adapters.console")
    assert "could not answer" in failure.getMessage() and "a bug in the brain" in caplog.text


async def test_unsure_the_console_asks_and_the_next_line_decides(
    fake_server: FakeOpenAIServer, sqlite_url: str, tmp_path: Path
) -> None:
    """Issue 19 in the terminal: the question, then "yes" draws (a file) and "no" answers."""
    fake_server.behaviour.reply = "a cat on a red roof"
    brain = asking_brain(fake_server, sqlite_url)
    generator = brain.images.generator
    stdin = io.StringIO("a cat on a roof\nyes\na cat on a roof\nno\n")
    stdout = io.StringIO()
    adapter = ConsoleAdapter(
        brain, ConsoleConfig(), stdin=stdin, stdout=stdout, images_dir=tmp_path / "img"
    )
    await adapter.run()
    replies = [r for r in stdout.getvalue().split("\n\n") if r.strip()]
    assert replies[0] == ASK and replies[2] == ASK
    assert [r.prompt for r in generator.requests] == ["a cat on a red roof"]
    assert len(list((tmp_path / "img").iterdir())) == 1
    assert replies[-1] == "a cat on a red roof"  # "no": the mixture's answer in words
    await close_brain(brain)


def read_until(fd: int, marker: bytes, timeout: float) -> bytes:
    """Bytes from a terminal until `marker` appears (or fail after `timeout`)."""
    got = b""
    deadline = time.monotonic() + timeout
    while marker not in got:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in {got!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            got += os.read(fd, 65536)
    return got


def test_a_terminal_shows_who_answered_until_the_reply_replaces_it(tmp_path: Path) -> None:
    """In a real terminal (a pty) a status line appears at once and names the characters as
    they answer; the reply then overwrites it. Piped output never gets one (the test above)."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n'
        "[embedded]\nn_ctx = 512\n"
        "[mixture]\nfast_path_max_words = 0\n"
        '[[characters]]\nname = "logic"\ntemperature = 0\nmax_tokens = 24\n'
        'persona = "You are Logic."\n'
        '[[characters]]\nname = "critic"\ntemperature = 0\nmax_tokens = 24\n'
        'persona = "You are the Critic."\n'
        '[[characters]]\nname = "mom"\nrole = "synthesizer"\ntemperature = 0\n'
        'max_tokens = 24\npersona = "You are mom, a kind assistant."\n'
    )
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), "chat"],
        cwd=tmp_path,
        stdin=terminal,
        stdout=terminal,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TERM": "xterm"},
    )
    os.close(terminal)
    try:
        read_until(controller, b"you> ", timeout=120)
        os.write(controller, b"What is two plus two?\n")
        screen = read_until(controller, b"you> ", timeout=120)
        os.write(controller, b"/characters\n")
        command = read_until(controller, b"you> ", timeout=120)
        os.write(controller, b"/quit\n")
        process.wait(timeout=30)
    finally:
        process.kill()
        os.close(controller)
    status_at = screen.index(DIM.encode() + b"thinking")
    answered_at = screen.index(b"logic \xe2\x9c\x93")  # "logic ✓"
    writing_at = screen.index(b"mom is writing the reply")
    reply_at = screen.rindex(CLEAR_LINE.encode())  # the last status, blanked for the reply
    assert status_at < answered_at < writing_at < reply_at
    # The reply, plain, under the name of who wrote it: the synthesizer (issue 33 defect 8);
    # a command's answer is the bot's own.
    assert screen[reply_at:].startswith(CLEAR_LINE.encode() + b"mom> ")
    assert b"mombot> " in command and b"logic> " not in command
    assert b" s" + NORMAL.encode() in screen[status_at:reply_at]  # the seconds it has taken


async def test_a_persona_set_in_the_console_reaches_its_prompts(
    fake_server: FakeOpenAIServer, sqlite_url: str, tmp_path: Path
) -> None:
    """Issue 34 item 5 on the console: `/persona` there is the console user's."""
    from tests.load import fake_brain

    fake_server.behaviour.reply = "Noted."
    brain = fake_brain(fake_server, sqlite_url)
    script = "/persona I keep bees on my roof.\n\nWhat should I plant?\n/quit\n"
    stdin, stdout = io.StringIO(script), io.StringIO()
    adapter = ConsoleAdapter(
        brain, ConsoleConfig(), stdin=stdin, stdout=stdout, images_dir=tmp_path / "img"
    )
    await adapter.run()
    assert "know you as I keep bees on my roof." in stdout.getvalue()
    asked = str(fake_server.requests[-1].body["messages"][-1]["content"])
    assert asked.startswith("What should I plant?")
    assert "who wrote this: I keep bees on my roof.]" in asked
    await close_brain(brain)
