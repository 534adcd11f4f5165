"""Running one character on one turn: trimmed to its context window, streamed or whole.

Every model call for a conversation goes through here, so each character gets its
own context budget (its model's window, its own reply reserve) and its own timeout.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from brain.bounded import BoundedDict
from brain.characters.card_prompt import speaking_to, with_examples
from brain.characters.context import (
    FIRST_HISTORY_PAGE,
    MAX_HISTORY_PAGE,
    PromptPlan,
    build_prompt,
    reply_reserve,
)
from brain.characters.lorebook import Lore, fire, merge, with_lore
from brain.characters.recall import Recollection
from brain.config import CharacterConfig
from brain.errors import ContextTooLong
from brain.history.store import HistoryStore, StoredTurn
from brain.models.client import Message, ModelClient
from brain.streaming import ReplyStreamer

log = logging.getLogger(__name__)

TRUNCATED_NOTE = "_(Your message was too long for me; I read only its beginning.)_"
CUT_SHORT_NOTE = "_(My answer reached its length limit and was cut short.)_"
KEEP_WHOLE_SENTENCES = 0.7  # trim a cut reply to its last sentence if that keeps this share
_SENTENCE_END = re.compile(r"[.!?…)\]\"'`*]\s|\n")


def end_cut_reply(text: str) -> str:
    """A reply the length limit cut mid-sentence, ended visibly.

    Trimmed to its last whole sentence when that keeps most of it, else marked with "…",
    so it never just stops at "…It is".
    """
    body = text.rstrip()
    if not body:
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(body + " ")]
    last = max((e for e in ends if e <= len(body) + 1), default=0)
    if last >= len(body):  # it ends a sentence already
        return body
    if last >= KEEP_WHOLE_SENTENCES * len(body):
        return body[:last].rstrip()
    return body + "…"


@dataclass(frozen=True)
class Turn:
    """The user's turn being answered: where it is stored and what it says."""

    channel: str
    text: str
    turn_id: int  # the stored user turn; history before it is the context
    images: tuple[str, ...] = ()  # data URLs, for vision characters only
    history_images: bool = False  # whether generated-image entries are part of its context
    # The newest text turns before turn_id, read with the turn's insert (`prefetch_size` asked
    # for, newest first): every character's prompt starts from them without a database trip.
    prefetched: tuple[StoredTurn, ...] | None = None
    prefetch_size: int = 0
    recollection: Recollection | None = None  # what the memory recalled for it
    speaker: str = ""  # who wrote it: a card's {{user}} (`brain.characters.card_prompt`)
    speaker_persona: str = ""  # who they say they are (/persona), shown after their message
    # Whose direct conversation it is ("discord:1234"; "" in a shared room): their memory
    # may follow them from their other ones (`[memory] follow_user`).
    direct_user: str = ""


PAGE_HINTS = 4096  # channels whose window is remembered (hints, never a cache: see ChannelWindow)


@dataclass
class ChannelWindow:
    """What the channel's last prompts held: hints for the next prompt, never needed for a
    correct one (a process that lost them reads one more page, or a window that moves)."""

    turn_id: int  # the turn they were built for
    kept: int  # most turns a prompt for that turn kept: the next first page's size
    oldest: int | None  # oldest turn any of them kept: where the memory starts recalling
    # character → the oldest turn its last prompt kept (`build_prompt`'s floor)
    floors: dict[str, int] = field(default_factory=dict)


class CharacterRunner:
    """Asks one character for an answer to a turn, within its model's context window."""

    def __init__(
        self,
        history: HistoryStore,
        clients: dict[str, ModelClient],
        channel_lore: dict[str, Lore] | None = None,
    ) -> None:
        self.history = history
        self.clients = clients
        self.channel_lore = channel_lore or {}  # lorebooks for everyone in a channel
        self._windows: BoundedDict[str, ChannelWindow] = BoundedDict(PAGE_HINTS)

    def history_page_size(self, channel: str) -> int:
        """How many turns to read with a new turn: what the channel's last prompt kept, plus room.

        Only a hint for the first read: a wrong guess costs one more page, never a wrong
        prompt, so several processes serving one channel stay correct.
        """
        last = self._windows.get(channel)
        return FIRST_HISTORY_PAGE if last is None else min(MAX_HISTORY_PAGE, last.kept + 8)

    async def answer(
        self,
        character: CharacterConfig,
        turn: Turn,
        *,
        system: str | None = None,
        after: str = "",
        stage: str = "",
    ) -> str:
        """The character's whole answer (not streamed): for proposals and think rounds.

        `system` replaces the persona; `after` follows the user's message (see
        `brain.characters.context`: what changes per message goes last, so caches stay warm).
        """
        client = self.clients[character.endpoint]

        async def call(plan: PromptPlan, max_tokens: int) -> str:
            return await client.chat(
                character.model,
                plan.messages,
                temperature=character.temperature,
                max_tokens=max_tokens,
                timeout_s=character.timeout_s,
                stage=stage or character.name,
                reasoning=character.reasoning,
                cache_key=character.name,
            )

        text, _ = await self._with_retry(
            character, turn, system, after, call, can_retry=lambda: True
        )
        return text

    async def stream(
        self,
        character: CharacterConfig,
        turn: Turn,
        streamer: ReplyStreamer,
        *,
        system: str | None = None,
        after: str = "",
        stage: str = "",
        footer: str = "",
    ) -> str:
        """Stream the character's answer into chat, under its name; returns the reply text."""
        client = self.clients[character.endpoint]
        streamer.author = character.name

        reasoning: list[str] = []
        finish_reasons: list[str] = []

        async def call(plan: PromptPlan, max_tokens: int) -> str:
            stream = client.stream_chat(
                character.model,
                plan.messages,
                temperature=character.temperature,
                max_tokens=max_tokens,
                timeout_s=character.timeout_s,
                stage=stage or character.name,
                prompt_tokens=plan.prompt_tokens,
                on_reasoning=reasoning.append,
                on_retract=streamer.retract,
                on_finish=finish_reasons.append,
                reasoning=character.reasoning,
                cache_key=character.name,
            )
            async with contextlib.aclosing(stream):
                async for piece in stream:
                    await streamer.push(piece)
            return streamer.text

        _, plan = await self._with_retry(
            character, turn, system, after, call, can_retry=lambda: not streamer.text
        )
        cut_short = finish_reasons[-1:] == ["length"]
        if cut_short:
            log.info(
                "%s: reply cut at its length limit (%d tokens)",
                character.name,
                character.max_tokens,
            )
        notes = [
            TRUNCATED_NOTE if plan.user_truncated else "",
            CUT_SHORT_NOTE if cut_short else "",
            footer,
        ]
        reply = await streamer.finish(
            "\n".join(note for note in notes if note),
            transform=end_cut_reply if cut_short else None,
        )
        if reasoning:  # shown folded away, never stored
            await streamer.fold_reasoning(reasoning[-1])
        return reply

    async def plan(
        self,
        character: CharacterConfig,
        turn: Turn,
        *,
        system: str | None = None,
        after: str = "",
        slack: int = 0,
    ) -> tuple[PromptPlan, int]:
        """The trimmed prompt for this character and the reply reserve it leaves."""
        client = self.clients[character.endpoint]
        window = await client.context_window(character.model)
        reserve = reply_reserve(window, character.max_tokens)
        persona = system
        if persona is None:  # its own: with the lore its messages wake, and its examples

            async def cost(text: str) -> int:
                return await client.count_tokens(character.model, text)

            persona = character.persona
            lore = merge(b for b in (character.lore, self.channel_lore.get(turn.channel)) if b)
            if lore is not None:
                scanned = await self._older_turns(turn, turn.turn_id, lore.scan_depth)
                texts = [t.content for t in reversed(scanned)] + [turn.text]
                persona = with_lore(persona, await fire(lore, texts, cost), character.name)
            room = window - reserve
            persona = await with_examples(persona, character.examples, room, cost)
        plan = await build_prompt(
            client,
            character.model,
            window=window,
            reserve=reserve + slack,
            system=speaking_to(persona, turn.speaker),
            user_text=turn.text,
            older_turns=lambda before, limit: self._older_turns(turn, before, limit),
            before_id=turn.turn_id,
            first_page_size=turn.prefetch_size if self._has_prefetch(turn) else FIRST_HISTORY_PAGE,
            after=speaking_to(
                "\n\n".join(part for part in (after, _about(turn), character.post_history) if part),
                turn.speaker,
            ),
            floor=self._floor(turn.channel, character.name),
            recollection=turn.recollection,
        )
        self._remember(turn, character.name, plan.kept_turns, plan.oldest_kept)
        if turn.images and await self.can_see(character):
            plan.messages[-1] = _with_images(plan.messages[-1], turn.images)
        return plan, reserve

    @staticmethod
    def _has_prefetch(turn: Turn) -> bool:
        return turn.prefetched is not None and not turn.history_images

    async def _older_turns(self, turn: Turn, before: int | None, limit: int) -> list[StoredTurn]:
        prefetched = turn.prefetched if self._has_prefetch(turn) else None
        if prefetched is not None and before == turn.turn_id and limit <= turn.prefetch_size:
            return list(prefetched[:limit])
        return await self.history.recent(
            turn.channel, before_id=before, limit=limit, include_images=turn.history_images
        )

    def window_start(self, channel: str) -> int | None:
        """The oldest turn the channel's last prompts held (None: not known in this process).

        Turns before it have left every character's window: the memory recalls and
        summarizes those.
        """
        last = self._windows.get(channel)
        return None if last is None else last.oldest

    def _floor(self, channel: str, character: str) -> int | None:
        window = self._windows.touch(channel)
        return None if window is None else window.floors.get(character)

    def _remember(self, turn: Turn, character: str, kept: int, oldest: int | None) -> None:
        window = self._windows.get(turn.channel)
        if window is None or window.turn_id != turn.turn_id:
            floors = {} if window is None else window.floors
            window = ChannelWindow(turn.turn_id, kept, oldest, floors)
        else:  # several characters: the largest prompt, the oldest turn any kept
            window.kept = max(kept, window.kept)
            if oldest is not None and (window.oldest is None or oldest < window.oldest):
                window.oldest = oldest
        if oldest is not None:
            window.floors[character] = oldest
        self._windows[turn.channel] = window

    async def can_see(self, character: CharacterConfig) -> bool:
        """The character's `vision` setting, or, where unset, what its server says (cached)."""
        if character.vision is not None:
            return character.vision
        info = await self.clients[character.endpoint].model_info(character.model)
        return info.vision is True

    async def _with_retry(
        self,
        character: CharacterConfig,
        turn: Turn,
        system: str | None,
        after: str,
        call: Callable[[PromptPlan, int], Awaitable[str]],
        can_retry: Callable[[], bool],
    ) -> tuple[str, PromptPlan]:
        """Run `call`; if the server counts more tokens than we did, retry once with more slack."""
        window = await self.clients[character.endpoint].context_window(character.model)
        for slack in (0, window // 4):
            plan, reserve = await self.plan(
                character, turn, system=system, after=after, slack=slack
            )
            log.debug(
                "%s: prompt ~%d tokens, %d history turns (window %d, reserve %d)",
                character.name,
                plan.prompt_tokens,
                plan.kept_turns,
                window,
                reserve,
            )
            try:
                return await call(plan, reserve), plan
            except ContextTooLong:
                if slack or not can_retry():
                    raise
                log.warning("%s: server counted more tokens than we did; retrying", character.name)
        raise AssertionError("unreachable")


def _with_images(message: Message, images: tuple[str, ...]) -> Message:
    """The user message as OpenAI content parts: its text, then each image."""
    parts: list[dict[str, object]] = [{"type": "text", "text": message["content"]}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return {"role": message["role"], "content": parts}


def _about(turn: Turn) -> str:
    """The writer's persona, after their message: it changes with the writer, so it goes
    with what changes per message (the persona and history ahead stay cached)."""
    if not turn.speaker_persona:
        return ""
    return f"[About {{{{user}}}}, who wrote this: {turn.speaker_persona}]"
