"""A Matrix world for tests: people in real matrix-nio clients, and the bot as `mombot run`
runs it, on the real Synapse of `tests/synapse.py` (the `synapse` fixture)."""

from __future__ import annotations

import asyncio
import io
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nio
from PIL import Image

from adapters.config import MatrixConfig
from adapters.matrix import MatrixAdapter
from brain.brain import Brain
from brain.history.store import StoredTurn
from tests.synapse import Synapse

_ids = itertools.count()


def new_id() -> int:
    """A number for a fresh user name: every test registers its own users."""
    return next(_ids)


class Human:
    """A person in a Matrix client (matrix-nio, with E2EE), who can wait for the bot."""

    def __init__(self, synapse: Synapse, folder: Path) -> None:
        name = f"human{next(_ids)}"
        self.user_id = synapse.register(name)
        store = folder / name
        store.mkdir(parents=True)
        self.client = nio.AsyncClient(
            synapse.url,
            self.user_id,
            store_path=str(store),
            config=nio.AsyncClientConfig(encryption_enabled=True),
        )
        self.events: list[tuple[str, nio.Event]] = []

    async def login(self) -> Human:
        await self.client.login("password")
        await self.sync()
        return self

    async def sync(self) -> None:
        response = await self.client.sync(timeout=300)
        assert isinstance(response, nio.SyncResponse), response
        for room_id, room in response.rooms.join.items():
            self.events += [(room_id, e) for e in room.timeline.events]
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        if self.client.should_query_keys:
            await self.client.keys_query()

    async def wait_for(
        self, predicate: Callable[[str, nio.Event], bool], timeout: float = 90
    ) -> nio.Event:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for room_id, event in self.events[seen:]:
                if predicate(room_id, event):
                    return event
            seen = len(self.events)
            await self.sync()
        raise AssertionError(f"timed out; saw {[type(e).__name__ for _, e in self.events]}")

    async def room_with(
        self,
        bot_id: str,
        *,
        encrypted: bool = False,
        others: list[str] = (),
        direct: bool | None = None,
    ) -> str:
        """A room with the bot (and others); a direct chat, as clients make one, when alone."""
        initial = (
            [
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ]
            if encrypted
            else []
        )
        response = await self.client.room_create(
            invite=[bot_id, *others],
            initial_state=initial,
            is_direct=not others if direct is None else direct,
        )
        assert isinstance(response, nio.RoomCreateResponse), response
        return response.room_id

    async def say(self, room_id: str, text: str, **extra: Any) -> str:
        return await self.send(room_id, {"msgtype": "m.text", "body": text, **extra})

    async def send(
        self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message"
    ) -> str:
        response = await self.client.room_send(
            room_id, event_type, content, ignore_unverified_devices=True
        )
        assert isinstance(response, nio.RoomSendResponse), response
        return response.event_id

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        """An emoji reaction on an event, as clients send one (an m.annotation)."""
        relation = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
        return await self.send(room_id, {"m.relates_to": relation}, "m.reaction")

    async def upload(
        self,
        data: bytes,
        filename: str,
        *,
        encrypted: bool = False,
        content_type: str = "image/png",
    ) -> dict[str, Any]:
        """The content fields pointing at an uploaded file (`file` with its keys when encrypted)."""
        upload, keys = await self.client.upload(
            io.BytesIO(data),
            content_type=content_type,
            filename=filename,
            filesize=len(data),
            encrypt=encrypted,
        )
        assert isinstance(upload, nio.UploadResponse), upload
        if encrypted:
            return {"file": {**keys, "url": upload.content_uri}}
        return {"url": upload.content_uri}

    async def send_image(
        self, room_id: str, name: str, where: dict[str, Any], info: dict[str, Any] | None = None
    ) -> str:
        """An m.image message; `info` is optional in the spec and left out when None."""
        content = {"msgtype": "m.image", "body": name, **where}
        return await self.send(room_id, content if info is None else {**content, "info": info})

    async def close(self) -> None:
        await self.client.close()


def joined(bot_id: str) -> Callable[[str, nio.Event], bool]:
    return lambda _, e: (
        isinstance(e, nio.RoomMemberEvent) and e.state_key == bot_id and e.membership == "join"
    )


def reply_to(event_id: str, bot_id: str) -> Callable[[str, nio.Event], bool]:
    def match(_: str, e: nio.Event) -> bool:
        relates = e.source.get("content", {}).get("m.relates_to", {})
        return (
            e.sender == bot_id
            and isinstance(e, nio.RoomMessageText)
            and relates.get("m.in_reply_to", {}).get("event_id") == event_id
        )

    return match


async def stored_turns(brain: Brain, key: str, count: int) -> list[StoredTurn]:
    """The channel's turns, oldest first, once `count` are stored (or after 10 s).

    A reply is stored right after its last edit is sent, a moment after the human sees it.
    """
    for _ in range(100):
        turns = list(reversed(await brain.history.recent(key)))
        if len(turns) >= count:
            break
        await asyncio.sleep(0.1)
    return turns


class Bot:
    """The adapter running in a task, as `mombot run` runs it."""

    def __init__(
        self, synapse: Synapse, brain: Brain, folder: Path, user_id: str, **config: Any
    ) -> None:
        self.config = MatrixConfig(enabled=True, homeserver=synapse.url, user_id=user_id, **config)
        self.adapter = MatrixAdapter(brain, self.config, data_dir=folder, password="password")
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Bot:
        self.task = asyncio.create_task(self.adapter.run())
        ready = asyncio.create_task(self.adapter.ready.wait())
        done, _ = await asyncio.wait(
            {self.task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED
        )
        assert ready in done, self.task.exception() if self.task.done() else "bot did not get ready"
        return self

    @classmethod
    async def with_human(
        cls, synapse: Synapse, brain: Brain, folder: Path, **config: Any
    ) -> tuple[Human, Bot]:
        """A fresh bot account running, and a fresh person logged in to talk to it."""
        bot_id = synapse.register(f"mombot{new_id()}")
        human = await Human(synapse, folder / "humans").login()
        return human, await cls(synapse, brain, folder / "bot", bot_id, **config).start()

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.adapter.close()


def png(size: tuple[int, int] = (48, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(out, "PNG")
    return out.getvalue()
