"""Which Matrix rooms are direct chats: answered without a mention, the other person their admin.

The rule, in order:
1. A room in the bot account's `m.direct` account data is direct: that is the room's DM
   status as every client of the account sees it. The bot adds a room there itself when
   it accepts an invite marked `is_direct`, as the spec asks clients to.
2. Otherwise the invite decides: the bot remembers, for each invite it accepted, whether it
   was marked `is_direct` (in `data/matrix/direct_rooms.json`), so a group room that
   shrinks to two members stays a group room.
3. Only a room with neither (joined some other way, or before this record was kept) falls
   back to its size: two members or fewer is direct.

Whatever the rule says, a room with more than two members is never direct: its members
must mention the bot, and none of them becomes an admin by being there.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import nio

from adapters.matrix_session import MatrixError, write_private
from brain.bounded import BoundedDict

log = logging.getLogger(__name__)

KNOWN_INVITES = 10_000  # invites whose is_direct is remembered (most recent kept)


class DirectRooms:
    """The account's `m.direct` rooms and the invites' `is_direct`, kept across restarts."""

    def __init__(self, file: Path, *, max_rooms: int = KNOWN_INVITES) -> None:
        self.file = file
        self._invites: BoundedDict[str, bool] = BoundedDict(max_rooms)
        self._account: dict[str, list[str]] = {}  # m.direct: user id -> that user's DM rooms
        self._account_rooms: frozenset[str] = frozenset()

    def load(self) -> None:
        """Read the invites remembered by earlier runs (a list of direct rooms, before)."""
        try:
            saved = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return
        if isinstance(saved, list):  # the first format: only the direct rooms were kept
            saved = {room: True for room in saved}
        if isinstance(saved, dict):
            for room, direct in saved.items():
                if isinstance(room, str) and isinstance(direct, bool):
                    self._invites[room] = direct

    def is_direct(self, room_id: str, member_count: int) -> bool:
        if member_count > 2:
            return False
        if room_id in self._account_rooms:
            return True
        remembered = self._invites.get(room_id)
        return True if remembered is None else remembered  # neither: two members at most

    def set_account_data(self, content: dict[str, Any]) -> None:
        """The account's `m.direct` content, as the homeserver holds it now."""
        self._account = {
            user: [room for room in rooms if isinstance(room, str)]
            for user, rooms in content.items()
            if isinstance(user, str) and isinstance(rooms, list)
        }
        self._account_rooms = frozenset(room for rooms in self._account.values() for room in rooms)

    async def remember_invite(self, room_id: str, direct: bool) -> None:
        self._invites[room_id] = direct
        text = json.dumps(dict(self._invites.items()))
        await asyncio.to_thread(write_private, self.file, text)

    def with_room(self, user_id: str, room_id: str) -> dict[str, Any]:
        """The `m.direct` content with `room_id` added as a direct chat with `user_id`."""
        rooms = self._account.get(user_id, [])
        return {**self._account, user_id: [*rooms, room_id] if room_id not in rooms else rooms}

    # -- the homeserver's copy -------------------------------------------------------------

    async def fetch(self, client: nio.AsyncClient) -> None:
        """Read the account's `m.direct` (an account that never had one has none)."""
        response = await client.list_direct_rooms()
        if isinstance(response, nio.DirectRoomsResponse):
            self.set_account_data(response.rooms)

    async def on_account_data(self, event: nio.AccountDataEvent) -> None:
        """Sync callback: another client (or this bot) changed the account's `m.direct`."""
        if isinstance(event, nio.UnknownAccountDataEvent) and event.type == "m.direct":
            self.set_account_data(event.content)

    async def mark_direct(self, client: nio.AsyncClient, user_id: str, room_id: str) -> None:
        """Add the room to the account's `m.direct`, as a client accepting a DM invite does.

        Best effort: if the homeserver refuses, the remembered invite still says direct.
        """
        content = self.with_room(user_id, room_id)
        _, path = nio.Api.direct_room_list(client.access_token, client.user_id)  # GET and PUT
        try:
            response = await client.send(
                "PUT", path, json.dumps(content), headers={"Content-Type": "application/json"}
            )
            async with response:
                if response.status != 200:
                    raise MatrixError(f"HTTP {response.status}")
        except (MatrixError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("matrix: could not add %s to m.direct: %s", room_id, exc)
            return
        self.set_account_data(content)
