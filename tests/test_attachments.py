"""Attachments: images to the vision character, its description to the others, text inline."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterator

import pytest
from PIL import Image

from brain.brain import Brain
from brain.chat.attachments import display_name, prepare_attachments
from brain.config import AttachmentsConfig, CharacterConfig, EndpointConfig
from brain.history.store import HistoryStore
from brain.messages import Attachment, Inbound
from brain.models.client import ModelClient
from tests.fake_openai import FakeOpenAIServer, last_user
from tests.helpers import RecordingOutbox, close_brain

CONFIG = AttachmentsConfig()


def png(mode: str = "RGB", size: tuple[int, int] = (32, 24)) -> bytes:
    out = io.BytesIO()
    image = Image.new(mode, size)
    if mode == "P":
        image.putpalette([0, 0, 0, 255, 0, 0] * 128)
    image.save(out, "PNG")
    return out.getvalue()


def noise_png() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((200, 200), 64).convert("RGB").save(out, "PNG")
    return out.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny file that declares a 10-gigapixel image: must be refused before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def decoded(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA", "L"])
async def test_images_of_every_mode_become_rgb_png(mode: str) -> None:
    prepared = await prepare_attachments((Attachment("x.png", "image/png", png(mode)),), CONFIG)
    assert prepared.notes == []
    image = decoded(prepared.images[0][1])
    assert image.mode == "RGB" and image.size == (32, 24)


async def test_big_images_are_scaled_down() -> None:
    prepared = await prepare_attachments(
        (Attachment("big.png", "image/png", png(size=(3000, 1500))),),
        AttachmentsConfig(vision_max_side=512),
    )
    assert decoded(prepared.images[0][1]).size == (512, 256)


@pytest.mark.parametrize(
    ("attachment", "note"),
    [
        (
            Attachment("bomb.png", "image/png", bomb_png()),
            "I could not use bomb.png: it has far too many pixels; the limit is 40000000 pixels.",
        ),
        (
            Attachment("tall.png", "image/png", bomb_png(20_000, 5_000)),
            "I could not use tall.png: it is 20000x5000 pixels; the limit is 40000000 pixels.",
        ),
        (
            Attachment("broken.png", "image/png", noise_png()[:2000]),
            "I could not use broken.png: the image is damaged",
        ),
        (
            Attachment("fake.jpg", "image/jpeg", b"%PDF-1.7 not an image"),
            "I could not use fake.jpg: it is not an image I can read.",
        ),
        (
            Attachment("huge.png", "image/png", b"\0" * (CONFIG.max_image_bytes + 1)),
            "huge.png is too large (10240 KB; the limit is 10240 KB).",
        ),
        (
            Attachment("tool.zip", "application/zip", b"PK\3\4"),
            "I can't read tool.zip (application/zip): "
            "send images (PNG, JPEG, WebP, GIF) or text files.",
        ),
        (
            Attachment("x.txt", "text/plain", b"a\0b\0c"),
            "x.txt looks like a binary file, not text.",
        ),
    ],
)
async def test_bad_files_get_a_clear_note(attachment: Attachment, note: str) -> None:
    prepared = await prepare_attachments((attachment,), CONFIG)
    assert prepared.images == [] and prepared.texts == []
    assert prepared.notes[0].startswith(note)


async def test_text_files_are_cut_to_the_budget() -> None:
    long = ("line of notes\n" * 2000).encode()
    prepared = await prepare_attachments(
        (
            Attachment("notes.md", "text/markdown", b"# Title\nhello"),
            Attachment("log.txt", "", long),
        ),
        AttachmentsConfig(text_token_budget=100),
    )
    assert prepared.texts[0] == ("notes.md", "# Title\nhello")
    assert len(prepared.texts[1][1]) < len(long)
    assert prepared.notes == ["log.txt is long; I read only its beginning."]


def test_file_names_are_made_safe_to_show() -> None:
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("C:\\Users\\x\\evil\u202egnp.exe") == "evilgnp.exe"
    assert display_name("") == "file"


@pytest.fixture
def servers() -> Iterator[dict[str, FakeOpenAIServer]]:
    servers = {name: FakeOpenAIServer().start() for name in ("eye", "logic", "critic", "mom")}
    servers["eye"].behaviour.reply = "A small black rectangle on a plain background."
    for name in ("logic", "critic", "mom"):
        servers[name].behaviour.reply = f"{name}: it is a dark rectangle."
    yield servers
    for server in servers.values():
        server.stop()


def vision_brain(
    servers: dict[str, FakeOpenAIServer], history: HistoryStore, *, vision: bool
) -> Brain:
    clients = {
        n: ModelClient(n, EndpointConfig(base_url=s.base_url, context_window=8192))
        for n, s in servers.items()
    }
    characters = [
        CharacterConfig(name="eye", endpoint="eye", model="llava", vision=vision, enabled=vision),
        CharacterConfig(name="logic", endpoint="logic", model="fake"),
        CharacterConfig(name="critic", endpoint="critic", model="fake"),
        CharacterConfig(name="mom", endpoint="mom", model="fake", role="synthesizer"),
    ]
    return Brain(characters=characters, clients=clients, history=history)


async def test_vision_character_sees_the_image_and_the_others_read_its_description(
    servers: dict[str, FakeOpenAIServer], sqlite_url: str
) -> None:
    history = HistoryStore(sqlite_url)
    brain = vision_brain(servers, history, vision=True)
    outbox = RecordingOutbox()
    message = Inbound(
        "test",
        "c",
        "u",
        "ann",
        "What is this shape, and what colour?",
        attachments=(Attachment("shape.png", "image/png", png()),),
    )
    await brain.handle(message, outbox)
    assert outbox.errors == []
    seen = last_user(servers["eye"].requests[0].body)
    assert seen[0] == {"type": "text", "text": "What is this shape, and what colour?"}
    assert seen[1]["type"] == "image_url" and seen[1]["image_url"]["url"].startswith(
        "data:image/png"
    )
    for name in ("logic", "critic"):
        text = last_user(servers[name].requests[0].body)
        assert isinstance(text, str) and "data:image" not in text
        assert "[shape.png, as eye sees it: A small black rectangle on a plain background.]" in text
    stored = (await history.recent("test:c"))[1].content
    assert "as eye sees it: A small black rectangle" in stored
    await close_brain(brain)


async def test_without_a_vision_character_the_user_is_told(
    servers: dict[str, FakeOpenAIServer], sqlite_url: str
) -> None:
    brain = vision_brain(servers, HistoryStore(sqlite_url), vision=False)
    outbox = RecordingOutbox()
    message = Inbound(
        "test",
        "c",
        "u",
        "ann",
        "What is this?",
        attachments=(Attachment("shape.png", "image/png", png()),),
    )
    await brain.handle(message, outbox)
    assert (
        outbox.messages[0]
        == "I can't look at images (shape.png): no character with vision is configured."
    )
    assert servers["eye"].requests == []
    assert outbox.messages[-1] == "mom: it is a dark rectangle."
    await close_brain(brain)


async def test_text_attachment_reaches_every_member(
    servers: dict[str, FakeOpenAIServer], sqlite_url: str
) -> None:
    brain = vision_brain(servers, HistoryStore(sqlite_url), vision=False)
    message = Inbound(
        "test",
        "c",
        "u",
        "ann",
        "Summarise my notes please",
        attachments=(Attachment("notes.md", "text/markdown", b"- buy milk\n- call mom"),),
    )
    await brain.handle(message, RecordingOutbox())
    for name in ("logic", "critic"):
        text = last_user(servers[name].requests[0].body)
        assert "[file notes.md]\n```\n- buy milk\n- call mom\n```" in text
    assert "Advisors' answers" in last_user(servers["mom"].requests[0].body)
    await close_brain(brain)


async def test_only_unusable_files_get_notes_and_nothing_is_stored(
    servers: dict[str, FakeOpenAIServer], sqlite_url: str
) -> None:
    history = HistoryStore(sqlite_url)
    brain = vision_brain(servers, history, vision=False)
    outbox = RecordingOutbox()
    message = Inbound(
        "test", "c", "u", "ann", "", attachments=(Attachment("a.zip", "application/zip", b"PK"),)
    )
    await brain.handle(message, outbox)
    assert outbox.messages == [
        "I can't read a.zip (application/zip): send images (PNG, JPEG, WebP, GIF) or text files."
    ]
    assert await history.count("test:c") == 0
    await close_brain(brain)


async def test_without_a_vision_character_the_models_are_told_the_image_was_not_seen(
    servers: dict[str, FakeOpenAIServer], sqlite_url: str
) -> None:
    """Issue 36 defect 9: the text models got "[image shape.png]" as if it were there, and
    invented what it showed, after the user was told no one could see it. They are told it
    was not seen; a picture sent alone gets the note and no invented answer."""
    brain = vision_brain(servers, HistoryStore(sqlite_url), vision=False)
    picture = (Attachment("shape.png", "image/png", png()),)
    asked = RecordingOutbox()
    await brain.handle(
        Inbound("test", "c", "u", "ann", "What is this?", attachments=picture), asked
    )
    read = [
        str(m["content"])
        for server in servers.values()
        for r in server.requests
        for m in r.body.get("messages", [])
        if m["role"] == "user"
    ]
    assert read and all("[image shape.png]" not in text for text in read)
    unseen = "What is this?\n\n[image shape.png: not seen; no character here can look at images]"
    assert all(unseen in text for text in read)
    alone = RecordingOutbox()
    before = len(servers["mom"].requests)
    await brain.handle(Inbound("test", "c", "u", "ann", "", attachments=picture), alone)
    assert alone.messages == [
        "I can't look at images (shape.png): no character with vision is configured."
    ]
    assert len(servers["mom"].requests) == before  # nothing to answer: no model was asked
    await close_brain(brain)
