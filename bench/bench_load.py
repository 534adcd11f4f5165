"""Load on this machine: messages per second, bot overhead per message, history at 100 000 turns.

Drives the whole brain (routing of commands, history in SQLite, prompt building and
trimming, streaming to an outbox) against a fast fake OpenAI server that echoes.

  (1) throughput: 200 concurrent conversations in 50 channels, 3 messages each, and the
      worst event-loop lag seen meanwhile (a task sleeping 5 ms at a time);
  (2) overhead: 300 messages one after another through `Brain.handle`, side by side with
      the same streamed call made bare with httpx, against an echo server in its own process;
  (3) history load + trim for one prompt with 100 and with 100 000 turns stored in the
      channel, side by side;
  (4) what the bot keeps once channels go idle: one message in each of 20 000 channels, and
      the memory still allocated (tracemalloc) after 1 000, 10 000 and 20 000 of them (what
      outlives a message per channel is bounded: it stops growing at those bounds).

    python -m bench.bench_load
    python -m bench.bench_load --overhead   # part (2) alone, then again with a character
                                            # card's persona, greeting and example dialogues
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from brain.characters.runner import Turn
from brain.database.tables import TurnRow as StoredRow
from brain.messages import Inbound
from tests.fake_openai import FakeOpenAIServer
from tests.helpers import RecordingOutbox, close_brain
from tests.load import drive, echo_server, fake_brain


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spawn_echo_server(
    echo: bool = True,
) -> tuple[multiprocessing.process.BaseProcess, FakeOpenAIServer]:
    """The echo server in its own process, so its work does not share our GIL; with
    `echo=False`, one that gives every request the same short reply."""
    spawn = multiprocessing.get_context("spawn")
    ports = spawn.Queue()
    process = spawn.Process(target=_serve_echo, args=(ports, echo), daemon=True)
    process.start()
    return process, FakeOpenAIServer(port=ports.get(timeout=30))  # only its address is used


async def throughput(folder: Path) -> None:
    process, server = spawn_echo_server()
    brain = fake_brain(server, f"sqlite:///{folder / 'load.db'}")
    await drive(brain, channels=5, users_per_channel=1, messages_each=2)  # warm-up
    gc.collect()
    report = await drive(brain, channels=50, users_per_channel=4, messages_each=3)
    await close_brain(brain)
    process.kill()
    print(
        f"(1) {report.messages} messages in {report.seconds:.2f} s: "
        f"{report.messages / report.seconds:.0f} messages/s; worst loop lag "
        f"{report.worst_loop_lag_s * 1000:.1f} ms, over 50 ms {report.loop_lags_over_50ms} times "
        f"in {report.loop_probes} probes; errors {len(report.errors)}"
    )


def _serve_echo(port_out: Any, echo: bool = True) -> None:
    server = echo_server() if echo else FakeOpenAIServer().start()
    port_out.put(server.port)
    time.sleep(3600)


CARD = {  # a typical small card: every prompt field, two greetings, example dialogues
    "name": "Seraphina",
    "description": "{{char}} is a guardian of the forest who helps lost travellers. " * 4,
    "personality": "kind, protective, patient",
    "scenario": "{{user}} wakes up in {{char}}'s glade after a storm.",
    "first_mes": "*Seraphina smiles.* You're awake, {{user}}.",
    "alternate_greetings": ["*She waves.* Hello again, {{user}}."],
    "mes_example": "<START>\n{{user}}: Who are you?\n{{char}}: I keep this forest.",
    "post_history_instructions": "Answer as {{char}} only.",
}


def card_brain(remote: FakeOpenAIServer, url: str) -> Any:
    """The same brain with one character made from a card (as `mombot characters import`)."""
    from brain.brain import Brain
    from brain.characters.card_prompt import (
        CARD_SYSTEM,
        card_examples,
        card_greetings,
        card_persona,
        card_post_history,
    )
    from brain.characters.cards import Card, card_data

    plain = fake_brain(remote, url)
    card = Card(card_data(CARD))
    character = plain.characters[0].model_copy(
        update={
            "name": card.name,
            "persona": card_persona(card, CARD_SYSTEM),
            "examples": card_examples(card),
            "greetings": card_greetings(card),
            "post_history": card_post_history(card),
        }
    )
    return Brain(characters=[character], clients=plain.clients, history=plain.history)


async def overhead(messages: int = 300, *, card: bool = False) -> None:
    """Side by side: a message through the brain vs the same model call made bare with httpx.

    The bare call sends exactly the messages the brain sent for that message (its whole
    trimmed history), so the difference is the bot's own work, not a bigger prompt. With
    `card`, the character is a card's (a longer persona, a greeting, examples).
    """
    process, remote = spawn_echo_server()
    folder = Path(tempfile.mkdtemp())
    url = f"sqlite:///{folder / 'overhead.db'}"
    brain = card_brain(remote, url) if card else fake_brain(remote, url)
    client = brain.clients["fake"]
    sent: list[list[dict[str, Any]]] = []
    stream_chat = client.stream_chat

    def recording(model: str, prompt: list[dict[str, Any]], **kwargs: Any) -> Any:
        sent.append(prompt)
        return stream_chat(model, prompt, **kwargs)

    client.stream_chat = recording  # type: ignore[method-assign]
    bare: list[float] = []
    through: list[float] = []
    async with httpx.AsyncClient(base_url=remote.base_url) as http:
        for n in range(messages):
            message = Inbound(
                platform="bench",
                channel_id="one",
                author_id="u",
                author_name="ann",
                text=f"message number {n}",
            )
            started = time.perf_counter()
            await brain.handle(message, RecordingOutbox())
            through.append(time.perf_counter() - started)
            body = {
                "model": "fake",
                "messages": sent[-1],
                "stream": True,
                "max_tokens": 64,
                "temperature": 0.7,
                "stream_options": {"include_usage": True},
            }
            started = time.perf_counter()
            async with http.stream("POST", "/chat/completions", json=body) as response:
                async for _ in response.aiter_lines():
                    pass
            bare.append(time.perf_counter() - started)
    await close_brain(brain)
    process.kill()
    bare, through = bare[20:], through[20:]  # leave out the warm-up
    print(
        f"(2) over {len(through)} messages, one after another, "
        f"history growing to {2 * messages} turns{', a card character' if card else ''}:"
    )
    print(
        f"    bare streamed call (same prompt): p50 {statistics.median(bare) * 1000:.2f} ms, "
        f"p99 {percentile(bare, 0.99) * 1000:.2f} ms"
    )
    print(
        f"    through the brain:               p50 {statistics.median(through) * 1000:.2f} ms, "
        f"p99 {percentile(through, 0.99) * 1000:.2f} ms"
    )
    overheads = sorted(t - b for t, b in zip(through, bare, strict=True))
    print(
        f"    bot overhead per message: p50 {statistics.median(overheads) * 1000:.2f} ms, "
        f"p99 {percentile(overheads, 0.99) * 1000:.2f} ms"
    )


async def history_at(folder: Path, stored: int, repeats: int = 30) -> float:
    server = echo_server()
    brain = fake_brain(server, f"sqlite:///{folder / f'history{stored}.db'}")
    rows = [
        {
            "channel": "big",
            "role": "user" if i % 2 == 0 else "assistant",
            "author": "ann",
            "content": f"turn {i}: " + "words and more words " * 10,
        }
        for i in range(stored)
    ]
    with brain.history._engine.begin() as connection:
        connection.execute(insert(StoredRow), rows)
    character = brain.characters[0]
    newest = (await brain.history.recent("big", limit=1))[0].id
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        plan, _ = await brain.runner.plan(character, Turn("big", "a new question", newest + 1))
        times.append(time.perf_counter() - started)
    await close_brain(brain)
    server.stop()
    print(
        f"    {stored:>6} turns stored: {statistics.median(times) * 1000:.2f} ms to load and trim "
        f"({plan.kept_turns} turns fit the window)"
    )
    return statistics.median(times)


async def idle_channels(
    folder: Path, checkpoints: tuple[int, ...] = (1000, 10_000, 20_000)
) -> None:
    """Memory kept after one message in each of many channels, all idle again afterwards."""
    process, server = spawn_echo_server(echo=False)
    brain = fake_brain(server, f"sqlite:///{folder / 'idle.db'}")

    async def one(n: int) -> None:
        message = Inbound("bench", f"room{n}", "u", "ann", f"hello {n}")
        await brain.handle(message, RecordingOutbox())

    await asyncio.gather(*(one(-n) for n in range(1, 51)))  # warm-up: caches, pools, SQL
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    print("(4) memory kept once channels are idle (one message each, 50 at a time):")
    done = 0
    for checkpoint in checkpoints:
        for start in range(done, checkpoint, 50):
            await asyncio.gather(*(one(n) for n in range(start, min(start + 50, checkpoint))))
        done = checkpoint
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
        print(f"    after {done:>6} channels: {kept / 1024:8.0f} KiB ({kept / done:5.0f} B each)")
    tracemalloc.stop()
    await close_brain(brain)
    process.kill()


async def main() -> None:
    if "--overhead" in sys.argv:
        await overhead()
        await overhead(card=True)
        return
    folder = Path(tempfile.mkdtemp())
    await throughput(folder)
    await overhead()
    print("(3) history load + trim for one prompt (8192-token window):")
    small = await history_at(folder, 100)
    large = await history_at(folder, 100_000)
    print(f"    100 000 turns take {large / small:.2f}x the time of 100")
    await idle_channels(folder)


if __name__ == "__main__":
    asyncio.run(main())
