"""The embedded default over a 10-message conversation: reply time and prompt tokens read.

Runs the whole bot (`bot.app.App`, the shipped config.toml: six characters on the
embedded server) through one channel, one message after another, and records per reply:

- seconds until the reply is complete, until the first status line (what the console
  shows in a terminal) and until the reply's first text;
- prompt tokens the server processed: its own log's `prompt eval time = … / N tokens`
  lines, which llama-server and llama-cpp-python's server both print per request, so the
  same count works for either;
- prompt tokens sent (the usage the server reported);
- new tokens: text that did not exist before this reply, once per request that reads it:
  the previous reply and the new message, read by each of the six requests, plus the
  members' proposals, read by the synthesizer.

Before and after side by side: run it in this tree and in a worktree of the commit
before the switch to llama-server (its App starts llama-cpp-python's server), then
compare:

    git worktree add /tmp/before 4d66296
    cp bench/bench_conversation.py bench/timing_outbox.py /tmp/before/bench/
    (cd /tmp/before && /work/main/.venv/bin/python -m bench.bench_conversation --out /tmp/b.json)
    .venv/bin/python -m bench.bench_conversation --out /tmp/a.json
    .venv/bin/python -m bench.bench_conversation --compare /tmp/b.json /tmp/a.json

The before run needs llama-cpp-python's server (`CMAKE_ARGS=-DGGML_NATIVE=OFF pip install
'llama-cpp-python[server]==0.3.36'`: the same portable build as scripts/build-llama-server.sh).
Tuning runs: llama-server reads `LLAMA_ARG_*` variables (`LLAMA_ARG_THREADS`,
`LLAMA_ARG_UBATCH`, `LLAMA_ARG_BATCH`) from the environment mombot starts it in, and
`--messages 4` keeps a run short.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

from bench.timing_outbox import FirstTextOutbox
from bot.app import App
from bot.config import load_config
from brain.messages import Inbound

MESSAGES = [
    "We are planning a family trip to the mountains in June. Where should we start?",
    "There will be four of us, including two kids aged six and nine.",
    "What should we pack for cold nights and sunny days?",
    "My sister is vegetarian, so what food should we bring for the hikes?",
    "How long should a hike be for the kids, do you think?",
    "What games could keep the children busy in the car on the way?",
    "Should we rent a cabin or take tents, given the weather up there?",
    "How much money should we set aside for the whole week?",
    "What should we do if one of the kids gets a blister on the trail?",
    "Can you sum up the plan we made so far in a few lines?",
]
TIMING = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")
CHANNEL = "conversation"  # stored and tracked as "bench:conversation"


def processed_counts(log: Path) -> list[int]:
    """Every prompt-eval count the server has logged so far."""
    if not log.is_file():
        return []
    return [int(m.group(1)) for m in TIMING.finditer(log.read_text(errors="replace"))]


async def settled_counts(log: Path, at_least: int) -> list[int]:
    """The log's counts once it holds `at_least` of them (the server writes them as each
    request ends), or whatever it holds after two seconds."""
    deadline = time.monotonic() + 2.0
    counts = processed_counts(log)
    while len(counts) < at_least and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        counts = processed_counts(log)
    return counts


def stage_totals(app: App) -> dict[str, tuple[int, int, int]]:
    """stage → (calls, prompt tokens, completion tokens) so far in the channel."""
    assert app.brain is not None
    return {
        s.stage: (s.calls, s.prompt_tokens, s.completion_tokens)
        for s in app.brain.tracker.channel_stats(f"bench:{CHANNEL}")
    }


async def run(config_path: Path, messages: list[str]) -> list[dict[str, float | None]]:
    config, secrets = load_config(config_path, env={})
    data_dir = Path(tempfile.mkdtemp(prefix="mombot-bench-"))
    config = config.model_copy(
        update={"bot": config.bot.model_copy(update={"data_dir": str(data_dir)})}
    )
    rows: list[dict[str, float | None]] = []
    async with App(config, secrets, serve_status=False) as app:
        assert app.brain is not None
        client = app.clients["embedded"]
        model = config.embedded.model_alias
        log = data_dir / "llama-server.log"
        requests_per_reply = sum(1 for c in config.characters if c.enabled)
        # the memory's sentence model loads in the background at start: not counted in the
        # first reply (getattr: the before tree has no memory)
        memory = getattr(app.brain, "memory", None)
        if memory is not None:
            await memory.settle()
        previous_reply_tokens = 0
        for number, text in enumerate(messages, start=1):
            before_stages = stage_totals(app)
            before_counts = len(processed_counts(log))
            outbox = FirstTextOutbox()
            started = time.perf_counter()
            await app.brain.handle(Inbound("bench", CHANNEL, "u", "user", text), outbox)
            seconds = time.perf_counter() - started
            counts = await settled_counts(log, before_counts + requests_per_reply)
            stages = stage_totals(app)
            delta = {
                stage: tuple(now[i] - before_stages.get(stage, (0, 0, 0))[i] for i in range(3))
                for stage, now in stages.items()
            }
            proposals = sum(c for stage, (_, _, c) in delta.items() if stage.startswith("propose"))
            reply_tokens = sum(c for stage, (_, _, c) in delta.items() if stage == "synthesis")
            message_tokens = await client.count_tokens(model, text)
            requests = sum(n for n, _, _ in delta.values())
            rows.append(
                {
                    "message": number,
                    "seconds": seconds,
                    "first_progress_s": (
                        None if outbox.first_progress is None else outbox.first_progress - started
                    ),
                    "first_text_s": (outbox.first_visible or time.perf_counter()) - started,
                    "processed": sum(counts[before_counts:]),
                    "prompt_sent": sum(p for _, p, _ in delta.values()),
                    "new": requests * (previous_reply_tokens + message_tokens) + proposals,
                    "requests": requests,
                }
            )
            previous_reply_tokens = reply_tokens
            print(json.dumps(rows[-1]), flush=True)
    return rows


def compare(before_path: Path, after_path: Path) -> None:
    before = json.loads(before_path.read_text())
    after = json.loads(after_path.read_text())
    print("| message | before s | after s | before processed | after processed | after new |")
    print("|---:|---:|---:|---:|---:|---:|")
    for b, a in zip(before, after, strict=True):
        print(
            f"| {a['message']} | {b['seconds']:.1f} | {a['seconds']:.1f} | "
            f"{b['processed']} | {a['processed']} | {a['new']} |"
        )
    median_b = statistics.median(r["seconds"] for r in before)
    median_a = statistics.median(r["seconds"] for r in after)
    print(f"\nmedian reply: before {median_b:.1f} s, after {median_a:.1f} s, ")
    print(f"  {median_b / median_a:.2f}x faster")
    for label, rows in (("before", before), ("after", after)):
        ratio = rows[-1]["seconds"] / rows[0]["seconds"]
        read = [r["processed"] / r["new"] for r in rows[1:] if r["new"]]
        print(
            f"{label}: 10th reply / 1st = {ratio:.2f}; processed / new tokens, replies 2-10: "
            f"median {statistics.median(read):.2f}, max {max(read):.2f}"
        )
    shown = [r["first_progress_s"] for r in after if r.get("first_progress_s") is not None]
    if shown:
        print(f"after: first status line within {max(shown) * 1000:.0f} ms of sending (worst)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config.toml"))
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    parser.add_argument(
        "--messages", type=int, default=len(MESSAGES), help="only the first N messages"
    )
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
        return
    rows = asyncio.run(run(args.config, MESSAGES[: args.messages]))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
