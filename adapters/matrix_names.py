"""The bot's display name in each Matrix room follows the character who writes the replies
(`matrix.name_from_character`): people read "Seraphina", not the account's name.

Matrix keeps a per-room display name in the member's own `m.room.member` state; the bot sets
it once in every room it is in (checked after each sync: a room joined later gets it too),
only where it differs, and remembers the rooms it has named (bounded).
"""

from __future__ import annotations

import logging

import nio

from brain.bounded import BoundedDict

log = logging.getLogger(__name__)

KNOWN_ROOMS = 10_000


class RoomNames:
    """Sets the bot's per-room display name to the writing character's."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._named: BoundedDict[str, bool] = BoundedDict(KNOWN_ROOMS)

    async def follow(self, client: nio.AsyncClient) -> None:
        """Every joined room not named yet: its member state says `name` (one request each)."""
        for room_id, room in list(client.rooms.items()):
            if room_id in self._named:
                continue
            self._named[room_id] = True
            member = room.users.get(client.user_id)
            if member is not None and member.display_name == self.name:
                continue
            content = {"membership": "join", "displayname": self.name}
            if member is not None and member.avatar_url:
                content["avatar_url"] = member.avatar_url  # kept as it was
            response = await client.room_put_state(
                room_id, "m.room.member", content, state_key=client.user_id
            )
            if isinstance(response, nio.ErrorResponse):  # the room forbids it: keep the name
                log.warning("matrix: could not set the display name in %s: %s", room_id, response)
            else:
                log.info("matrix: named %s in %s", self.name, room_id)
