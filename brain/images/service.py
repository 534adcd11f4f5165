"""Images in a conversation: `/sd`, image requests in chat, proposals, journaling, delivery.

A character writes the prompt for a request in chat (or `/sd you|me|scene|last`); with
`images.confirm` the prompt is first proposed, as a question open in the channel
(`brain.questions`): the user says yes or no, or on platforms with buttons edits
the prompt in a form (that answer never goes through the command parser).
The drawing itself runs after the channel's turn: the request is queued in order within
the turn, and the chat of that channel goes on while the image renders; the image
arrives when done. Each job is journaled until its user has the image or was told why
not, so one that a crash cut off is reported after the restart.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from brain.after_turn import after_turn
from brain.characters.runner import Turn
from brain.config import CharacterConfig, ImagesConfig
from brain.database.tables import IMAGE
from brain.errors import BadCommand, FeatureUnavailable
from brain.history.personas import Personas
from brain.history.store import HistoryStore
from brain.images.jobs import ImageJobs
from brain.images.requests import (
    IMAGE_MODES,
    ImageGenerator,
    ImagePromptWriter,
    ImageRequest,
    build_request,
    styled,
)
from brain.messages import CommandCall, Inbound
from brain.outbox import ConfirmingOutbox, Outbox
from brain.questions import OpenQuestions
from brain.routing.router import IMAGE_TURN_PREFIX
from brain.text import clean_text

log = logging.getLogger(__name__)

CONFIRM_PROMPT = (
    "🎨 I'd draw: {prompt}\nSay **yes** to draw it or **no** to drop it "
    "(or /sd with the prompt you want instead)."
)
CONFIRM_BUTTONS = (
    "🎨 I'd draw: {prompt}\nDraw it, edit the prompt, or cancel (or just reply yes or no)."
)
NOT_DRAWING = "All right, I won't draw it."
NO_GENERATOR = "I can't make images here: no image generator is set up (images.backend)."
LOST_IMAGE = (
    "I was restarted before I could finish the image you asked for ({prompt}). Please ask again."
)


@dataclass(frozen=True)
class ImageProposal:
    """An image prompt a character wrote, shown to the user, waiting for their answer."""

    request: ImageRequest


class ImageService:
    """Turns image requests into pictures in the chat, through one `ImageGenerator`."""

    def __init__(
        self,
        generator: ImageGenerator | None,
        config: ImagesConfig,
        history: HistoryStore,
        prompt_writer: ImagePromptWriter,
        artist: CharacterConfig,
        questions: OpenQuestions[object],
        jobs: ImageJobs,
        personas: Personas | None = None,
    ) -> None:
        self.generator = generator
        self.config = config
        self.history = history
        self.jobs = jobs
        self.prompt_writer = prompt_writer
        self.artist = artist  # whose style goes around every prompt (the synthesizer)
        self.questions = questions  # where a proposal waits for its user's answer
        self.personas = personas  # who users say they are: /sd me draws them so

    def request(self, message: Inbound, prompt: str, args: dict[str, Any]) -> ImageRequest:
        """The checked request; raises a user-facing error for a bad argument or no generator."""
        self._require_generator()
        return build_request(
            self.config,
            prompt=prompt,
            args=args,
            user_id=message.author_id,
            channel=message.channel_key,
        )

    async def from_chat(self, message: Inbound, outbox: Outbox, turn: Turn) -> None:
        """A message the router sent here: a character writes the prompt from the turn."""
        await self._written(message, outbox, turn, {})

    async def sd_command(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        """`/sd PROMPT [options]`, or `/sd you|me|scene|last` for a prompt a character writes."""
        prompt = clean_text(call.args["prompt"])
        self.request(message, prompt, call.args)  # refused before anything is stored
        mode = prompt.lower() if prompt.lower() in IMAGE_MODES else None
        instruction = await self._mode_instruction(mode, message) if mode else None
        turn_id = await self.history.add(
            message.channel_key, "user", f"(asked for an image) {prompt}", message.author_name
        )
        if mode is None:
            request = self.request(message, prompt, call.args)
            await self._draw(message, outbox, request, await outbox.send("🎨 Getting ready…"))
            return
        turn = Turn(message.channel_key, instruction or prompt, turn_id)
        await self._written(message, outbox, turn, call.args)

    async def settle_proposal(
        self, proposal: ImageProposal, answer: bool | str, message: Inbound, outbox: Outbox
    ) -> None:
        """The user's answer to a proposed prompt: draw it (True), drop it (False), or draw
        their edited prompt (a string, checked like any other: a bad one raises)."""
        request = proposal.request
        if isinstance(answer, str):
            request = replace(request, prompt=self.request(message, answer, {}).prompt)
        said = clean_text(message.text)
        await self.history.add(message.channel_key, "user", said, message.author_name)
        if answer is False:
            await outbox.send(NOT_DRAWING)
            return
        await self._draw(message, outbox, request, await outbox.send("🎨 Getting ready…"))

    async def report_lost_jobs(
        self, platform: str, notify: Callable[[str, str], Awaitable[None]]
    ) -> int:
        """Tell the users whose image jobs died with an earlier run of this bot.

        `notify(channel_id, text)` sends into a channel of `platform`. Returns how many
        jobs were reported.
        """
        jobs = await self.jobs.take_lost(platform)
        for job in jobs:
            channel_id = job.channel.split(":", 1)[1]
            log.info("%s: an image job of %s was lost in a restart", job.channel, job.user_id)
            try:
                await notify(channel_id, LOST_IMAGE.format(prompt=job.prompt[:200]))
            except Exception:  # the platform's own error, whose types only its adapter knows
                log.warning("could not tell %s about a lost image job", job.channel, exc_info=True)
        return len(jobs)

    # -- inside -------------------------------------------------------------------------

    def _require_generator(self) -> ImageGenerator:
        if self.generator is None:
            raise FeatureUnavailable(NO_GENERATOR)
        return self.generator

    async def _written(
        self, message: Inbound, outbox: Outbox, turn: Turn, args: dict[str, Any]
    ) -> None:
        """A character writes the prompt; drawn at once, or proposed first (`confirm`)."""
        self._require_generator()
        status = await outbox.send("🎨 Writing a prompt…")
        request = self.request(message, await self.prompt_writer.write(turn), args)
        if not self.config.confirm:
            await self._draw(message, outbox, request, status)
            return
        timeout = self.config.confirm_timeout_s
        proposal = ImageProposal(request)
        self.questions.open(message.channel_key, message.author_id, proposal, timeout)
        if isinstance(outbox, ConfirmingOutbox):
            text = CONFIRM_BUTTONS.format(prompt=request.prompt)
            await outbox.ask_to_confirm(status, text, request.prompt, message.author_id, timeout)
        else:
            await outbox.edit(status, CONFIRM_PROMPT.format(prompt=request.prompt))

    async def _draw(
        self, message: Inbound, outbox: Outbox, request: ImageRequest, status: Any
    ) -> None:
        """Journal the job now; render, send and store it once the channel's turn is over."""
        generator = self._require_generator()
        # The images are the answering character's: its style goes around every prompt.
        request = styled(request, self.artist.image_style, self.config.max_prompt_chars)
        channel = message.channel_key

        async def progress(text: str) -> None:
            await outbox.edit(status, f"🎨 {text}")

        await progress(f"Drawing: {request.prompt}")
        job_id = await self.jobs.start(channel, message.author_id, request.prompt)

        async def deliver() -> None:
            try:
                result = await generator.generate(request, progress)
                caption = (
                    f"{result.prompt}\n(seed {result.seed}, {result.width}x{result.height}, "
                    f"{request.steps} steps)"
                )
                await outbox.send_image(result.png, f"mombot-{result.seed}.png", caption)
                await progress(f"Done: {result.prompt}")  # not left at "step 1/2"
            finally:
                await self.jobs.finish(job_id)
            await self.history.add(
                channel,
                "assistant",
                f"{IMAGE_TURN_PREFIX}{result.prompt} (seed {result.seed})]",
                self.artist.name,
                kind=IMAGE,
                image=result.png,
            )

        await after_turn(deliver)

    async def _mode_instruction(self, mode: str, message: Inbound) -> str:
        """What the prompt writer is asked to draw for `/sd you|me|scene|last`."""
        last = ""
        if mode == "last":
            recent = await self.history.recent(message.channel_key, limit=50)
            last = next((t.content for t in recent if t.role == "assistant"), "")
            if not last:
                raise BadCommand("I haven't said anything here yet that I could illustrate.")
        artist = self.artist
        user = message.author_name
        if mode == "me" and self.personas is not None:
            if described := await self.personas.get(message.user_key):
                user = f"{user} (who says of themselves: {described})"
        return IMAGE_MODES[mode].format(
            name=artist.name, persona=artist.persona, user=user, last=last[:2000]
        )
