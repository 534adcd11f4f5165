"""`mombot eval`: does the mixture answer better than its members?

Runs a question set through the user's own characters and endpoints, side by side:
each member alone, the synthesizer alone, the full mixture, the mixture with each member
left out, and /think. Every reply is checked by the same rule (`bot.eval.answer_check`).

The members answer once per question, all at once, as they do in the mixture; their
answers are both the "member alone" results and the proposals the synthesizer reads.
Leaving a member out is then one more synthesis over the same proposals less that one,
so "what a member adds" compares like with like (and costs one call, not a mixture).
The mixture here always consults its members: the short-message fast path is not used.
Each question is asked in a channel of its own, with no history, in a scratch database
(the user's history is never touched), and with image generation off.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bot.app import App
from bot.config import MombotConfig, Secrets
from bot.eval.answer_check import extracted, is_right
from bot.eval.question_sets import (
    ARITHMETIC_DEFAULT,
    BUNDLED,
    Question,
    QuestionSetError,
    load,
)
from bot.eval.report import Outcome, report_json, report_table, summarize
from brain.brain import split_roles
from brain.characters.runner import Turn
from brain.chat.mixture import Mixture, Proposal
from brain.errors import MombotError
from brain.messages import CommandCall, Inbound
from brain.models.usage import Usage, current_usages
from brain.outbox import Capabilities
from brain.streaming import ReplyStreamer

THINK_EXTENSION = "deep_thinking"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        default="all",
        help="a bundled set (arithmetic, facts, yesno), 'all' of them (default), or a JSONL "
        "file of your own (format: bot/eval/question_sets.py)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated configurations to report: member names, the synthesizer's "
        "name, 'mixture', 'mixture - NAME', 'think' (default: all)",
    )
    parser.add_argument(
        "--think", type=int, default=2, metavar="N", help="/think rounds (0: leave /think out)"
    )
    parser.add_argument(
        "--limit", type=int, default=0, help="ask only the first N questions of each set"
    )
    parser.add_argument(
        "--size", type=int, default=ARITHMETIC_DEFAULT, help="arithmetic problems generated"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the arithmetic problems")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def questions_for(args: argparse.Namespace) -> list[Question]:
    """The questions to ask; raises QuestionSetError naming what is wrong."""
    if args.think and not 2 <= args.think <= 20:
        raise QuestionSetError("--think takes 2 to 20 rounds, or 0 to leave /think out")
    specs = BUNDLED if args.set == "all" else (args.set,)
    limit = args.limit if args.limit > 0 else None
    return [
        question
        for spec in specs
        for question in load(spec, size=args.size, seed=args.seed)[:limit]
    ]


def scratch_config(config: MombotConfig, secrets: Secrets, scratch: Path) -> tuple[Any, Any]:
    """The user's config on a scratch database, with image generation off."""
    config = config.model_copy(
        update={
            "bot": config.bot.model_copy(update={"data_dir": str(scratch)}),
            "history": config.history.model_copy(update={"database_url": "sqlite:///eval.db"}),
            "images": config.images.model_copy(update={"backend": "none"}),
        }
    )
    return config, secrets.model_copy(update={"database_url": None})


async def run_eval(config: MombotConfig, secrets: Secrets, args: argparse.Namespace) -> int:
    try:
        questions = questions_for(args)
    except QuestionSetError as exc:
        print(f"mombot eval: {exc}", file=sys.stderr)
        return 2
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    names = configuration_names(config, args.think)
    if only - set(names):
        unknown = ", ".join(sorted(only - set(names)))
        there_are = ", ".join(names)
        print(
            f"mombot eval: --only: no configuration {unknown} (there are: {there_are})",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="mombot-eval-") as scratch:
        config, secrets = scratch_config(config, secrets, Path(scratch))
        async with App(config, secrets, serve_status=False, progress=_say) as app:
            evaluation = Evaluation(app, think_rounds=args.think)
            outcomes = await evaluation.run(questions)
    rows = summarize(outcomes, names, only)
    if args.json:
        print(report_json(rows, outcomes, only))
    else:
        print(report_table(rows, len(questions)))
    return 0


def roles(config: MombotConfig, think_rounds: int) -> tuple[list[Any], Any, int]:
    """(members, synthesizer, /think rounds) as the bot would answer: no members when the
    synthesizer is the only character, no /think without its extension or two members."""
    members, synthesizer = split_roles(config.characters)
    think_on = THINK_EXTENSION in config.extensions.enabled and len(members) >= 2
    if synthesizer in members:
        members = []
    return members, synthesizer, think_rounds if think_on else 0


def configuration_names(config: MombotConfig, think_rounds: int) -> list[str]:
    """What `mombot eval` compares, in the order it reports them."""
    members, synthesizer, think_rounds = roles(config, think_rounds)
    return [
        *(m.name for m in members),
        synthesizer.name,
        *(["mixture"] if len(members) >= 2 else []),
        *(f"mixture - {m.name}" for m in members if len(members) >= 3),
        *(["think"] if think_rounds else []),
    ]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Evaluation:
    """Asks every question of every configuration through one running App."""

    def __init__(self, app: App, *, think_rounds: int) -> None:
        assert app.brain is not None and app.history is not None
        self.app = app
        self.brain = app.brain
        self.history = app.history
        self.members, self.synthesizer, self.think_rounds = roles(app.config, think_rounds)
        mixture_config = app.config.mixture.model_copy(update={"fast_path_max_words": 0})
        self.mixture = Mixture(self.members, self.synthesizer, self.brain.runner, mixture_config)

    async def run(self, questions: list[Question]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        bar = tqdm(total=len(questions), desc="mombot eval", unit="question", file=sys.stderr)
        with bar:
            for number, question in enumerate(questions):
                outcomes += await self.ask(number, question)
                bar.update()
        return outcomes

    async def ask(self, number: int, question: Question) -> list[Outcome]:
        """Every configuration's outcome for one question."""
        channel = f"eval:q{number}"
        turn = Turn(channel, question.text, await self.history.add(channel, "user", question.text))
        outcomes = []
        alone = await self._members(turn, question, number)
        outcomes += alone
        outcomes.append(
            await self._measure(
                self.synthesizer.name,
                number,
                question,
                lambda: self.brain.runner.answer(self.synthesizer, turn, stage="eval · alone"),
            )
        )
        if len(self.members) >= 2:
            outcomes += await self._mixtures(turn, question, number, alone)
        if self.think_rounds:
            outcomes.append(await self._think(question, number))
        return outcomes

    async def _members(self, turn: Turn, question: Question, number: int) -> list[Outcome]:
        """Each member alone, all at once (as in the mixture)."""
        runner = self.brain.runner
        return list(
            await asyncio.gather(
                *(
                    self._measure(
                        m.name,
                        number,
                        question,
                        functools.partial(runner.answer, m, turn, stage=f"propose · {m.name}"),
                    )
                    for m in self.members
                )
            )
        )

    async def _mixtures(
        self, turn: Turn, question: Question, number: int, alone: list[Outcome]
    ) -> list[Outcome]:
        """The full mixture, and the mixture with each member left out, on the same answers."""
        proposals = [
            Proposal(o.config, o.reply if o.error is None else None, o.seconds, o.error)
            for o in alone
        ]
        propose_s = max(o.seconds for o in alone)
        propose_tokens = {o.config: o.tokens for o in alone}
        left_out: list[str | None] = [None]
        if len(self.members) >= 3:
            left_out += [m.name for m in self.members]
        outcomes = []
        for name in left_out:
            used = [p for p in proposals if p.character != name]

            async def synthesized(used: list[Proposal] = used) -> str:
                return await self.mixture.synthesize(turn, used, _streamer())

            outcome = await self._measure(
                "mixture" if name is None else f"mixture - {name}",
                number,
                question,
                synthesized,
            )
            tokens = sum(propose_tokens[p.character] for p in used)
            seconds = outcome.seconds + propose_s
            outcomes.append(replace(outcome, seconds=seconds, tokens=outcome.tokens + tokens))
        return outcomes

    async def _think(self, question: Question, number: int) -> Outcome:
        """/think through the brain's own command path, in a channel of its own."""
        outbox = CollectingOutbox()
        message = Inbound(
            "eval",
            f"think-q{number}",
            "eval",
            "eval",
            question.text,
            is_admin=True,
            command=CommandCall("think", {"question": question.text, "rounds": self.think_rounds}),
        )

        async def think() -> str:
            await self.brain.handle(message, outbox)
            if outbox.errors:
                raise EvalError(outbox.errors[-1])
            return outbox.last_message()

        return await self._measure("think", number, question, think)

    async def _measure(
        self, config: str, number: int, question: Question, call: Callable[[], Awaitable[str]]
    ) -> Outcome:
        """One configuration's reply to one question: checked, timed and its tokens counted."""
        usages: list[Usage] = []

        async def counted() -> str:
            current_usages.set(usages)  # this task's own context: only its calls count
            return await call()

        started = time.monotonic()
        reply, error = "", None
        try:
            reply = await asyncio.create_task(counted())
        except (MombotError, EvalError) as exc:
            error = getattr(exc, "user_message", None) or str(exc)
        seconds = time.monotonic() - started
        tokens = sum(u.prompt_tokens + u.completion_tokens for u in usages)
        return Outcome(
            config=config,
            question=number,
            tag=question.tag,
            right=error is None and is_right(reply, question.expected),
            read=None if error else extracted(reply, question.expected),
            seconds=seconds,
            tokens=tokens,
            reply=reply,
            error=error,
        )


class EvalError(Exception):
    """A configuration that answered with an error message instead of a reply."""


def _streamer() -> ReplyStreamer:
    return ReplyStreamer(CollectingOutbox())


class CollectingOutbox:
    """Keeps what the brain would have shown, for reading the final answer back."""

    capabilities = Capabilities(max_message_length=100_000, edit_interval_s=0.0)

    def __init__(self) -> None:
        self.messages: dict[int, str] = {}
        self.errors: list[str] = []

    async def send(self, text: str) -> int:
        ref = len(self.messages)
        self.messages[ref] = text
        return ref

    async def edit(self, ref: int, text: str) -> None:
        self.messages[ref] = text

    async def send_image(self, data: bytes, filename: str, caption: str) -> int:
        return await self.send(caption)

    async def send_reasoning(self, text: str) -> None:
        return None

    async def typing(self) -> None:
        return None

    async def error(self, text: str) -> None:
        self.errors.append(text)

    def last_message(self) -> str:
        """The newest message: /think's presented answer comes after its status message."""
        return self.messages[max(self.messages)] if self.messages else ""
