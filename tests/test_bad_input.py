"""A corpus of bad input (tests/data/bad_inputs.jsonl): each gets a clear reply, and the bot
keeps serving.

Every case runs through the whole brain as a non-admin user in its own channel, with the
echo model, the deep-thinking extension and an image generator. Afterwards the same
channel must still get a normal answer, and memory must have stayed bounded.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brain.brain import Brain
from brain.config import CharacterConfig, EndpointConfig
from brain.history.store import HistoryStore
from brain.messages import Attachment, Inbound
from brain.models.client import ModelClient
from tests.fake_openai import FakeOpenAIServer
from tests.helpers import RecordingGenerator, RecordingOutbox, close_brain
from tests.load import echo_server
from tests.test_attachments import bomb_png, noise_png

CORPUS = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "bad_inputs.jsonl").read_text().splitlines()
    if line
]
SECRET_KEY = "sk-corpus-secret-0123456789"
MEMORY_LIMIT = 64 * 1024 * 1024  # the largest input is 11 MB


@pytest.fixture(scope="module")
def echo() -> Iterator[FakeOpenAIServer]:
    server = echo_server()
    yield server
    server.stop()


def brain_for(server: FakeOpenAIServer, url: str) -> Brain:
    endpoint = EndpointConfig(base_url=server.base_url, context_window=8192, timeout_s=30)
    characters = [
        CharacterConfig(
            name="mom", endpoint="fake", model="fake", persona="You are mom.", max_tokens=64
        ),
        CharacterConfig(
            name="eyes",
            endpoint="fake",
            model="fake",
            persona="You see.",
            vision=True,
            max_tokens=64,
        ),
    ]
    return Brain(
        characters=characters,
        clients={"fake": ModelClient("fake", endpoint, api_key=SECRET_KEY)},
        history=HistoryStore(url),
        image_generator=RecordingGenerator(),
        extensions=["deep_thinking"],
    )


def file_data(spec: str) -> bytes:
    kind, _, arg = spec.partition(":")
    return {
        "noise_png": lambda: noise_png(),
        "bomb_png": lambda: bomb_png(),
        "corrupt_png": lambda: noise_png()[:40] + b"\x00garbage" * 50,
        "truncated_png": lambda: noise_png()[:2000],
        "text": lambda: arg.encode(),
        "bytes": lambda: bytes.fromhex(arg),
        "zeros": lambda: b"\0" * int(arg or 0),
    }[kind]()


def inbound(case: dict[str, Any]) -> Inbound:
    text = case["text"]
    if "repeat" in case:
        piece, times = case["repeat"]
        text += piece * times
    files = tuple(
        Attachment(
            a.get("name") or bytes.fromhex(a["name_hex"]).decode("utf-8", "surrogateescape"),
            a["mime"],
            file_data(a["data"]),
        )
        for a in case.get("attachments", ())
    )
    return Inbound(
        platform="bad",
        channel_id=case["id"],
        author_id="mallory",
        author_name="mallory",
        text=text,
        attachments=files,
        is_admin=False,
    )


def test_the_corpus_is_big_enough_and_has_unique_ids() -> None:
    ids = [case["id"] for case in CORPUS]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)
    assert all("expect" in case for case in CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
async def test_bad_input_gets_a_clear_reply_and_the_bot_keeps_serving(
    case: dict[str, Any], echo: FakeOpenAIServer, sqlite_url: str
) -> None:
    brain = brain_for(echo, sqlite_url)
    outbox = RecordingOutbox()
    tracemalloc.start()
    await brain.handle(inbound(case), outbox)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    shown = "\n".join(outbox.errors + outbox.messages)
    expect = case["expect"]
    assert expect["says"] in shown, shown[:500]
    assert bool(outbox.errors) == (expect["outcome"] == "error"), shown[:500]
    assert SECRET_KEY not in shown
    assert peak < MEMORY_LIMIT
    stored = await brain.history.count(f"bad:{case['id']}")
    assert stored == expect["stored"]

    after = RecordingOutbox()
    await brain.handle(
        Inbound(
            platform="bad",
            channel_id=case["id"],
            author_id="ann",
            author_name="ann",
            text="are you still there?",
        ),
        after,
    )
    assert after.errors == [] and "echo: are you still there?" in after.text
    await close_brain(brain)
