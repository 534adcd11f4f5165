"""Stopping in the middle of a reply: SIGKILL (then a restart), SIGTERM, the brain's shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from brain.answering import SHUTTING_DOWN, STOPPED_MID_REPLY
from brain.config import A1111Config, QueueConfig
from brain.history.store import HistoryStore
from brain.images.backends.remote import A1111Backend
from brain.images.queue import ImageQueue
from brain.messages import Inbound
from tests.a1111 import A1111Server
from tests.fake_openai import Behaviour, FakeOpenAIServer, long_slow_reply
from tests.helpers import RecordingOutbox, close_brain, eventually
from tests.load import fake_brain


def start(config: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), "chat"],
        cwd=cwd,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    """Poll for up to 60 s while the bot process is still running."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)


def telling_a_long_story(
    config: Path, cwd: Path, server: FakeOpenAIServer, words: int
) -> subprocess.Popen[str]:
    """mombot chat, asked for a long story, once `words` of its 400 are out (all would take
    20 s): a reply in the middle of being written."""
    process = start(config, cwd)
    assert process.stdin is not None
    process.stdin.write("Tell me a long story\n")
    process.stdin.flush()
    wait_until(lambda: bool(server.requests) and server.requests[0].words_sent >= words, process)
    return process


def write_config(
    tmp_path: Path, server: FakeOpenAIServer, bot_settings: str = "", more: str = ""
) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n{bot_settings}'
        f'[endpoints.fake]\nbase_url = "{server.base_url}"\ncontext_window = 4096\n'
        '[[characters]]\nname = "mom"\nendpoint = "fake"\nmodel = "fake"\n'
        'persona = "You are mom."\n' + more
    )
    return config


def test_a_reply_cut_by_sigkill_is_not_stored_and_the_next_run_carries_on(tmp_path: Path) -> None:
    server = FakeOpenAIServer(behaviour=long_slow_reply()).start()
    config = write_config(tmp_path, server)
    try:
        first = telling_a_long_story(config, tmp_path, server, words=30)
        assert first.poll() is None and not server.requests[0].ended
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)

        store = HistoryStore(f"sqlite:///{tmp_path / 'data' / 'mombot.db'}")
        turns = asyncio.run(store.recent("console:console"))
        # The question survived; the reply that never finished is not in the history.
        assert [(t.role, t.content) for t in turns] == [("user", "Tell me a long story")]

        server.behaviour = Behaviour(reply="Here is the end.")
        second = start(config, tmp_path)
        out, err = second.communicate("Are you back?\n", timeout=120)
        assert second.returncode == 0, err
        assert "Here is the end." in out
        turns = list(reversed(asyncio.run(store.recent("console:console"))))
        assert [(t.role, t.content) for t in turns] == [
            ("user", "Tell me a long story"),
            ("user", "Are you back?"),
            ("assistant", "Here is the end."),
        ]
        # and the prompt of the second run held the first question but no half reply
        last = server.requests[-1].body["messages"]
        assert [m["content"] for m in last if m["role"] == "user"] == [
            "Tell me a long story",
            "Are you back?",
        ]
        store.close()
    finally:
        server.stop()


def test_an_image_job_cut_by_sigkill_is_reported_to_its_user_after_the_restart(
    tmp_path: Path,
) -> None:
    server = FakeOpenAIServer().start()
    painter = A1111Server(mode="hang")
    config = write_config(
        tmp_path,
        server,
        more=(f'[images]\nbackend = "a1111"\n[images.a1111]\nbase_url = "{painter.base_url}"\n'),
    )
    try:
        first = start(config, tmp_path)
        assert first.stdin is not None
        first.stdin.write("/sd a red fox in the snow\n")
        first.stdin.flush()
        wait_until(lambda: bool(painter.bodies), first)  # drawing, and it will never finish
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)

        painter.mode = "ok"
        out, err = start(config, tmp_path).communicate("", timeout=120)
        assert (
            "[!] I was restarted before I could finish the image you asked for "
            "(a red fox in the snow). Please ask again."
        ) in out, err
        again, _ = start(config, tmp_path).communicate("", timeout=120)
        assert "I was restarted" not in again  # told once
    finally:
        painter.stop()
        server.stop()


def test_sigterm_lets_the_reply_in_progress_say_it_was_stopped_and_exits_cleanly(
    tmp_path: Path,
) -> None:
    server = FakeOpenAIServer(behaviour=long_slow_reply()).start()
    config = write_config(tmp_path, server, "shutdown_grace_s = 1\n")
    try:
        process = telling_a_long_story(config, tmp_path, server, words=10)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)  # the 20 s reply is not waited for
        assert process.returncode == 0, err
        assert "I was stopped before I could finish this answer" in out
        assert "Traceback" not in err
        store = HistoryStore(f"sqlite:///{tmp_path / 'data' / 'mombot.db'}")
        turns = asyncio.run(store.recent("console:console"))
        assert [(t.role, t.content) for t in turns] == [("user", "Tell me a long story")]
        store.close()
    finally:
        server.stop()


async def test_shutdown_refuses_new_messages_and_waits_for_replies_within_grace(
    sqlite_url: str,
) -> None:
    server = FakeOpenAIServer(
        behaviour=Behaviour(reply="a short answer", token_delay_s=0.1)
    ).start()
    brain = fake_brain(server, sqlite_url)
    try:
        finishing = RecordingOutbox()
        reply = asyncio.create_task(
            brain.handle(Inbound("t", "c", "u", "ann", "quick question"), finishing)
        )
        while not server.requests:
            await asyncio.sleep(0.01)
        stopping = asyncio.create_task(brain.shutdown(grace_s=10))
        await eventually(lambda: brain.closing)  # the shutdown has begun
        late = RecordingOutbox()
        await brain.handle(Inbound("t", "c", "u", "ann", "one more thing"), late)
        await stopping
        assert reply.done() and finishing.errors == [] and "a short answer" in finishing.text
        assert late.errors == [SHUTTING_DOWN]
        turns = [t.content for t in reversed(await brain.history.recent("t:c"))]
        assert turns == ["quick question", "a short answer"]  # the late message was not taken
    finally:
        await close_brain(brain)
        server.stop()


async def test_image_jobs_that_end_in_any_way_are_not_reported_as_lost(
    sqlite_url: str, a1111: A1111Server
) -> None:
    server = FakeOpenAIServer().start()
    backend = A1111Backend(A1111Config(base_url=a1111.base_url, timeout_s=1))
    brain = fake_brain(server, sqlite_url, image_generator=ImageQueue(backend, QueueConfig()))
    try:
        for mode, told in [
            ("ok", ""),
            ("error", "The image server answered with an error (HTTP 500)."),
        ]:
            a1111.mode = mode
            outbox = RecordingOutbox()
            await brain.handle(Inbound("t", "c", "u", "ann", text="/sd a red fox"), outbox)
            assert outbox.errors == ([told] if told else []) and bool(outbox.images) is not bool(
                told
            )
        a1111.mode = "hang"
        outbox = RecordingOutbox()
        drawing = asyncio.create_task(
            brain.handle(Inbound("t", "c", "u", "ann", text="/sd a red fox"), outbox)
        )
        while len(a1111.bodies) < 3:
            await asyncio.sleep(0.01)
        await brain.shutdown(grace_s=0.1)  # cut off: the user hears it now, not after a restart
        assert drawing.cancelled()
        assert outbox.errors == [STOPPED_MID_REPLY]
        told_later: list[str] = []

        async def notify(channel_id: str, text: str) -> None:
            told_later.append(text)

        assert await brain.report_lost_image_jobs("t", notify) == 0 and told_later == []
    finally:
        await close_brain(brain)
        server.stop()


def test_ctrl_c_during_a_reply_stops_the_reply_not_mombot(tmp_path: Path) -> None:
    """Issue 36: in the console, Ctrl-C (SIGINT) while a reply is written stops that reply;
    mombot goes on and answers the next line."""
    server = FakeOpenAIServer(behaviour=long_slow_reply()).start()
    config = write_config(tmp_path, server)
    try:
        process = telling_a_long_story(config, tmp_path, server, words=10)
        process.send_signal(signal.SIGINT)
        wait_until(lambda: server.requests[0].ended > 0, process)  # the call was let go
        server.behaviour = Behaviour(reply="Still here.")
        out, err = process.communicate("Are you there?\n", timeout=60)
        assert process.returncode == 0, err
        assert "⏹ Stopped." in out and out.rstrip().endswith("Still here.")
        assert "Traceback" not in err
        store = HistoryStore(f"sqlite:///{tmp_path / 'data' / 'mombot.db'}")
        turns = asyncio.run(store.recent("console:console"))
        assert [(t.role, t.content) for t in reversed(turns)] == [
            ("user", "Tell me a long story"),
            ("user", "Are you there?"),
            ("assistant", "Still here."),
        ]
    finally:
        server.stop()
