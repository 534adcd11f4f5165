"""The mixture (members concurrently) vs the same members called one after another.

Same characters, same prompts, side by side in one run, in two setups:
  (a) one fake OpenAI server per character that answers after a fixed delay per
      request and per token, standing in for remote GPU servers whose speed does not
      depend on load;
  (b) one real llama.cpp server with SmolLM2 per character on this machine (its
      2 cores are shared, so CPU contention limits the gain).
Also measured: how long after the last proposal arrives the synthesizer's first
token is visible in chat.

    .venv/bin/python -m bench.bench_mixture [--rounds 5] [--skip-real]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.timing_outbox import FirstTextOutbox
from bot.embedded import EmbeddedConfig, EmbeddedServer
from brain.characters.runner import CharacterRunner, Turn
from brain.chat.mixture import Mixture, Proposal
from brain.config import CharacterConfig, EndpointConfig, MixtureConfig
from brain.history.store import HistoryStore
from brain.models.client import ModelClient
from brain.streaming import ReplyStreamer
from tests.fake_openai import FakeOpenAIServer

NAMES = ["logic", "creativity", "empathy", "knowledge"]
QUESTION = "What should I keep in mind when adopting a dog?"
WORDS = 40  # tokens (words) each fake answer streams


async def one_turn(
    mixture: Mixture, runner: CharacterRunner, history: HistoryStore, concurrent: bool, n: int
) -> tuple[float, float, float]:
    """(time to all proposals, time to the whole reply, last proposal -> first visible token)."""
    channel = f"bench-{concurrent}-{n}"
    turn = Turn(channel, QUESTION, await history.add(channel, "user", QUESTION))
    outbox = FirstTextOutbox()
    started = time.perf_counter()
    if concurrent:
        proposals = await mixture.propose(turn)
    else:  # the Mixture of Models way: one character after another
        proposals = []
        for member in mixture.members:
            t0 = time.perf_counter()
            text = await runner.answer(member, turn, stage=f"propose · {member.name}")
            proposals.append(Proposal(member.name, text, time.perf_counter() - t0))
    proposed = time.perf_counter()
    await mixture.synthesize(turn, proposals, ReplyStreamer(outbox))  # as the bot does
    done = time.perf_counter()
    assert outbox.first_visible is not None
    return proposed - started, done - started, outbox.first_visible - proposed


async def compare(
    label: str, mixture: Mixture, runner: CharacterRunner, history: HistoryStore, rounds: int
) -> None:
    seq, con = [], []
    for n in range(rounds):  # alternate so drift hits both alike
        seq.append(await one_turn(mixture, runner, history, False, n))
        con.append(await one_turn(mixture, runner, history, True, n))

    def med(rows: list, i: int) -> float:
        return statistics.median(r[i] for r in rows)

    print(f"\n### {label} ({rounds} rounds, medians)\n")
    print("| | one after another | concurrent (mixture) | speed-up |")
    print("|---|---|---|---|")
    print(
        f"| all 4 proposals | {med(seq, 0):.2f} s | {med(con, 0):.2f} s "
        f"| {med(seq, 0) / med(con, 0):.2f}× |"
    )
    print(
        f"| whole reply (with synthesis) | {med(seq, 1):.2f} s | {med(con, 1):.2f} s "
        f"| {med(seq, 1) / med(con, 1):.2f}× |"
    )
    print(
        f"| last proposal → first synthesized token visible | {med(seq, 2) * 1000:.0f} ms | "
        f"{med(con, 2) * 1000:.0f} ms | |"
    )


def build(
    endpoints: dict[str, EndpointConfig],
    model: str,
    history: HistoryStore,
    max_tokens: int,
    keys: dict[str, str | None] | None = None,
) -> tuple[Mixture, CharacterRunner]:
    keys = keys or {}
    clients = {
        name: ModelClient(name, cfg, api_key=keys.get(name)) for name, cfg in endpoints.items()
    }
    members = [
        CharacterConfig(
            name=n,
            endpoint=n,
            model=model,
            persona=f"You are {n}.",
            temperature=0,
            max_tokens=max_tokens,
        )
        for n in NAMES
    ]
    synth = CharacterConfig(
        name="mom",
        endpoint="mom",
        model=model,
        persona="You are mom.",
        role="synthesizer",
        temperature=0,
        max_tokens=max_tokens,
    )
    runner = CharacterRunner(history, clients)
    return Mixture(members, synth, runner, MixtureConfig()), runner


async def fake_setup(rounds: int, folder: Path) -> None:
    servers = {name: FakeOpenAIServer().start() for name in [*NAMES, "mom"]}
    for name, server in servers.items():
        server.behaviour.reply = " ".join(f"{name}{i}" for i in range(WORDS))
        server.behaviour.request_delay_s = 0.30 if name != "mom" else 0.05  # time to first token
        server.behaviour.token_delay_s = 0.02  # 50 tokens/s per stream
    history = HistoryStore(f"sqlite:///{folder / 'fake.db'}")
    endpoints = {
        n: EndpointConfig(base_url=s.base_url, kind="vllm", context_window=8192)
        for n, s in servers.items()
    }
    mixture, runner = build(endpoints, "fake", history, 64)
    await compare(
        "(a) fake remote servers: 0.30 s to first token, 50 tokens/s, 40 tokens each; "
        "synthesizer 0.05 s to first token",
        mixture,
        runner,
        history,
        rounds,
    )
    for server in servers.values():
        server.stop()


async def real_setup(rounds: int, folder: Path) -> None:
    servers = {}
    for name in NAMES:
        servers[name] = EmbeddedServer(
            EmbeddedConfig(n_ctx=1024, n_threads=1), folder / f"{name}.log"
        )
        await servers[name].start()
    endpoints = {
        n: EndpointConfig(base_url=s.base_url, kind="llama.cpp", context_window=1024)
        for n, s in servers.items()
    }
    endpoints["mom"] = endpoints["logic"]  # the synthesizer shares the first server
    keys = {n: s.api_key for n, s in servers.items()} | {"mom": servers["logic"].api_key}
    history = HistoryStore(f"sqlite:///{folder / 'real.db'}")
    mixture, runner = build(endpoints, "smollm2-135m", history, 48, keys)
    await compare(
        "(b) real SmolLM2-135M, one llama.cpp server (1 thread) per character, "
        "2 CPU cores, 48 tokens each",
        mixture,
        runner,
        history,
        rounds,
    )
    for server in servers.values():
        await server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    await fake_setup(args.rounds, folder)
    if not args.skip_real:
        await real_setup(args.rounds, folder)


if __name__ == "__main__":
    asyncio.run(main())
