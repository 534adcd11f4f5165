"""The character mixture: members answer concurrently, a synthesizer merges them, streamed.

Mixture-of-Agents shape: proposers in parallel, each within its own context window
and timeout; the final model keeps its own persona as its system message and reads the
numbered proposals, then an aggregate-and-synthesize instruction, after the user's
message (last, so that the persona and history ahead of them stay in the server's prompt
cache from one message to the next), and only it streams. A member that fails is left
out and named in a footer; if all fail, the user gets one clear error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from brain.characters.runner import CharacterRunner, Turn
from brain.chat.tuning import ChannelTuning
from brain.config import CharacterConfig, MixtureConfig
from brain.errors import ModelUnavailable, MombotError
from brain.outbox import Reporter, answered_line
from brain.streaming import ReplyStreamer

log = logging.getLogger(__name__)

AGGREGATE_INSTRUCTION = (
    "Several advisors have answered the message above; their answers are listed here. "
    "Weigh them critically: some may be wrong, biased or incomplete. Do not copy them, "
    "do not mention the advisors, and do not list their answers. Write one refined, "
    "accurate reply to the user in your own voice, as a single assistant."
)
MAX_PROPOSAL_CHARS = 4000


@dataclass(frozen=True)
class MixtureReply:
    """The reply the user saw, the character who spoke it, and the members' proposals."""

    text: str
    author: str
    proposals: list[Proposal] = field(default_factory=list)


@dataclass(frozen=True)
class Proposal:
    """One member's answer, or why it has none."""

    character: str
    text: str | None
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.text is not None and bool(self.text.strip())


def synthesis_note(proposals: list[Proposal], instruction: str = AGGREGATE_INSTRUCTION) -> str:
    """What the synthesizer reads after the user's message: numbered proposals, then the
    instruction (nearest to where it starts writing)."""
    texts = [p.text for p in proposals if p.ok and p.text is not None]
    numbered = "\n\n".join(
        f"{i}. {text[:MAX_PROPOSAL_CHARS].strip()}" for i, text in enumerate(texts, start=1)
    )
    return f"[Advisors' answers]\n\n{numbered}\n\n[{instruction}]"


class Mixture:
    """Members propose, the synthesizer speaks."""

    def __init__(
        self,
        members: list[CharacterConfig],
        synthesizer: CharacterConfig,
        runner: CharacterRunner,
        config: MixtureConfig,
    ) -> None:
        self.members = members
        self.synthesizer = synthesizer
        self.runner = runner
        self.config = config
        self.tuning = ChannelTuning()  # each channel's reply length and temperature

    @property
    def writer(self) -> CharacterConfig:
        """The character whose words people read: the synthesizer, or the one member."""
        return self.members[0] if len(self.members) == 1 else self.synthesizer

    async def propose(
        self,
        turn: Turn,
        members: list[CharacterConfig] | None = None,
        report: Reporter | None = None,
    ) -> list[Proposal]:
        """All members answer at once; failures become proposals without text.

        `report` hears who has answered so far, before the first answer and after each.
        """
        members = members if members is not None else self.members
        names = [c.name for c in members]
        done: set[str] = set()

        async def one(character: CharacterConfig) -> Proposal:
            proposal = await self._propose_one(character, turn)
            done.add(character.name)
            if report is not None:
                await report(answered_line("", names, done))
            return proposal

        if report is not None:
            await report(answered_line("", names, done))
        return list(await asyncio.gather(*(one(c) for c in members)))

    async def _propose_one(self, character: CharacterConfig, turn: Turn) -> Proposal:
        started = time.monotonic()
        try:
            text = await self.runner.answer(character, turn, stage=f"propose · {character.name}")
        except MombotError as exc:
            log.warning("%s failed to propose: %s (%s)", character.name, exc.user_message, exc)
            return Proposal(character.name, None, time.monotonic() - started, _short_reason(exc))
        except Exception as exc:  # one broken member never breaks the mixture
            log.exception("%s failed to propose", character.name)
            return Proposal(character.name, None, time.monotonic() - started, type(exc).__name__)
        return Proposal(character.name, text, time.monotonic() - started)

    async def answer(
        self,
        turn: Turn,
        streamer: ReplyStreamer,
        *,
        on_proposals: Callable[[list[Proposal]], Awaitable[None]] | None = None,
        report: Reporter | None = None,
    ) -> MixtureReply:
        """Answer a turn with the whole mixture: the reply, who spoke it, and the proposals.

        `report` hears its progress (see `brain.outbox.ProgressOutbox`).
        """
        settings = self.tuning.get(turn.channel)  # /settings, for this channel
        members = [settings.member(c) for c in self.members]
        if len(members) == 1:
            speaker = settings.writer(members[0])
            return MixtureReply(await self.runner.stream(speaker, turn, streamer), speaker.name)
        synthesizer = settings.writer(self.synthesizer)
        if len(turn.text.split()) <= self.config.fast_path_max_words and not turn.images:
            reply = await self.runner.stream(synthesizer, turn, streamer, stage="fast path")
            return MixtureReply(reply, synthesizer.name)
        proposals = await self.propose(turn, members, report=report)
        if report is not None:
            await report(f"{synthesizer.name} is writing the reply")
        if on_proposals is not None:
            await on_proposals(proposals)
        reply = await self.synthesize(turn, proposals, streamer, synthesizer)
        return MixtureReply(reply, synthesizer.name, proposals)

    async def synthesize(
        self,
        turn: Turn,
        proposals: list[Proposal],
        streamer: ReplyStreamer,
        synthesizer: CharacterConfig | None = None,
    ) -> str:
        """The synthesizer's reply from the members' proposals (failed ones named in a
        footer); `mombot eval` calls it with some proposals left out. `synthesizer`: as
        the channel's settings tune it (default: as configured)."""
        good = [p for p in proposals if p.ok]
        failed = [p for p in proposals if not p.ok]
        if not good:
            reasons = ", ".join(f"{p.character} ({p.error or 'empty answer'})" for p in failed)
            raise ModelUnavailable(f"None of my characters could answer: {reasons}.")
        footer = ""
        if failed and self.config.name_failures:
            names = ", ".join(f"{p.character} ({p.error or 'empty answer'})" for p in failed)
            footer = f"_(without {names})_"
        return await self.runner.stream(
            synthesizer or self.synthesizer,
            turn,
            streamer,
            after=synthesis_note(good),
            stage="synthesis",
            footer=footer,
        )


def _short_reason(exc: MombotError) -> str:
    name = type(exc).__name__
    return {
        "ModelTimeout": "timed out",
        "ModelUnavailable": "unreachable",
        "ContextTooLong": "context too long",
    }.get(name, "error")
