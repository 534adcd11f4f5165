"""/think: deep thinking in rounds, with anonymous schema-constrained voting until consensus.

Each round every member answers (from round 2 on, after seeing the others' previous
answers), then votes for the best answer of that round: a JSON object whose `choice`
is an enum of the anonymised, shuffled candidate ids, never its own. Votes are tallied
in code, weighted by confidence and character weight. When one answer's share
reaches the consensus threshold (with a quorum of valid votes), thinking stops early.
The synthesizer then presents the winning answer, streamed. Votes that fail to parse
are abstentions.
"""

from __future__ import annotations

import asyncio
import logging
import random
import string
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from brain.characters.runner import Turn
from brain.commands.registry import Arg, CommandSpec
from brain.config import CharacterConfig
from brain.errors import BadCommand, MombotError
from brain.extensions import Extension
from brain.messages import CommandCall, Inbound
from brain.models.client import ModelClient
from brain.outbox import Outbox, Reporter, answered_line, reporter
from brain.strict_model import StrictModel

log = logging.getLogger(__name__)

REVISE_INSTRUCTION = (
    "Other thinkers answered the same question; their answers are listed here. Consider them "
    "critically, keep what is right, fix what is wrong, and give your own best answer "
    "to the question. Answer directly."
)
CONFIDENCE_SCALE = 10  # votes say how sure they are from 0 to this
VOTE_INSTRUCTION = (
    "You judge answers to a question. Pick the single best answer among the candidates "
    "below (you cannot pick your own), say how confident you are from 0 to 10, and give a "
    "one-sentence reason."
)
PRESENT_INSTRUCTION = (
    "After careful deliberation, the answer above won. Present it to the user in your own "
    "voice as one clear reply; do not mention voting or other thinkers."
)


class ThinkSettings(StrictModel):
    default_rounds: int = Field(3, ge=2, le=20, description="Rounds when /think gives none.")
    consensus: float = Field(2 / 3, gt=0.5, le=1, description="Vote share that ends thinking.")
    quorum: float = Field(0.5, gt=0, le=1, description="Share of voters whose vote must parse.")
    vote_max_tokens: int = Field(96, ge=16, le=1024, description="Length of one vote in tokens.")
    seed: int | None = Field(None, description="Shuffle seed (tests); empty: random.")


@dataclass(frozen=True)
class Ballot:
    voter: str
    choice: str | None  # a character name, or None for an abstention
    confidence: float


@dataclass
class RoundResult:
    number: int
    answers: dict[str, str]  # character -> answer
    ballots: list[Ballot] = field(default_factory=list)

    def shares(self, weights: dict[str, float]) -> dict[str, float]:
        """Each answer's confidence- and weight-weighted share of the valid votes."""
        totals: dict[str, float] = {name: 0.0 for name in self.answers}
        for ballot in self.ballots:
            if ballot.choice is not None:
                totals[ballot.choice] += ballot.confidence * weights.get(ballot.voter, 1.0)
        whole = sum(totals.values())
        return {name: (value / whole if whole else 0.0) for name, value in totals.items()}

    def valid_votes(self) -> int:
        return sum(1 for b in self.ballots if b.choice is not None)


class Vote(BaseModel):
    """One member's vote: a candidate's id, how sure it is, and why."""

    choice: str
    # An integer: llama.cpp's grammars (and Ollama's) hold integers to their range but
    # keep no bounds on floats, and a small model then writes -1 and the vote is lost.
    confidence: int = Field(ge=0, le=CONFIDENCE_SCALE)
    rationale: str = Field(max_length=400)


def vote_schema(candidate_ids: list[str]) -> type[Vote]:
    """A `Vote` whose `choice` may only be one of `candidate_ids` (the schema the server's
    grammar holds the model to)."""
    # A Literal of values known only at run time: to a type checker it is just a value.
    choice_type: Any = Literal[tuple(candidate_ids)]
    return create_model("Vote", __base__=Vote, choice=(choice_type, ...))


def ballot_confidence(vote: Vote) -> float:
    """A vote's confidence as a share, 0 to 1, from the 0-to-10 the model wrote."""
    return vote.confidence / CONFIDENCE_SCALE


class DeepThinking(Extension):
    name = "deep_thinking"
    settings_model = ThinkSettings

    def commands(self) -> list[CommandSpec]:
        return [
            CommandSpec(
                "think",
                "Think hard: the characters answer, read each other, and vote until they agree.",
                (
                    Arg("question", "What to think about.", required=True, text=True, prose=True),
                    Arg(
                        "rounds",
                        "Most rounds (2–20).",
                        type=int,
                        min=2,
                        max=20,
                        default=self.settings.default_rounds,
                    ),
                ),
            )
        ]

    async def run_command(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        members = self.context.members
        if len(members) < 2:
            raise BadCommand("/think needs at least two characters (see /characters).")
        question = call.args["question"]
        rounds = call.args["rounds"]
        channel = message.channel_key
        history = self.context.history
        turn_id = await history.add(channel, "user", question, message.author_name)
        turn = await self.context.replies.remembered(Turn(channel, question, turn_id), question)
        status = await outbox.send(f"🤔 Thinking about it: round 1/{rounds}…")
        progress = _Progress(f"in round 1/{rounds}")
        try:
            result = await self._rounds(members, question, turn, rounds, outbox, status, progress)
            progress.stage = "while writing the answer"
            await self._present(result, turn, outbox)
        except asyncio.CancelledError:
            # Stopped (the bot shutting down): the status must not stay at "round 1/6…".
            await _say_cut_off(outbox, status, progress.stage)
            raise

    async def _rounds(
        self,
        members: list[CharacterConfig],
        question: str,
        turn: Turn,
        rounds: int,
        outbox: Outbox,
        status: object,
        progress: _Progress,
    ) -> RoundResult:
        """Answer and vote, round after round, until consensus or the last round."""
        rng = random.Random(self.settings.seed)
        weights = {c.name: c.weight for c in members}
        previous: dict[str, str] = {}
        result: RoundResult | None = None
        for number in range(1, rounds + 1):
            progress.stage = f"in round {number}/{rounds}"
            await self.context.cool_down(outbox)
            answers = await self._answers(
                members, turn, previous, number, report=reporter(outbox), rounds=rounds
            )
            if not answers:
                raise MombotError("None of my characters could answer; try again later.")
            result = RoundResult(number, answers)
            result.ballots = await self._votes(members, question, answers, number, rng)
            shares = result.shares(weights)
            leader = max(shares, key=shares.__getitem__)
            agreed = (
                result.valid_votes() >= self.settings.quorum * len(members)
                and shares[leader] >= self.settings.consensus
            )
            await outbox.edit(status, _progress_line(result, shares, leader, rounds, agreed))
            if agreed:
                break
            previous = answers
        assert result is not None
        return result

    async def _present(self, result: RoundResult, turn: Turn, outbox: Outbox) -> None:
        """The synthesizer presents the winning answer, streamed, and it is stored."""
        shares = result.shares({c.name: c.weight for c in self.context.members})
        winner = max(shares, key=shares.__getitem__)
        synthesizer = self.context.synthesizer
        # After the question, not in the system prompt: the persona and history stay cached.
        after = f"[The winning answer]\n{result.answers[winner][:4000]}\n\n[{PRESENT_INSTRUCTION}]"
        await self.context.cool_down(outbox)
        replies = self.context.replies
        reply = await self.context.runner.stream(
            synthesizer,
            turn,
            replies.streamer(outbox, turn.channel),
            after=after,
            stage="think · final",
        )
        await replies.store(turn.channel, reply, synthesizer.name, outbox)

    async def _answers(
        self,
        members: list[CharacterConfig],
        turn: Turn,
        previous: dict[str, str],
        number: int,
        *,
        report: Reporter,
        rounds: int,
    ) -> dict[str, str]:
        names = [c.name for c in members]
        done: set[str] = set()
        prefix = f"round {number}/{rounds}: "

        async def one(character: CharacterConfig) -> tuple[str, str | None]:
            result = await answer(character)
            done.add(character.name)
            await report(answered_line(prefix, names, done))
            return result

        async def answer(character: CharacterConfig) -> tuple[str, str | None]:
            after = ""
            others = [text for name, text in previous.items() if name != character.name]
            if others:
                listed = "\n\n".join(f"- {text[:1500]}" for text in others)
                after = f"[Other answers]\n\n{listed}\n\n[{REVISE_INSTRUCTION}]"
            try:
                text = await self.context.runner.answer(
                    character, turn, after=after, stage=f"think r{number} · {character.name}"
                )
            except MombotError as exc:
                log.warning("think round %d: %s failed: %s", number, character.name, exc)
                return character.name, None
            except Exception:  # one broken member never stops the thinking
                log.exception("think round %d: %s failed", number, character.name)
                return character.name, None
            return character.name, text.strip() or None

        await report(answered_line(prefix, names, done))
        pairs = await asyncio.gather(*(one(c) for c in members))
        await report(f"round {number}/{rounds}: voting")
        return {name: text for name, text in pairs if text}

    async def _votes(
        self,
        members: list[CharacterConfig],
        question: str,
        answers: dict[str, str],
        number: int,
        rng: random.Random,
    ) -> list[Ballot]:
        names = list(answers)
        rng.shuffle(names)
        ids = {name: string.ascii_uppercase[i] for i, name in enumerate(names)}
        by_id = {label: name for name, label in ids.items()}

        async def one(voter: CharacterConfig) -> Ballot:
            candidates = [name for name in names if name != voter.name]
            if not candidates:
                return Ballot(voter.name, None, 0.0)
            listed = "\n\n".join(f"[{ids[n]}] {answers[n][:1500]}" for n in candidates)
            schema = vote_schema([ids[n] for n in candidates])
            client: ModelClient = self.context.runner.clients[voter.endpoint]
            messages = [
                {"role": "system", "content": f"{voter.persona}\n\n{VOTE_INSTRUCTION}"},
                {"role": "user", "content": f"Question: {question}\n\nCandidates:\n\n{listed}"},
            ]
            try:
                vote = await client.chat_json(
                    voter.model,
                    messages,
                    schema,
                    max_tokens=self.settings.vote_max_tokens,
                    timeout_s=voter.timeout_s,
                    stage=f"vote r{number} · {voter.name}",
                )
            except MombotError as exc:
                log.info("vote of %s in round %d counts as abstention: %s", voter.name, number, exc)
                return Ballot(voter.name, None, 0.0)
            except Exception:  # one broken member never stops the thinking
                log.exception("vote of %s in round %d failed: an abstention", voter.name, number)
                return Ballot(voter.name, None, 0.0)
            return Ballot(voter.name, by_id[vote.choice], ballot_confidence(vote))

        return list(await asyncio.gather(*(one(v) for v in members)))


@dataclass
class _Progress:
    """Where a /think is, in words, for the status line if it is cut off."""

    stage: str


async def _say_cut_off(outbox: Outbox, status: object, stage: str) -> None:
    """Edit the status to say the thinking was stopped (best effort: the bot is stopping)."""
    try:
        await outbox.edit(status, f"🤔 Cut off {stage}: I was stopped before I could finish.")
    except Exception:  # the platform's own error, whose types only its adapter knows
        log.exception("could not mark a /think status as cut off")


def _progress_line(
    result: RoundResult, shares: dict[str, float], leader: str, rounds: int, agreed: bool
) -> str:
    counts: dict[str, int] = {}
    for ballot in result.ballots:
        key = ballot.choice or "abstained"
        counts[key] = counts.get(key, 0) + 1
    split = ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    state = (
        "consensus ✅"
        if agreed
        else ("no consensus" if result.number == rounds else "thinking on…")
    )
    return (
        f"🤔 Round {result.number}/{rounds}: leading {leader} ({shares[leader]:.0%}); "
        f"votes: {split} — {state}"
    )
