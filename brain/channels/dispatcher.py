"""Which path a message takes, given what its author was asked: the small state machine.

With a route question or an image proposal open for the author in that channel:
- a command is always a command (the question stays open for the answer after it);
- a short yes or no answers it (yes draws; no answers in words, or drops the proposal);
- anything else carries on as a new message, and the question is dropped.
A button or form (`ButtonAnswer`) answers the open question only, never the command
parser: an edited prompt that starts with `/word` is a prompt.
"""

from __future__ import annotations

from brain.channels.events import Answerable, ButtonAnswer, ReplyChosen
from brain.chat.pipeline import ChatPipeline
from brain.commands.registry import CommandRegistry
from brain.errors import BadCommand
from brain.images.service import ImageProposal, ImageService
from brain.messages import CommandCall, Inbound
from brain.outbox import Outbox
from brain.questions import OpenQuestions, yes_or_no
from brain.routing.question import RouteQuestion

PROPOSAL_GONE = "That question has expired; ask again."
YES_OR_NO = "Please answer yes or no."


class Dispatcher:
    """Sends each message or button answer down its one path: the answer to the question
    open for its author, a command, or the chat."""

    def __init__(
        self,
        commands: CommandRegistry,
        chat: ChatPipeline,
        images: ImageService,
        questions: OpenQuestions[object],
    ) -> None:
        self.commands = commands
        self.chat = chat
        self.images = images
        self.questions = questions

    async def dispatch(self, event: Answerable) -> None:
        message, outbox = event.message, event.outbox
        if isinstance(event, ButtonAnswer):
            await self._button(message, outbox)
            return
        if isinstance(event, ReplyChosen):
            await self.chat.choose_reply(message.channel_key, event.text, event.author)
            return
        command = self._command(message)
        if command is not None:
            await self.commands.run(command, message, outbox)
            return
        asked = self.questions.take(message.channel_key, message.author_id)
        said = yes_or_no(message.text) if asked is not None and not message.attachments else None
        if asked is not None and said is not None:
            await self._settle(asked, said, message, outbox)
        else:  # no question, or the user carried on: the question is dropped
            await self.chat.answer(message, outbox)

    def _command(self, message: Inbound) -> CommandCall | None:
        if message.command is not None:
            return self.commands.check(message.command)
        return self.commands.parse_text(message.text)

    async def _button(self, message: Inbound, outbox: Outbox) -> None:
        """ "yes", "no", or (for a proposal) the edited prompt."""
        channel, user = message.channel_key, message.author_id
        asked = self.questions.peek(channel, user)
        if asked is None:
            raise BadCommand(PROPOSAL_GONE)
        text = message.text.strip()
        answer: bool | str | None = {"yes": True, "no": False}.get(text.lower())
        if answer is None:
            answer = text if isinstance(asked, ImageProposal) else yes_or_no(text)
        if answer is None:
            raise BadCommand(YES_OR_NO)
        if isinstance(answer, str):  # an edited prompt is checked first: a bad one loses nothing
            self.images.request(message, answer, {})
        self.questions.take(channel, user)
        await self._settle(asked, answer, message, outbox)

    async def _settle(
        self, asked: object, answer: bool | str, message: Inbound, outbox: Outbox
    ) -> None:
        if isinstance(asked, ImageProposal):
            await self.images.settle_proposal(asked, answer, message, outbox)
        elif isinstance(asked, RouteQuestion):
            await self.chat.settle_route_question(asked, answer is True, outbox)
