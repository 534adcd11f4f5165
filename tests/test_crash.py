"""`mombot chat` killed with SIGKILL in the middle of a streamed reply, then started again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from brain.history import HistoryStore
from tests.fake_openai import Behaviour, FakeOpenAIServer


def start(config: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), "chat"], cwd=cwd, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_a_reply_cut_by_sigkill_is_not_stored_and_the_next_run_carries_on(tmp_path: Path) -> None:
    slow = Behaviour(reply=" ".join(f"word{i}" for i in range(400)), token_delay_s=0.05)
    server = FakeOpenAIServer(behaviour=slow).start()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[endpoints.fake]\nbase_url = "{server.base_url}"\ncontext_window = 4096\n'
        '[[characters]]\nname = "mom"\nendpoint = "fake"\nmodel = "fake"\npersona = "You are mom."\n'
    )
    try:
        first = start(config, tmp_path)
        assert first.stdin is not None and first.stdout is not None
        first.stdin.write("Tell me a long story\n")
        first.stdin.flush()
        deadline = time.monotonic() + 60
        while not server.requests:  # the model call has begun
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        time.sleep(1.5)  # some 30 of the reply's 400 words are out (it would take 20 s)
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
            ("user", "Tell me a long story"), ("user", "Are you back?"), ("assistant", "Here is the end.")]
        # and the prompt of the second run held the first question but no half reply
        last = server.requests[-1].body["messages"]
        assert [m["content"] for m in last if m["role"] == "user"] == ["Tell me a long story", "Are you back?"]
        store.close()
    finally:
        server.stop()
