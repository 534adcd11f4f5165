"""The chat pipeline: one plain message, from its text to the reply shown and stored.

Hooks, clean-up, attachments, storing the user's turn, the vision character, routing
(an image request goes to the image service; a message the router cannot call is asked
about first, `brain.routing.question`; the answer comes back through
`settle_route_question`), cool-down, the mixture, and the ending
every reply shares (`store`): extensions' post_process hooks run before the last edit,
so what is shown is what is stored, under the name of the character who spoke it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from brain.bounded import BoundedDict
from brain.characters.lorebook import fired_lore
from brain.characters.recall import Recollection
from brain.characters.runner import CharacterRunner, Turn
from brain.chat.attachments import PreparedAttachments, prepare_attachments
from brain.chat.greetings import Greeter
from brain.chat.mixture import Mixture, Proposal
from brain.chat.vision import Vision
from brain.config import AttachmentsConfig, CharacterConfig, HistoryConfig, MixtureConfig
from brain.errors import BadCommand
from brain.extensions import Hooks
from brain.history.personas import Personas
from brain.history.replies import last_exchange, replace_replies
from brain.history.store import HistoryStore
from brain.images.service import ImageService
from brain.memory.memory import NO_LIMIT, Memory
from brain.messages import Inbound
from brain.models.usage import Usage, current_usages, format_usages
from brain.outbox import DetailOutbox, Outbox, reporter
from brain.questions import OpenQuestions
from brain.routing.question import RouteQuestion, ask
from brain.routing.router import Classifier, Route, RouteDecision, decide
from brain.streaming import ReplyStreamer, split_text
from brain.text import clean_text

log = logging.getLogger(__name__)

EMPTY_REPLY = "_(The model returned an empty answer.)_"
NOTHING_TO_ANSWER_AGAIN = "There is no message here to answer again yet."
DEBUG_CHANNELS = 4096  # channels whose /debug switch is remembered


class ChatPipeline:
    """Answers plain messages with the mixture (or hands image requests on)."""

    def __init__(
        self,
        *,
        characters: list[CharacterConfig],
        runner: CharacterRunner,
        mixture: Mixture,
        history: HistoryStore,
        hooks: Hooks,
        classifier: Classifier,
        images: ImageService | None,
        cool_down: Callable[[Outbox], Awaitable[None]],
        history_config: HistoryConfig,
        attachments_config: AttachmentsConfig,
        mixture_config: MixtureConfig,
        questions: OpenQuestions[object],
        memory: Memory | None = None,
        personas: Personas | None = None,
    ) -> None:
        self.characters = characters
        self.runner = runner
        self.mixture = mixture
        self.history = history
        self.hooks = hooks
        self.classifier = classifier
        self.images = images
        self.cool_down = cool_down
        self.history_config = history_config
        self.attachments_config = attachments_config
        self.mixture_config = mixture_config
        self.memory = memory
        self.personas = personas  # who each user says they are (/persona)
        self.debug: BoundedDict[str, bool] = BoundedDict(DEBUG_CHANNELS)
        self.questions = questions  # "should I draw that?", when unsure
        self.greeter = Greeter(mixture.writer, history)  # a card's first message
        self.vision = Vision(characters, runner, history)  # who looks at attached images
        self.question_timeout_s = images.config.confirm_timeout_s if images is not None else 0.0

    async def answer(self, message: Inbound, outbox: Outbox) -> None:
        channel = message.channel_key
        message = await self.hooks.pre_process(message, channel)
        text = clean_text(message.text)
        limit = self.history_config.max_turn_chars
        files = await prepare_attachments(message.attachments, self.attachments_config)
        if len(text) > limit:
            files.notes.append(f"Your message was very long: I kept its first {limit} characters.")
            text = text[:limit]
        if not (text or files.images or files.texts):
            if files.notes:
                await outbox.send("\n".join(files.notes))
                return
            raise BadCommand("Your message was empty; say something and I'll answer.")
        # Without a character that can look, the stored turn says its images were not seen
        # (else the models make up what they show).
        vision = await self.vision.character() if files.images else None
        stored = _with_files(text, files, seen=vision is not None)
        await self.greeter.greet_if_new(channel, message.author_name, outbox)
        persona = await self.personas.get(message.user_key) if self.personas else ""
        page_size = self.runner.history_page_size(channel)
        turn_id, page = await self.history.add_and_recent(
            channel,
            "user",
            stored,
            message.author_name,
            page_size,
            source=message.source,
            text_chars=None if stored == text else len(text),  # files follow: see TurnRow
        )
        if files.notes:
            await outbox.send("\n".join(files.notes))
        await outbox.typing()
        usages: list[Usage] = []  # for /debug: the vision and routing calls count too
        current_usages.set(usages)
        if files.images and vision is None:
            names = ", ".join(name for name, _ in files.images)
            await outbox.send(
                f"I can't look at images ({names}): no character with vision is configured."
            )
            if not (text or files.texts):  # a picture alone that no one can see
                return
        elif files.images and vision is not None:
            stored = await self.vision.describe(
                vision, text, stored, files.images, turn_id, channel
            )
        elif self.images is not None:
            decision = await self._route(text, channel)
            turn = Turn(
                channel,
                stored,
                turn_id,
                speaker=message.author_name,
                speaker_persona=persona,
                direct_user=message.direct_user,
            )
            if decision.unsure:  # too close to call: ask, and answer nothing yet
                await ask(self.questions, message, outbox, turn, self.question_timeout_s)
                return
            if decision.route is Route.IMAGE:
                await self.images.from_chat(message, outbox, turn)
                return
        turn = Turn(
            channel,
            stored,
            turn_id,
            prefetched=tuple(page),
            prefetch_size=page_size,
            speaker=message.author_name,
            speaker_persona=persona,
            direct_user=message.direct_user,
        )
        await self._reply_in_words(outbox, await self.remembered(turn, text), usages)

    async def settle_route_question(
        self, question: RouteQuestion, draw: bool, outbox: Outbox
    ) -> None:
        """The user's answer to "should I draw that?": draw (yes), or answer in words."""
        if draw and self.images is not None:
            await self.images.from_chat(question.message, outbox, question.turn)
            return
        usages: list[Usage] = []
        current_usages.set(usages)
        turn = await self.remembered(question.turn, question.turn.text)
        await self._reply_in_words(outbox, turn, usages)

    async def answer_again(self, message: Inbound, outbox: Outbox) -> None:
        """/retry: the channel's last message answered anew (new member answers, a new
        synthesis); the new reply is stored in place of the replies it had. A page keeps
        the earlier ones as alternatives (`choose_reply`)."""
        channel = message.channel_key
        last = await last_exchange(self.history, channel)
        if last is None:
            raise BadCommand(NOTHING_TO_ANSWER_AGAIN)
        usages: list[Usage] = []
        current_usages.set(usages)
        persona = await self.personas.get(message.user_key) if self.personas else ""
        asked = Turn(
            channel,
            last.content,
            last.turn_id,
            speaker=message.author_name,
            speaker_persona=persona,
            direct_user=message.direct_user,
        )
        turn = await self.remembered(asked, last.content)
        await self._reply_in_words(outbox, turn, usages, replacing=last.replies)

    async def choose_reply(self, channel: str, text: str, author: str) -> None:
        """Of the last message's alternative replies, `text` by `author` is the one shown
        now: it is stored in place of the others, so the next prompt holds what was seen."""
        last = await last_exchange(self.history, channel)
        if last is None:
            raise BadCommand(NOTHING_TO_ANSWER_AGAIN)
        await replace_replies(self.history, channel, last.replies, text, author)

    async def _reply_in_words(
        self,
        outbox: Outbox,
        turn: Turn,
        usages: list[Usage],
        replacing: tuple[int, ...] | None = None,
    ) -> None:
        """The mixture answers the stored turn, streamed, then stored (in place of the
        replies `replacing`, when answering again); with /debug on, the proposals and every
        model call (`usages`, collected since the message came)."""
        channel = turn.channel
        await self.cool_down(outbox)
        debug = self.debug.get(channel, self.mixture_config.debug)

        shown: list[Proposal] = []

        async def show_proposals(proposals: list[Proposal]) -> None:
            shown.extend(proposals)
            if debug:
                await send_long(outbox, _format_proposals(proposals))

        lore: list[str] = []  # the lorebook entries its prompts held, for /debug
        fired_lore.set(lore)
        streamer = self.streamer(outbox, channel)
        answer = await self.mixture.answer(
            turn, streamer, on_proposals=show_proposals, report=reporter(outbox)
        )
        await self.store(channel, answer.text, answer.author, outbox, replacing)
        if isinstance(outbox, DetailOutbox):
            await outbox.details(shown, usages)
        if debug and lore:
            await send_long(outbox, "📖 lore:\n" + "\n".join(dict.fromkeys(lore)))
        if debug and usages:
            await send_long(outbox, "🔍 calls:\n" + format_usages(usages))

    async def remembered(self, turn: Turn, text: str) -> Turn:
        """The turn with what the memory recalls for `text` (unchanged with memory off)."""
        return replace(turn, recollection=await self._recall(turn, text))

    async def _recall(self, turn: Turn, text: str) -> Recollection | None:
        """What the memory recalls for `text`; None with the memory off, or failing.

        It searches before the window the channel's last prompts held, where that is known
        (what is in the window needs no recalling; each prompt drops what it holds anyway).
        """
        if self.memory is None or not text:
            return None
        channel = turn.channel
        before = self.runner.window_start(channel) or NO_LIMIT
        try:
            return await self.memory.recall(channel, text, before, turn.direct_user)
        except (SQLAlchemyError, OSError, RuntimeError):  # the memory never costs a reply
            # (its database, or torch on the encoder: what recall touches)
            log.exception("%s: recall failed; answering without the memory", channel)
            return None

    def streamer(self, outbox: Outbox, channel: str) -> ReplyStreamer:
        """A reply streamer whose last edit shows the reply as the hooks leave it."""

        async def finalize(reply: str) -> str:
            return await self.hooks.post_process(reply, channel)

        return ReplyStreamer(outbox, finalize=finalize)

    async def store(
        self,
        channel: str,
        reply: str,
        author: str,
        outbox: Outbox,
        replacing: tuple[int, ...] | None = None,
    ) -> None:
        """Store a finished reply (as shown) under its speaker, or say that it was empty."""
        if not reply.strip():
            await outbox.send(EMPTY_REPLY)
            return
        if replacing is None:
            await self.history.add(channel, "assistant", reply, author)
        else:
            await replace_replies(self.history, channel, replacing, reply, author)
        if self.memory is not None:  # rewrites the summary in the background if it is due
            self.memory.after_reply(channel, self.runner.window_start(channel))

    async def _route(self, text: str, channel: str) -> RouteDecision:
        """Text or image, from the message and what came just before it."""
        # images drawn here count: "make it bluer" follows one
        turns = await self.history.recent(channel, limit=5, include_images=True)
        return await decide(
            self.classifier, text, [t.content for t in reversed(turns)][:-1], channel
        )


def _with_files(text: str, files: PreparedAttachments, *, seen: bool = True) -> str:
    """The stored turn: the text, each text file inline, and a mark for each image (its
    description follows where a character could look at it)."""
    parts = [text] if text else []
    for name, content in files.texts:
        parts.append(f"[file {name}]\n```\n{content}\n```")
    for name, _ in files.images:
        unseen = "" if seen else ": not seen; no character here can look at images"
        parts.append(f"[image {name}{unseen}]")
    return "\n\n".join(parts)


def _format_proposals(proposals: list[Proposal]) -> str:
    lines = ["🔍 proposals:"]
    for p in proposals:
        body = p.text.strip() if p.ok and p.text else f"(failed: {p.error or 'empty answer'})"
        lines.append(f"**{p.character}** ({p.seconds:.1f} s): {body}")
    return "\n\n".join(lines)


async def send_long(outbox: Outbox, text: str) -> Any:
    """Send a text of any length, split at the platform's limit."""
    for part in split_text(text, outbox.capabilities.max_message_length):
        await outbox.send(part)
