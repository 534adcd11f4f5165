"""The brain: takes one neutral message and answers it through an outbox.

`Brain.handle` is the single boundary where typed errors become chat messages;
anything else is logged with its traceback and the user gets a short apology.
Messages of one channel are answered one at a time, in order.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from brain.attachments import PreparedAttachments, prepare_attachments
from brain.channel_queue import ChannelQueue
from brain.commands import Arg, CommandRegistry, CommandSpec
from brain.config import (
    AttachmentsConfig,
    CharacterConfig,
    HistoryConfig,
    ImagesConfig,
    MixtureConfig,
)
from brain.errors import BadCommand, FeatureUnavailable, MombotError
from brain.extensions import Extension, ExtensionContext, load_extensions
from brain.history import IMAGE, HistoryStore
from brain.images import (
    IMAGE_MODES,
    MAX_SEED,
    ImageGenerator,
    ImagePromptWriter,
    ImageRequest,
    build_request,
    styled,
)
from brain.llm import ModelClient, Usage
from brain.messages import Attachment, CommandCall, Inbound
from brain.metrics import TokenTracker, current_channel, current_usages, format_usages
from brain.mixture import Mixture, Proposal
from brain.outbox import ConfirmingOutbox, Outbox
from brain.routing import Classifier, Route, TextOnly
from brain.runner import CharacterRunner, Turn
from brain.streaming import ReplyStreamer, split_text
from brain.telemetry import Sources, Telemetry

log = logging.getLogger(__name__)


class CoolDownMonitor(Protocol):
    """The GPU monitor as the brain sees it (see brain.imaging.gpu)."""

    async def cool_down(self, report: Any) -> None: ...

    def describe(self) -> str: ...


CANCEL_RETRY_S = 2.0  # shutdown: cancel again after this long
GENERIC_ERROR = "Sorry, something went wrong on my side. The details are in the bot's log."
SHUTTING_DOWN = "I'm restarting right now; please ask again in a minute."
STOPPED_MID_REPLY = "I was stopped before I could finish this answer; please ask again in a minute."
CONFIRM_PROMPT = (
    "🎨 I'd draw: {prompt}\nSay **yes** to draw it, **no** to drop it, or send the prompt you want instead."
)
CONFIRM_BUTTONS = (
    "🎨 I'd draw: {prompt}\nDraw it, edit the prompt, or cancel "
    "(or just reply yes, no, or your own prompt)."
)
YES_WORDS = {"yes", "y", "ok", "okay", "sure", "draw it", "go", "go ahead"}
NO_WORDS = {"no", "n", "nope", "cancel", "stop", "don't"}
NOTHING_TO_LOOK_AT = "I have no image of this conversation to look at: draw one first (/sd)."
LOST_IMAGE = "I was restarted before I could finish the image you asked for ({prompt}). Please ask again."
VISION_INSTRUCTION = (
    "Describe the attached image(s) precisely and concisely for someone who cannot see "
    "them, then answer the user's question about them if there is one."
)
# C0/C1 controls except tab and newline, and zero-width/bidi formatting characters.
_INVISIBLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def clean_text(text: str) -> str:
    """Drop control and invisible formatting characters; normalise line ends."""
    return _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


@dataclass(frozen=True)
class ImageProposal:
    """An image prompt a character wrote, shown to the user, waiting for their answer."""

    request: ImageRequest
    expires: float


def split_roles(characters: list[CharacterConfig]) -> tuple[list[CharacterConfig], CharacterConfig]:
    """(members, synthesizer): the synthesizer is the one so marked, else the first member."""
    active = [c for c in characters if c.enabled]
    if not active:
        raise ValueError("the brain needs at least one enabled character")
    members = [c for c in active if c.role == "member"]
    synthesizer = next((c for c in active if c.role == "synthesizer"), None)
    if not members:
        members = [synthesizer]  # type: ignore[list-item]
    return members, synthesizer or members[0]


class Brain:
    """Routes each inbound message to a command, to the mixture or to the image generator."""

    def __init__(
        self,
        *,
        characters: list[CharacterConfig],
        clients: dict[str, ModelClient],
        history: HistoryStore,
        classifier: Classifier | None = None,
        image_generator: ImageGenerator | None = None,
        history_config: HistoryConfig | None = None,
        mixture_config: MixtureConfig | None = None,
        attachments_config: AttachmentsConfig | None = None,
        images_config: ImagesConfig | None = None,
        extensions: list[str] | None = None,
        extension_settings: dict[str, dict[str, Any]] | None = None,
        gpu: CoolDownMonitor | None = None,
    ) -> None:
        self.characters = characters
        self.members, self.synthesizer = split_roles(characters)
        self.clients = clients
        self.history = history
        self.history_config = history_config or HistoryConfig()
        self.mixture_config = mixture_config or MixtureConfig()
        self.attachments_config = attachments_config or AttachmentsConfig()
        self.images_config = images_config or ImagesConfig()
        self.classifier = classifier or TextOnly()
        self.image_generator = image_generator
        self.gpu = gpu
        self.tracker = TokenTracker()
        self.telemetry = Telemetry(Sources(self.tracker, lambda: getattr(self.image_generator, "length", None)))
        for client in clients.values():
            client.usage_sinks.append(self.tracker.record)
        self.runner = CharacterRunner(history, clients)
        self.mixture = Mixture(self.members, self.synthesizer, self.runner, self.mixture_config)
        by_name = {c.name: c for c in characters}
        self.prompt_writer = ImagePromptWriter(
            self.runner,
            by_name.get(self.images_config.prompt_character, self.synthesizer),
            self.images_config.max_prompt_chars,
        )
        self.commands = CommandRegistry()
        for spec in self._builtin_commands():
            self.commands.register(spec)
        context = ExtensionContext(
            self.members, self.synthesizer, self.runner, self.mixture, history, self.tracker
        )
        self.extensions: list[Extension] = load_extensions(
            extensions or [], extension_settings or {}, context, self.commands
        )
        self._command_owner = {
            spec.name: ext for ext in self.extensions for spec in ext.commands()
        }
        self._debug: dict[str, bool] = {}
        self.channel_queue = ChannelQueue()
        self._closing = False
        self._in_flight: set[asyncio.Task[Any]] = set()
        # image prompts waiting for the user's yes, no or edit, per (channel, user)
        self._proposals: dict[tuple[str, str], ImageProposal] = {}

    def _builtin_commands(self) -> list[CommandSpec]:
        images = self.images_config
        return [
            CommandSpec("help", "Show what I can do."),
            CommandSpec("reset", "Forget this channel's conversation.", admin=True),
            CommandSpec("characters", "List the characters who answer here."),
            CommandSpec("stats", "Token use and speed per model in this channel."),
            CommandSpec(
                "look",
                "Ask about the last image I drew here; the vision character looks at it.",
                (Arg("question", "What you want to know about it.", text=True),),
            ),
            CommandSpec(
                "debug",
                "Show (on) or hide (off) each character's proposal and timing here.",
                (Arg("state", "on or off", required=True, text=True, choices=("on", "off")),),
                admin=True,  # it changes how the bot behaves for everyone in the channel
            ),
            CommandSpec(
                "sd",
                "Draw an image with Stable Diffusion.",
                (
                    Arg("prompt", "What to draw, or: you, me, scene, last (from this conversation).",
                        required=True, text=True),
                    Arg("negative", "What to keep out of the image."),
                    Arg("steps", "Denoising steps.", type=int, min=1, max=images.max_steps),
                    Arg("size", "WIDTHxHEIGHT, multiples of 8, e.g. 512x512.", metavar="WxH"),
                    Arg("seed", "Seed for a repeatable image.", type=int, min=0, max=MAX_SEED),
                ),
            ),
        ]

    # -- the boundary ---------------------------------------------------------------

    async def handle(self, message: Inbound, outbox: Outbox) -> None:
        """Answer one message. Never raises: failures become a message to the user."""
        if self._closing:
            await self._tell_error(outbox, SHUTTING_DOWN, "shutdown")
            return
        current_channel.set(message.channel_key)
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        started = time.monotonic()
        kind = self.commands.kind_of(message.text, message.command)  # the metrics label
        try:
            async with self.channel_queue.turn(message.channel_key):
                if message.command is not None:
                    command: CommandCall | None = self.commands.check(message.command)
                else:
                    command = self.commands.parse_text(message.text)
                if command is not None:
                    await self._run_command(command, message, outbox)
                else:
                    await self._answer(message, outbox)
        except (BadCommand, FeatureUnavailable) as exc:
            log.info("%s: %s: %s", message.channel_key, type(exc).__name__, exc)
            await self._tell_error(outbox, exc.user_message, type(exc).__name__)
        except MombotError as exc:
            log.warning("%s: %s (%s)", message.channel_key, type(exc).__name__, exc)
            await self._tell_error(outbox, exc.user_message, type(exc).__name__)
        except Exception:
            log.exception("%s: unexpected failure while answering", message.channel_key)
            await self._tell_error(outbox, GENERIC_ERROR, "unexpected")
        except asyncio.CancelledError:
            if self._closing:  # cut off by shutdown(): say so (the question is stored already)
                log.info("%s: reply cancelled by shutdown", message.channel_key)
                await self._tell_error(outbox, STOPPED_MID_REPLY, "shutdown")
            raise
        finally:
            self._in_flight.discard(task)  # type: ignore[arg-type]
            self.telemetry.observe_reply(kind, time.monotonic() - started)

    async def shutdown(self, grace_s: float) -> None:
        """Stop taking messages; let replies in progress finish for `grace_s`, then cancel them.

        New messages get a "restarting" reply. A cancelled reply tells its user so, and is
        not stored, so the history holds only complete answers.
        """
        self._closing = True
        running = self._in_flight - {asyncio.current_task()}
        if not running:
            return
        log.info("shutting down: waiting up to %.0f s for %d replies", grace_s, len(running))
        _, unfinished = await asyncio.wait(running, timeout=grace_s)
        # Cancel until they end: a library that swallows one cancel must not hold the stop up.
        while unfinished:
            for task in unfinished:
                task.cancel()
            _, unfinished = await asyncio.wait(unfinished, timeout=CANCEL_RETRY_S)

    async def report_lost_image_jobs(
        self, platform: str, notify: Callable[[str, str], Awaitable[None]]
    ) -> int:
        """Tell the users whose image jobs died with an earlier process (SIGKILL, power cut).

        Each adapter calls this once it can send, with `notify(channel_id, text)`.
        Returns how many jobs were reported.
        """
        jobs = await self.history.take_lost_image_jobs(platform)
        for job in jobs:
            channel_id = job.channel.split(":", 1)[1]
            log.info("%s: an image job of %s was lost in a restart", job.channel, job.user_id)
            try:
                await notify(channel_id, LOST_IMAGE.format(prompt=job.prompt[:200]))
            except Exception:
                log.warning("could not tell %s about a lost image job", job.channel, exc_info=True)
        return len(jobs)

    @property
    def closing(self) -> bool:
        """True once shutdown() began: no new messages are taken."""
        return self._closing

    async def _tell_error(self, outbox: Outbox, text: str, kind: str) -> None:
        self.telemetry.count_error(kind)
        try:
            await outbox.error(text)
        except Exception:
            log.exception("could not deliver an error message")

    # -- chat ---------------------------------------------------------------------------

    async def _answer(self, message: Inbound, outbox: Outbox) -> None:
        channel = message.channel_key
        message = await self._run_hooks("pre_process", message, channel)
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
        if not files.images and await self._answer_proposal(message, outbox, text):
            return
        stored = _with_files(text, files)
        page_size = self.runner.history_page_size(channel)
        turn_id, page = await self.history.add_and_recent(
            channel, "user", stored, message.author_name, page_size
        )
        if files.notes:
            await outbox.send("\n".join(files.notes))
        await outbox.typing()
        usages: list[Usage] = []
        current_usages.set(usages)
        if files.images:
            stored = await self._describe_images(text, stored, files, channel, turn_id, outbox)
        elif self.image_generator is not None and await self._wants_image(text, channel):
            await self._image(message, outbox, Turn(channel, stored, turn_id), prompt=None, args={})
            return
        await self._cool_down(outbox)
        turn = Turn(channel, stored, turn_id, prefetched=tuple(page), prefetch_size=page_size)
        debug = self._debug.get(channel, self.mixture_config.debug)
        streamer = ReplyStreamer(outbox)

        async def show_proposals(proposals: list[Proposal]) -> None:
            if debug:
                await _send_long(outbox, _format_proposals(proposals))

        reply, _ = await self.mixture.answer(turn, streamer, on_proposals=show_proposals)
        if not reply.strip():
            await outbox.send("_(The model returned an empty answer.)_")
            return
        reply = await self._run_hooks("post_process", reply, channel)
        await self.history.add(channel, "assistant", reply, self.synthesizer.name)
        if debug and usages:
            await _send_long(outbox, "🔍 calls:\n" + format_usages(usages))

    async def _cool_down(self, outbox: Outbox) -> None:
        """Wait for a hot GPU before a model job, telling the user in one edited message."""
        if self.gpu is None:
            return
        status: list[Any] = []

        async def report(text: str) -> None:
            if status:
                await outbox.edit(status[0], text)
            else:
                status.append(await outbox.send(text))

        await self.gpu.cool_down(report)

    async def _wants_image(self, text: str, channel: str) -> bool:
        """Ask the classifier; any failure of it means text."""
        # images drawn here count: "make it bluer" follows one
        turns = await self.history.recent(channel, limit=5, include_images=True)
        recent = [t.content for t in reversed(turns)][:-1]
        try:
            decision = await self.classifier.classify(text, recent)
        except Exception:
            log.exception("classifier failed; answering as text")
            return False
        log.info("%s: route %s by %s (%.2f)", channel, decision.route.value, decision.source,
                 decision.confidence)
        return decision.route is Route.IMAGE

    async def _describe_images(
        self,
        text: str,
        stored: str,
        files: PreparedAttachments,
        channel: str,
        turn_id: int,
        outbox: Outbox,
    ) -> str:
        """The vision character looks; everyone else reads its description."""
        vision = None
        for character in self.characters:
            if character.enabled and await self.runner.can_see(character):
                vision = character
                break
        names = ", ".join(name for name, _ in files.images)
        if vision is None:
            await outbox.send(
                f"I can't look at images ({names}): no character with vision is configured."
            )
            return stored
        question = text or "What is in this image?"
        turn = Turn(channel, question, turn_id, images=tuple(url for _, url in files.images))
        system = f"{vision.persona}\n\n{VISION_INSTRUCTION}"
        description = await self.runner.answer(vision, turn, system=system, stage="vision")
        described = f"{stored}\n\n[{names}, as {vision.name} sees it: {description.strip()}]"
        await self.history.update(turn_id, described)
        return described

    async def _run_hooks(self, hook: str, value: Any, channel: str) -> Any:
        """Pass `value` through every extension that overrides `hook`; one that raises is disabled.

        The channel's recent history is read once, and only if some extension wants it.
        """
        hooked = [e for e in self.extensions if getattr(type(e), hook) is not getattr(Extension, hook)]
        if not hooked:
            return value
        recent = await self.history.recent(channel, limit=20)
        for extension in hooked:
            try:
                value = await getattr(extension, hook)(value, recent) or value
            except Exception:
                log.exception("extension %s failed in %s and is disabled", extension.name, hook)
                self.extensions.remove(extension)
        return value

    # -- images ------------------------------------------------------------------------

    def _require_generator(self) -> ImageGenerator:
        if self.image_generator is None:
            raise FeatureUnavailable(
                "I can't make images here: no image generator is set up (images.backend)."
            )
        return self.image_generator

    def _image_request(self, message: Inbound, prompt: str, args: dict[str, Any]) -> ImageRequest:
        """The checked request; raises a user-facing error for a bad argument or no generator."""
        self._require_generator()
        return build_request(
            self.images_config, prompt=prompt, args=args, user_id=message.author_id,
            channel=message.channel_key,
        )  # fmt: skip

    async def _image(
        self,
        message: Inbound,
        outbox: Outbox,
        turn: Turn,
        *,
        prompt: str | None,
        args: dict[str, Any],
    ) -> None:
        self._require_generator()
        if prompt is not None:
            request = self._image_request(message, prompt, args)
            status = await outbox.send("🎨 Getting ready…")
        else:  # a request in chat, or /sd you|me|scene|last: a character writes the prompt
            status = await outbox.send("🎨 Writing a prompt…")
            request = self._image_request(message, await self.prompt_writer.write(turn), args)
            if self.images_config.confirm:
                self._proposals[(message.channel_key, message.author_id)] = ImageProposal(
                    request, time.monotonic() + self.images_config.confirm_timeout_s)
                if isinstance(outbox, ConfirmingOutbox):
                    await outbox.ask_to_confirm(
                        status, CONFIRM_BUTTONS.format(prompt=request.prompt), request.prompt,
                        message.author_id, self.images_config.confirm_timeout_s,
                    )  # fmt: skip
                else:
                    await outbox.edit(status, CONFIRM_PROMPT.format(prompt=request.prompt))
                return
        await self._draw(message, outbox, request, status)

    async def _answer_proposal(self, message: Inbound, outbox: Outbox, text: str) -> bool:
        """The user's answer to an image prompt proposed to them: yes, no, or their own prompt.

        Returns False when there is no live proposal, and the message is an ordinary one.
        """
        key = (message.channel_key, message.author_id)
        proposal = self._proposals.pop(key, None)
        if proposal is None or proposal.expires < time.monotonic():
            return False
        answer = text.strip().lower().rstrip("!.")
        request = proposal.request
        if answer not in YES_WORDS | NO_WORDS:  # an edited prompt, checked like any other
            try:
                request = replace(request, prompt=self._image_request(message, text, {}).prompt)
            except BadCommand:
                self._proposals[key] = proposal  # a bad edit loses nothing: the proposal waits on
                raise
        await self.history.add(message.channel_key, "user", text, message.author_name)
        if answer in NO_WORDS:
            await outbox.send("All right, I won't draw it.")
            return True
        await self._draw(message, outbox, request, await outbox.send("🎨 Getting ready…"))
        return True

    async def _draw(self, message: Inbound, outbox: Outbox, request: ImageRequest, status: Any) -> None:
        """Generate, send and store one image, reporting progress in the status message."""
        generator = self._require_generator()
        # The images are the answering character's: its style goes around every prompt.
        request = styled(request, self.synthesizer.image_style, self.images_config.max_prompt_chars)

        async def progress(text: str) -> None:
            await outbox.edit(status, f"🎨 {text}")

        await progress(f"Drawing: {request.prompt}")
        # Journaled until the user has the image or was told why not; a job a crash cut off
        # is reported after the restart (report_lost_image_jobs).
        job_id = await self.history.start_image_job(message.channel_key, message.author_id,
                                                    request.prompt)
        try:
            result = await generator.generate(request, progress)
            caption = f"{result.prompt}\n(seed {result.seed}, {result.width}x{result.height}, {request.steps} steps)"
            await outbox.send_image(result.png, f"mombot-{result.seed}.png", caption)
        finally:
            await self.history.finish_image_job(job_id)
        await self.history.add(
            message.channel_key, "assistant", f"[image: {result.prompt} (seed {result.seed})]",
            self.synthesizer.name, kind=IMAGE, image=result.png,
        )  # fmt: skip

    # -- commands ---------------------------------------------------------------------

    async def _run_command(self, command: CommandCall, message: Inbound, outbox: Outbox) -> None:
        spec = self.commands.specs.get(command.name)
        if spec is None:
            raise BadCommand(f"/{command.name} is not available here.")
        if spec.admin and not message.is_admin:
            raise BadCommand(f"Only admins can use /{command.name} here.")
        owner = self._command_owner.get(command.name)
        if owner is not None:
            await owner.run_command(command, message, outbox)
        elif command.name == "help":
            await outbox.send(self.commands.help_text())
        elif command.name == "reset":
            removed = await self.history.clear(message.channel_key)
            await outbox.send(f"Forgot this conversation ({removed} messages).")
        elif command.name == "characters":
            await outbox.send(await self._describe_characters())
        elif command.name == "stats":
            parts = [self.tracker.format_channel(message.channel_key)]
            if self.gpu is not None:
                parts.append(self.gpu.describe())
            queue_length = getattr(self.image_generator, "length", None)
            if queue_length is not None:
                parts.append(f"Image queue: {queue_length} request(s).")
            await outbox.send("\n\n".join(parts))
        elif command.name == "debug":
            on = command.args["state"] == "on"
            self._debug[message.channel_key] = on
            await outbox.send(f"Debug view {'on' if on else 'off'} for this channel.")
        elif command.name == "look":
            await self._look(message, outbox, clean_text(command.args.get("question") or ""))
        elif command.name == "sd":
            prompt = clean_text(command.args["prompt"])
            self._image_request(message, prompt, command.args)  # refused before anything is stored
            mode = prompt.lower() if prompt.lower() in IMAGE_MODES else None
            instruction = await self._mode_instruction(mode, message) if mode else None
            turn_id = await self.history.add(
                message.channel_key, "user", f"(asked for an image) {prompt}", message.author_name
            )
            turn = Turn(message.channel_key, instruction or prompt, turn_id)
            await self._image(message, outbox, turn, prompt=None if mode else prompt, args=command.args)

    async def _look(self, message: Inbound, outbox: Outbox, question: str) -> None:
        """`/look`: the last image drawn here goes to the vision character like an attachment.

        Images are kept out of the text models' context; this is the one way back to one.
        The vision character describes it with the question in mind and the mixture answers,
        exactly as for an image the user attached.
        """
        image = await self.history.latest_image(message.channel_key)
        if image is None:
            raise BadCommand(NOTHING_TO_LOOK_AT)
        attachment = Attachment(f"image-{image.turn_id}.png", "image/png", image.png)
        text = question or f"Look at the image you drew: {image.description}"
        looking = replace(message, text=text, attachments=(attachment,), command=None)
        await self._answer(looking, outbox)

    async def _mode_instruction(self, mode: str, message: Inbound) -> str:
        """What the prompt writer is asked to draw for `/sd you|me|scene|last`."""
        last = ""
        if mode == "last":
            recent = await self.history.recent(message.channel_key, limit=50)
            last = next((t.content for t in recent if t.role == "assistant"), "")
            if not last:
                raise BadCommand("I haven't said anything here yet that I could illustrate.")
        character = self.synthesizer
        return IMAGE_MODES[mode].format(name=character.name, persona=character.persona,
                                        user=message.author_name, last=last[:2000])

    async def _describe_characters(self) -> str:
        lines = []
        for c in self.characters:
            roles = ["member"] if c in self.members else []
            if c is self.synthesizer and len(self.members) > 1:
                roles.append("synthesizer")
            sees = await self.runner.can_see(c)
            flags = (" · vision" if sees else "") + ("" if c.enabled else " · disabled")
            lines.append(f"**{c.name}** ({', '.join(roles) or c.role}{flags}): {c.model} on {c.endpoint}")
        return "Characters:\n" + "\n".join(lines)

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        self.history.close()


def _with_files(text: str, files: PreparedAttachments) -> str:
    parts = [text] if text else []
    for name, content in files.texts:
        parts.append(f"[file {name}]\n```\n{content}\n```")
    for name, _ in files.images:
        parts.append(f"[image {name}]")
    return "\n\n".join(parts)


def _format_proposals(proposals: list[Proposal]) -> str:
    lines = ["🔍 proposals:"]
    for p in proposals:
        body = p.text.strip() if p.ok else f"(failed: {p.error or 'empty answer'})"  # type: ignore[union-attr]
        lines.append(f"**{p.character}** ({p.seconds:.1f} s): {body}")
    return "\n\n".join(lines)


async def _send_long(outbox: Outbox, text: str) -> None:
    for part in split_text(text, outbox.capabilities.max_message_length):
        await outbox.send(part)
