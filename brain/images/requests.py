"""Image requests: the generator interface, request validation, and the prompt writer.

The brain only knows `ImageGenerator`; diffusers and remote backends implement it
elsewhere. A large character turns a chat message (and recent history) into a
Stable Diffusion prompt.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from brain.config import CharacterConfig, ImagesConfig, ImageStyle
from brain.errors import BadCommand

if TYPE_CHECKING:  # the generators import this module without the chat machinery
    from brain.characters.runner import CharacterRunner, Turn
    from brain.outbox import Outbox

ProgressFn = Callable[[str], Awaitable[None]]

PROMPT_WRITER_INSTRUCTION = (
    "You write prompts for the Stable Diffusion image generator. From the user's request "
    "and the conversation, write ONE prompt: a comma-separated list of the subject, setting, "
    "style, lighting and quality tags. No explanations, no quotes, at most 60 words."
)
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    steps: int = 25
    guidance: float = 7.5
    seed: int = 0
    user_id: str = ""
    channel: str = ""
    lora: str = ""  # from the drawing character's style; "" for none
    lora_scale: float = 1.0


@dataclass(frozen=True)
class GeneratedImage:
    png: bytes
    width: int
    height: int
    seed: int
    prompt: str


class ImageGenerator(Protocol):
    """Anything that turns an `ImageRequest` into a PNG, reporting progress as it goes."""

    @property
    def length(self) -> int:
        """Requests waiting or rendering (for /stats and metrics)."""
        ...

    async def generate(self, request: ImageRequest, progress: ProgressFn) -> GeneratedImage: ...


class CoolDown(Protocol):
    """The GPU monitor as the rest sees it (see brain.imaging.gpu)."""

    async def cool_down(self, report: ProgressFn) -> None:
        """Wait while a GPU is too hot, saying so through `report`."""
        ...

    def describe(self) -> str:
        """One line per GPU (a blocking NVML read: call it off the event loop)."""
        ...


async def cool_down_in_chat(gpu: CoolDown | None, outbox: Outbox) -> None:
    """Wait for a hot GPU before a model job, telling the user in one edited message."""
    if gpu is None:
        return
    status: list[Any] = []

    async def report(text: str) -> None:
        if status:
            await outbox.edit(status[0], text)
        else:
            status.append(await outbox.send(text))

    await gpu.cool_down(report)


def parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d{2,5})\s*[xX×]\s*(\d{2,5})\s*", text)
    if not match:
        raise BadCommand(f"`size` must look like 512x512, not `{text[:40]}`.")
    return int(match.group(1)), int(match.group(2))


def build_request(
    config: ImagesConfig, *, prompt: str, args: dict[str, Any], user_id: str, channel: str
) -> ImageRequest:
    """Check `/sd` arguments against the configured limits, with a message for each problem."""
    prompt = prompt.strip()
    if not prompt:
        raise BadCommand("Tell me what to draw, e.g. `/sd a red fox in the snow`.")
    if len(prompt) > config.max_prompt_chars:
        raise BadCommand(f"That prompt is too long: at most {config.max_prompt_chars} characters.")
    steps = args.get("steps") or config.default_steps
    if not 1 <= steps <= config.max_steps:
        raise BadCommand(f"`steps` must be between 1 and {config.max_steps}.")
    width, height = parse_size(args.get("size") or config.default_size)
    if width % 8 or height % 8:
        raise BadCommand("Width and height must be multiples of 8, e.g. 512x512 or 768x512.")
    if width < 64 or height < 64 or width * height > config.max_pixels:
        raise BadCommand(
            f"`size` {width}x{height} is outside the limits: at least 64x64 and at most "
            f"{config.max_pixels} pixels in all."
        )
    seed = args.get("seed")
    if seed is None:
        seed = random.randint(0, MAX_SEED)
    elif not 0 <= seed <= MAX_SEED:
        raise BadCommand(f"`seed` must be between 0 and {MAX_SEED}.")
    return ImageRequest(
        prompt=prompt,
        negative_prompt=(args.get("negative") or "").strip()[: config.max_prompt_chars],
        width=width,
        height=height,
        steps=steps,
        guidance=config.guidance,
        seed=seed,
        user_id=user_id,
        channel=channel,
    )


IMAGE_MODES = {
    "you": "Portray yourself, {name}, as this persona describes you: {persona}",
    "me": "Portray {user} as the conversation describes them (looks, clothes, mood, setting); "
    "where it says nothing, choose something fitting.",
    "scene": "Illustrate the current scene of this conversation: where it takes place, who is "
    "there and what is happening now.",
    "last": "Illustrate your last reply in this conversation: {last}",
}
"""`/sd you|me|scene|last`: what the prompt writer is asked to draw from the stored history."""


def styled(request: ImageRequest, style: ImageStyle, max_chars: int) -> ImageRequest:
    """The request with a character's style: tags around the prompt, its negative, its LoRA."""
    prompt = ", ".join(
        part for part in (style.prefix, request.prompt, style.suffix) if part.strip()
    )
    negative = ", ".join(part for part in (request.negative_prompt, style.negative) if part.strip())
    return replace(
        request,
        prompt=prompt[:max_chars],
        negative_prompt=negative[:max_chars],
        lora=style.lora,
        lora_scale=style.lora_scale,
    )


class ImagePromptWriter:
    """A large character writes the Stable Diffusion prompt for a chat request."""

    def __init__(self, runner: CharacterRunner, character: CharacterConfig, max_chars: int) -> None:
        self._runner = runner
        self._character = character
        self._max_chars = max_chars

    async def write(self, turn: Turn) -> str:
        system = f"{self._character.persona}\n\n{PROMPT_WRITER_INSTRUCTION}"
        # The images drawn here before are part of what the writer reads (a consistent look).
        turn = replace(turn, history_images=True)
        text = await self._runner.answer(self._character, turn, system=system, stage="image prompt")
        return clean_prompt(text, self._max_chars) or turn.text[: self._max_chars]


def clean_prompt(text: str, max_chars: int) -> str:
    """The first non-empty line, without labels or quotes."""
    for line in text.splitlines():
        line = re.sub(r"^\s*(prompt|stable diffusion prompt)\s*:\s*", "", line, flags=re.IGNORECASE)
        line = line.strip().strip("\"“”'`").strip()
        if line:
            return line[:max_chars]
    return ""
