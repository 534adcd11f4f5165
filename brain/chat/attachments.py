"""Turning attached files into model input: images for vision characters, text files inline.

Images are checked before decoding (size, format, pixel count: no decompression
bombs), flattened to RGB and scaled down, then passed on as data URLs. Text files are
decoded and cut to a token budget. Anything else is refused with a clear note.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING

from brain.config import AttachmentsConfig
from brain.messages import Attachment

if TYPE_CHECKING:  # Pillow loads when the first image arrives
    import PIL.Image
from brain.models.tokens import estimate_tokens

log = logging.getLogger(__name__)

IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "GIF"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
TEXT_SUFFIXES = {
    ".txt", ".md", ".markdown", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml",
    ".toml", ".ini", ".cfg", ".log", ".xml", ".html", ".css", ".py", ".js", ".ts", ".java",
    ".c", ".h", ".cpp", ".hpp", ".cs", ".go", ".rs", ".rb", ".php", ".sh", ".sql", ".kt",
    ".swift", ".lua", ".r", ".tex",
}  # fmt: skip


@dataclass
class PreparedAttachments:
    images: list[tuple[str, str]] = field(default_factory=list)  # (file name, data URL)
    texts: list[tuple[str, str]] = field(default_factory=list)  # (file name, text)
    notes: list[str] = field(default_factory=list)  # what was refused, in words for the user


def readable_kind(filename: str, content_type: str) -> str | None:
    """The kind of a file the bot can use ("image" or "text", by type or name), else None.

    Adapters ask before downloading, so a file that would only be refused is never fetched.
    """
    kind = content_type.split(";")[0].strip().lower()
    suffix = PurePath(display_name(filename)).suffix.lower()
    if kind.startswith("image/") or suffix in IMAGE_SUFFIXES:
        return "image"
    if kind.startswith("text/") or suffix in TEXT_SUFFIXES or kind == "application/json":
        return "text"
    return None


def cannot_read(filename: str, content_type: str) -> str:
    """The note for a file of a kind the bot does not read (audio, video, archives…)."""
    kind = content_type.split(";")[0].strip().lower()
    return (
        f"I can't read {display_name(filename)} ({kind or 'unknown type'}): send images "
        "(PNG, JPEG, WebP, GIF) or text files."
    )


def display_name(filename: str) -> str:
    """A file name safe to show: no folders, no control characters, bounded length."""
    name = PurePath(filename.replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:80] or "file"


async def prepare_attachments(
    attachments: tuple[Attachment, ...], config: AttachmentsConfig
) -> PreparedAttachments:
    prepared = PreparedAttachments()
    budget = config.text_token_budget
    for attachment in attachments:
        name = display_name(attachment.filename)
        kind = readable_kind(attachment.filename, attachment.content_type)
        if kind == "image":
            if attachment.size > config.max_image_bytes:
                prepared.notes.append(
                    f"{name} is too large ({attachment.size // 1024} KB; the limit is "
                    f"{config.max_image_bytes // 1024} KB)."
                )
                continue
            try:
                url = await asyncio.to_thread(_image_to_data_url, attachment.data, config)
            except ValueError as exc:
                prepared.notes.append(f"I could not use {name}: {exc}")
                continue
            prepared.images.append((name, url))
        elif kind == "text":
            if attachment.size > config.max_text_bytes:
                prepared.notes.append(
                    f"{name} is too large to read ({attachment.size // 1024} KB)."
                )
                continue
            text = attachment.data.decode("utf-8", errors="replace")
            if "\x00" in text:
                prepared.notes.append(f"{name} looks like a binary file, not text.")
                continue
            if budget <= 0:
                prepared.notes.append(f"I skipped {name}: the attached text is already too long.")
                continue
            text, cut = _cut_to_tokens(text, budget)
            budget -= estimate_tokens(text)
            prepared.texts.append((name, text))
            if cut:
                prepared.notes.append(f"{name} is long; I read only its beginning.")
        else:
            prepared.notes.append(cannot_read(attachment.filename, attachment.content_type))
    return prepared


def _cut_to_tokens(text: str, budget: int) -> tuple[str, bool]:
    if estimate_tokens(text) <= budget:
        return text, False
    keep = budget * 3  # estimate_tokens counts 3 bytes a token; characters are at least 1 byte
    return text[:keep], True


def _image_to_data_url(data: bytes, config: AttachmentsConfig) -> str:
    """Validate and normalise an image (runs in a worker thread: Pillow blocks)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # we check the pixel count ourselves, just below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads only the header so far
        with image:
            if image.format not in IMAGE_FORMATS:
                raise ValueError(
                    f"{image.format} images are not supported; send PNG, JPEG, WebP or GIF."
                )
            width, height = image.size
            if width * height > config.max_image_pixels:
                raise ValueError(
                    f"it is {width}x{height} pixels; the limit is {config.max_image_pixels} pixels."
                )
            image.seek(0)
            image.load()
            rgb = _flatten(image)
    except UnidentifiedImageError:
        raise ValueError("it is not an image I can read.") from None
    except Image.DecompressionBombError:  # Pillow's own guard, raised while reading the header
        raise ValueError(
            f"it has far too many pixels; the limit is {config.max_image_pixels} pixels."
        ) from None
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"the image is damaged ({type(exc).__name__}).") from None
    rgb.thumbnail((config.vision_max_side, config.vision_max_side))
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _flatten(image: PIL.Image.Image) -> PIL.Image.Image:
    """RGB on white: transparent and palette images would otherwise break re-encoding."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
