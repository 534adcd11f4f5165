"""Character cards (issue 34 item 1): every version and container read, V3 PNGs written with
the V2 backfill, and import → export → import giving the same card, unknown fields kept.

The cards here are built the way the programs that write them do (base64 JSON in PNG text
chunks through Pillow, a zip for CHARX), from the specs' field lists."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from brain.characters.cards import CardError, read_card, write_png

V1 = {
    "name": "Seraphina",
    "description": "{{char}} is a guardian of the forest.",
    "personality": "kind, protective",
    "scenario": "{{user}} wakes up in {{char}}'s glade.",
    "first_mes": "*Seraphina smiles.* You're awake, {{user}}.",
    "mes_example": "<START>\n{{user}}: Who are you?\n{{char}}: I keep this forest.",
}
V2_DATA = {
    **V1,
    "creator_notes": "Best with a warm model.",
    "system_prompt": "{{original}} Stay in character.",
    "post_history_instructions": "Answer as {{char}} only.",
    "alternate_greetings": ["*She waves.* Hello again."],
    "character_book": {"entries": [{"keys": ["glade"], "content": "A quiet clearing."}]},
    "tags": ["fantasy"],
    "creator": "someone",
    "character_version": "1.2",
    "extensions": {"depth_prompt": {"prompt": "Be gentle.", "depth": 4}, "x_unknown": [1, 2]},
}


def png(chunks: dict[str, Any], size: tuple[int, int] = (40, 60)) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, document in chunks.items():
        info.add_text(key, base64.b64encode(json.dumps(document).encode()).decode())
    out = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def test_a_v1_json_card_reads_with_every_later_field_filled(tmp_path: Path) -> None:
    card = read_card(write(tmp_path, "v1.json", json.dumps(V1).encode()))
    assert card.name == "Seraphina" and card.text("scenario") == V1["scenario"]
    assert card.texts("alternate_greetings") == [] and card.data["extensions"] == {}
    assert card.avatar is None


def test_a_v2_png_card_reads_from_its_chara_chunk_with_its_picture(tmp_path: Path) -> None:
    picture = png({"chara": {"spec": "chara_card_v2", "spec_version": "2.0", "data": V2_DATA}})
    card = read_card(write(tmp_path, "seraphina.png", picture))
    assert card.data["extensions"]["x_unknown"] == [1, 2]  # unknown keys are kept
    assert card.text("post_history_instructions") == "Answer as {{char}} only."
    assert card.avatar == picture


def test_a_v3_png_prefers_its_ccv3_chunk_over_the_backfill(tmp_path: Path) -> None:
    v3 = {**V2_DATA, "nickname": "Sera", "group_only_greetings": ["Hi all."]}
    picture = png(
        {
            "chara": {"spec": "chara_card_v2", "spec_version": "2.0", "data": V1},
            "ccv3": {"spec": "chara_card_v3", "spec_version": "3.0", "data": v3},
        }
    )
    card = read_card(write(tmp_path, "v3.png", picture))
    assert card.text("nickname") == "Sera" and card.texts("group_only_greetings") == ["Hi all."]


def test_a_newer_spec_version_still_imports(tmp_path: Path) -> None:
    newer = {"spec": "chara_card_v4", "spec_version": "4.1", "data": {**V1, "new_field": True}}
    card = read_card(write(tmp_path, "v4.json", json.dumps(newer).encode()))
    assert card.name == "Seraphina" and card.data["new_field"] is True


def test_an_apng_card_reads_like_a_png(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (30, 30), colour) for colour in ("red", "blue")]
    info = PngImagePlugin.PngInfo()
    document = {"spec": "chara_card_v2", "spec_version": "2.0", "data": V2_DATA}
    info.add_text("chara", base64.b64encode(json.dumps(document).encode()).decode())
    out = io.BytesIO()
    frames[0].save(out, format="PNG", save_all=True, append_images=frames[1:], pnginfo=info)
    assert b"acTL" in out.getvalue()  # animated
    assert read_card(write(tmp_path, "moving.png", out.getvalue())).name == "Seraphina"


def test_a_charx_archive_reads_with_its_main_icon(tmp_path: Path) -> None:
    icon = png({})
    data = {
        **V2_DATA,
        "assets": [
            {"type": "icon", "uri": "embeded://assets/icon/images/other.png", "name": "alt"},
            {"type": "icon", "uri": "embeded://assets/icon/images/main.png", "name": "main"},
        ],
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("card.json", json.dumps({"spec": "chara_card_v3", "data": data}))
        archive.writestr("assets/icon/images/main.png", icon)
    card = read_card(write(tmp_path, "seraphina.charx", out.getvalue()))
    assert card.name == "Seraphina" and card.avatar == icon


def test_export_then_import_gives_the_same_card_unknown_fields_included(tmp_path: Path) -> None:
    original = read_card(
        write(tmp_path, "in.png", png({"chara": {"spec": "chara_card_v2", "data": V2_DATA}}))
    )
    out = tmp_path / "out.png"
    write_png(original, out)
    with Image.open(out) as image:
        image.load()
        chunks = dict(image.text)  # type: ignore[attr-defined]
    assert set(chunks) == {"chara", "ccv3"}  # V3 with its V2 backfill
    assert json.loads(base64.b64decode(chunks["ccv3"]))["spec"] == "chara_card_v3"
    again = read_card(out)
    assert again.data == original.data
    write_png(again, out)
    assert read_card(out).data == original.data


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"just text", "neither a PNG"),
        (json.dumps({"entries": {"0": {"key": ["a"]}}}).encode(), "lorebook"),
        (png({}), "no ccv3 or chara"),
        (json.dumps({"spec": "chara_card_v2", "data": {"name": ""}}).encode(), "no name"),
    ],
)
def test_what_is_not_a_card_says_why(tmp_path: Path, content: bytes, why: str) -> None:
    with pytest.raises(CardError, match=why):
        read_card(write(tmp_path, "odd.bin", content))


def test_bad_cards_each_get_one_clear_line(tmp_path: Path) -> None:
    """Issue 34's bad input: each refused with what is wrong, nothing half-read."""
    whole = png({"chara": {"spec": "chara_card_v2", "data": V2_DATA}})
    cases = {
        "cut.png": (whole[: len(whole) // 2], "cannot be read|no ccv3 or chara"),
        "base64.png": (png_chunk(b"chara", b"not base64 !!!"), "not base64 JSON"),
        "json.png": (png_chunk(b"chara", base64.b64encode(b"{oops")), "not base64 JSON"),
    }
    for name, (content, why) in cases.items():
        with pytest.raises(CardError, match=why):
            read_card(write(tmp_path, name, content))
    huge = tmp_path / "huge.png"
    with huge.open("wb") as out:  # 50 MB (sparse): refused before it is read
        out.truncate(50 * 2**20)
    with pytest.raises(CardError, match="larger than 20 MB"):
        read_card(huge)


def png_chunk(keyword: bytes, text: bytes) -> bytes:
    """A PNG whose text chunk holds `text` as it is (Pillow would not write a broken one)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"tEXt", keyword + b"\x00" + text)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


def test_a_field_of_the_wrong_type_reads_as_empty_and_html_stays_text(tmp_path: Path) -> None:
    odd = {
        **V1,
        "personality": 5,
        "alternate_greetings": "not a list",
        "scenario": "<script>x</script>",
    }
    card = read_card(write(tmp_path, "odd.json", json.dumps(odd).encode()))
    assert card.text("personality") == "" and card.texts("alternate_greetings") == []
    assert card.text("scenario") == "<script>x</script>"  # prompts are text; pages escape it


def test_a_charx_zip_bomb_and_an_icon_that_is_no_image(tmp_path: Path) -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("card.json", b" " * (30 * 2**20))  # 30 MB of spaces: a few KB zipped
    assert len(bomb.getvalue()) < 2**20
    with pytest.raises(CardError, match="larger than 20 MB"):
        read_card(write(tmp_path, "bomb.charx", bomb.getvalue()))
    fake_icon = io.BytesIO()
    data = {**V1, "assets": [{"type": "icon", "uri": "embeded://assets/icon.png", "name": "main"}]}
    with zipfile.ZipFile(fake_icon, "w") as archive:
        archive.writestr("card.json", json.dumps({"spec": "chara_card_v3", "data": data}))
        archive.writestr("assets/icon.png", b"<html>not a picture</html>")
    card = read_card(write(tmp_path, "icon.charx", fake_icon.getvalue()))
    assert card.name == "Seraphina" and card.avatar is None


def test_a_v1_png_card_reads_from_its_chara_chunk(tmp_path: Path) -> None:
    card = read_card(write(tmp_path, "v1.png", png({"chara": V1})))
    assert card.name == "Seraphina" and card.text("mes_example").startswith("<START>")


def test_macros_are_replaced_once_and_fields_html_reaches_pages_inert() -> None:
    """A name that holds a macro is not expanded again (no recursion), and a greeting's
    script is sanitized where the web page and Matrix render it."""
    from adapters.matrix_outbox import text_content
    from adapters.web_outbox import html
    from brain.characters.card_prompt import card_greetings, card_persona, speaking_to
    from brain.characters.cards import Card, card_data

    card = Card(
        card_data(
            {
                "name": "{{char}} the Second",
                "description": "{{char}} rules; {{user}} visits.",
                "first_mes": "<script>alert(1)</script><b>Hi</b> {{user}}",
            }
        )
    )
    persona = card_persona(card, "Be {{char}}.")
    assert "{{char}} the Second rules" in persona and persona.count("{{char}}") == 2
    (greeting,) = card_greetings(card)
    shown = speaking_to(greeting, "{{user}}")  # a user named like a macro: still one pass
    assert shown.endswith("Hi</b> {{user}}")
    for rendered in (html(shown), text_content(shown)["formatted_body"]):
        assert "<script" not in rendered  # escaped to text (or dropped), never a script
