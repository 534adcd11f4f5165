"""Embedded server start time and first-token latency: mombot's path vs a raw client call.

Runs both side by side against one real llama.cpp server with SmolLM2, so the
ratio shows what mombot adds (history write, real token counting, trimming,
streaming helper) on top of the model itself.

    .venv/bin/python -m bench.bench_startup [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import openai

from bench.timing_outbox import FirstTextOutbox
from bot.embedded import EmbeddedConfig, EmbeddedServer
from brain.brain import Brain
from brain.config import CharacterConfig, EndpointConfig
from brain.history.store import HistoryStore
from brain.messages import Inbound
from brain.models.client import ModelClient
from tests.helpers import close_brain

PROMPT = "Name three colours of the rainbow."
PERSONA = "You are mom, a kind assistant."


async def raw_first_token(base_url: str, api_key: str | None) -> float:
    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key)
    started = time.perf_counter()
    stream = await client.chat.completions.create(
        model="smollm2-135m",
        stream=True,
        max_tokens=32,
        temperature=0,
        messages=[{"role": "system", "content": PERSONA}, {"role": "user", "content": PROMPT}],
    )
    first = None
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    await client.close()
    assert first is not None
    return first


async def mombot_first_token(brain: Brain, channel: str) -> float:
    outbox = FirstTextOutbox()
    started = time.perf_counter()
    await brain.handle(Inbound("bench", channel, "u", "u", PROMPT), outbox)
    assert outbox.first_visible is not None
    return outbox.first_visible - started


async def main(rounds: int) -> None:
    folder = Path(tempfile.mkdtemp())
    starts = []
    for i in range(3):
        server = EmbeddedServer(EmbeddedConfig(n_ctx=2048), folder / f"s{i}.log")
        await server.start()
        starts.append(server.startup_seconds or 0.0)
        await server.stop()
    print(f"embedded server start (3 runs): median {statistics.median(starts):.2f} s")

    server = EmbeddedServer(EmbeddedConfig(n_ctx=2048), folder / "bench.log")
    await server.start()
    endpoint = EndpointConfig(base_url=server.base_url, kind="llama.cpp", context_window=2048)
    character = CharacterConfig(
        name="mom", endpoint="local", persona=PERSONA, temperature=0, max_tokens=32
    )
    brain = Brain(
        characters=[character],
        clients={"local": ModelClient("local", endpoint, api_key=server.api_key)},
        history=HistoryStore(f"sqlite:///{folder / 'bench.db'}"),
    )
    await raw_first_token(server.base_url, server.api_key)  # warm-up
    raw, ours = [], []
    for i in range(rounds):  # alternate, fresh channel each time: same prompt size for both
        raw.append(await raw_first_token(server.base_url, server.api_key))
        ours.append(await mombot_first_token(brain, f"c{i}"))
    await close_brain(brain)
    await server.stop()
    r, o = statistics.median(raw), statistics.median(ours)
    print(f"first token, raw openai client: median {r * 1000:.0f} ms ({rounds} runs)")
    print(f"first visible text, mombot Brain.handle: median {o * 1000:.0f} ms")
    print(f"ratio mombot/raw: {o / r:.2f}x (overhead {1000 * (o - r):.0f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(main(parser.parse_args().rounds))
