"""Character cards as the Tavern family of programs writes them (SillyTavern, Kobold Lite,
RisuAI, Agnai and the card sites): read from a PNG or APNG, a JSON file of any version, or a
CHARX archive; written as a V3 PNG with a V2 backfill.

The formats (the character card specs V1, V2 and V3):
- V1: a flat object (`name`, `description`, `personality`, `scenario`, `first_mes`,
  `mes_example`); in a PNG, base64 JSON in a `tEXt` chunk named `chara`.
- V2: `{"spec": "chara_card_v2", "spec_version": "2.0", "data": {...}}`, adding
  `creator_notes`, `system_prompt`, `post_history_instructions`, `alternate_greetings`,
  `character_book`, `tags`, `creator`, `character_version` and `extensions` (whose unknown keys
  must be kept).
- V3: `spec: "chara_card_v3"`; in a PNG the chunk `ccv3` (preferred where both are present;
  writers backfill `chara`); adds `assets`, `nickname`, `group_only_greetings` and more; CHARX
  is a zip of `card.json` and its `assets/`.

A card is kept as its `data` object, every field as read (unknown ones too), with the V2 and
V3 fields it lacks filled with their empty values: import → export → import gives the same
card. Pillow (already needed for images) reads and writes the PNG text chunks.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

V2, V3 = "chara_card_v2", "chara_card_v3"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CARD_BYTES = 20 * 1024 * 1024  # a card file (CHARX: what is read of it); larger: refused
# Every V2 field, and the V3 fields that are not optional, with their empty values.
EMPTY_FIELDS: dict[str, Any] = {
    "name": "",
    "description": "",
    "personality": "",
    "scenario": "",
    "first_mes": "",
    "mes_example": "",
    "creator_notes": "",
    "system_prompt": "",
    "post_history_instructions": "",
    "alternate_greetings": [],
    "tags": [],
    "creator": "",
    "character_version": "",
    "extensions": {},
    "group_only_greetings": [],
}


class CardError(Exception):
    """The file is not a character card mombot can read (the message says why)."""


@dataclass
class Card:
    """A character card: its `data` object (every field, unknown ones kept), and the avatar
    (PNG bytes) where the file had one."""

    data: dict[str, Any]
    avatar: bytes | None = None

    @property
    def name(self) -> str:
        return str(self.data.get("name") or "")

    def text(self, field: str) -> str:
        """A text field ("" where it is missing or not text)."""
        value = self.data.get(field)
        return value if isinstance(value, str) else ""

    def texts(self, field: str) -> list[str]:
        """A list-of-text field (the greetings, the tags)."""
        value = self.data.get(field)
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

    def as_v3(self) -> dict[str, Any]:
        return {"spec": V3, "spec_version": "3.0", "data": self.data}

    def as_v2(self) -> dict[str, Any]:
        """The V2 backfill V3 writers add for older readers (they ignore what they lack)."""
        return {"spec": V2, "spec_version": "2.0", "data": self.data}


def read_card(path: Path) -> Card:
    """The card in a PNG/APNG, JSON or CHARX file, or `CardError`."""
    try:
        if path.stat().st_size > MAX_CARD_BYTES:
            raise CardError(f"{path.name} is larger than {MAX_CARD_BYTES // 2**20} MB")
        raw = path.read_bytes()
    except OSError as exc:
        raise CardError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw.startswith(PNG_SIGNATURE):
        return _from_png(raw)
    if zipfile.is_zipfile(io.BytesIO(raw)):
        return _from_charx(raw)
    try:
        document = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        raise CardError(f"{path.name} is neither a PNG, a CHARX archive nor JSON") from None
    return Card(card_data(document))


def card_data(document: Any) -> dict[str, Any]:
    """The `data` of a card document of any version, its missing fields filled."""
    if not isinstance(document, dict):
        raise CardError("a character card is a JSON object")
    spec = document.get("spec")
    if spec in ("lorebook_v3",) or ("entries" in document and "name" not in document):
        raise CardError("this is a lorebook (world info), not a character card")
    if isinstance(spec, str) and spec.startswith("chara_card_v"):
        _check_version(spec)
        data = document.get("data")
        if not isinstance(data, dict):
            raise CardError(f"a {spec} card has no data object")
    elif isinstance(document.get("data"), dict) and "name" in document["data"]:
        data = document["data"]  # a V2-shaped card that does not say its spec
    elif "name" in document:
        data = document  # V1: the fields at the top
    else:
        raise CardError("no character card here: it has no name")
    data = copy.deepcopy(data)
    for field, empty in EMPTY_FIELDS.items():
        if field not in data or data[field] is None:
            data[field] = copy.deepcopy(empty)
    if not isinstance(data["extensions"], dict):
        data["extensions"] = {}
    if not str(data["name"]).strip():
        raise CardError("the card's character has no name")
    return data


def _check_version(spec: str) -> None:
    """V1 to V3 and later versions all read (a newer one keeps what it added, unread)."""
    number = spec.removeprefix("chara_card_v")
    if not number.isdigit() or int(number) < 2:
        raise CardError(f"unknown card spec {spec!r}")


def _from_png(raw: bytes) -> Card:
    from PIL import Image, PngImagePlugin, UnidentifiedImageError

    # Pillow's guard against huge text chunks (1 MB) is below what cards with embedded
    # lorebooks and assets hold; the file's size is bounded above (MAX_CARD_BYTES).
    PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, MAX_CARD_BYTES)
    PngImagePlugin.MAX_TEXT_MEMORY = max(PngImagePlugin.MAX_TEXT_MEMORY, MAX_CARD_BYTES)
    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.load()  # text chunks after the image data are read too
            chunks = {key.lower(): value for key, value in getattr(image, "text", {}).items()}
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise CardError(f"the PNG cannot be read ({type(exc).__name__})") from None
    encoded = chunks.get("ccv3") or chunks.get("chara")  # V3 first: writers backfill chara
    if not encoded:
        raise CardError("this PNG holds no character card (no ccv3 or chara chunk)")
    try:
        document = json.loads(base64.b64decode(encoded).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CardError("the PNG's card chunk is not base64 JSON") from None
    return Card(card_data(document), avatar=raw)


def _from_charx(raw: bytes) -> Card:
    """A CHARX archive: `card.json`, and the main icon among its assets as the avatar."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = set(archive.namelist())
            if "card.json" not in names:
                raise CardError("this archive has no card.json: not a CHARX card")
            data = card_data(json.loads(_member(archive, "card.json").decode("utf-8")))
            icon = _icon_path(data)
            avatar = _member(archive, icon) if icon in names else None
    except (zipfile.BadZipFile, UnicodeDecodeError, ValueError, KeyError) as exc:
        raise CardError(f"the CHARX archive cannot be read ({type(exc).__name__})") from None
    return Card(data, avatar if avatar and avatar.startswith(PNG_SIGNATURE) else None)


def _member(archive: zipfile.ZipFile, name: str) -> bytes:
    """One file of the archive, refused when it would unpack past the cap (a zip bomb)."""
    if archive.getinfo(name).file_size > MAX_CARD_BYTES:
        raise CardError(f"{name} in the archive is larger than {MAX_CARD_BYTES // 2**20} MB")
    with archive.open(name) as member:
        data = member.read(MAX_CARD_BYTES + 1)  # the header may lie: read no more than this
    if len(data) > MAX_CARD_BYTES:
        raise CardError(f"{name} in the archive is larger than {MAX_CARD_BYTES // 2**20} MB")
    return data


def _icon_path(data: dict[str, Any]) -> str:
    """The archive path of the card's main icon (`embeded://…`, as the spec spells it)."""
    assets = data.get("assets")
    icons = [
        a
        for a in (assets if isinstance(assets, list) else [])
        if isinstance(a, dict) and a.get("type") == "icon" and isinstance(a.get("uri"), str)
    ]
    icons.sort(key=lambda a: a.get("name") != "main")
    for icon in icons:
        uri = icon["uri"]
        for prefix in ("embeded://", "embedded://"):
            if uri.startswith(prefix):
                return str(uri.removeprefix(prefix))
    return ""


def write_png(card: Card, path: Path, avatar: bytes | None = None) -> None:
    """A V3 card PNG (`ccv3`, with the `chara` backfill) on the avatar, or on a plain square
    where there is none."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("chara", _encoded(card.as_v2()))
    info.add_text("ccv3", _encoded(card.as_v3()))
    picture = avatar or card.avatar
    image = Image.open(io.BytesIO(picture)) if picture else Image.new("RGB", (400, 600), "gray")
    with image:
        image.save(path, format="PNG", pnginfo=info)


def _encoded(document: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(document, ensure_ascii=False).encode()).decode("ascii")
