"""Matrix invites: joined when the inviter is allowed (remembering whether it was a DM),
declined otherwise, both those that came while the bot was away and those that come now."""

from __future__ import annotations

import logging
from collections.abc import Callable

import nio

from adapters.matrix_direct import DirectRooms
from adapters.matrix_session import check

log = logging.getLogger(__name__)


def invited_as_direct(sync: nio.SyncResponse, room_id: str, own_id: str) -> bool:
    """Whether a pending invite in this sync marks the room a direct chat (`is_direct`)."""
    invite = sync.rooms.invite.get(room_id)
    events = invite.invite_state if invite is not None else []
    return any(
        isinstance(event, nio.InviteMemberEvent)
        and event.state_key == own_id
        and event.content.get("is_direct") is True
        for event in events
    )


class Invites:
    """Answers the bot account's invites as the access rules say."""

    def __init__(
        self, client: nio.AsyncClient, direct_rooms: DirectRooms, allows: Callable[[str], bool]
    ) -> None:
        self.client = client
        self.direct_rooms = direct_rooms
        self.allows = allows  # may this user invite the bot?

    async def catch_up(self, first: nio.SyncResponse) -> None:
        """The invites that came while the bot was away (pending in the first sync)."""
        for room_id, room in list(self.client.invited_rooms.items()):
            direct = invited_as_direct(first, room_id, self.client.user_id)
            await self.consider(room_id, room.inviter, direct)

    async def on_invite(self, room: nio.MatrixRoom, event: nio.InviteMemberEvent) -> None:
        """Sync callback: an invite of the bot account."""
        if event.state_key == self.client.user_id and event.membership == "invite":
            await self.consider(room.room_id, event.sender, event.content.get("is_direct") is True)

    async def consider(self, room_id: str, inviter: str | None, direct: bool) -> None:
        if inviter and self.allows(inviter):
            check(await self.client.join(room_id), f"join {room_id}")
            await self.direct_rooms.remember_invite(room_id, direct)
            if direct:
                await self.direct_rooms.mark_direct(self.client, inviter, room_id)
            log.info("matrix: joined %s (invited by %s)", room_id, inviter)
        else:
            check(await self.client.room_leave(room_id), f"decline {room_id}")
            log.info("matrix: declined the invite to %s from %s", room_id, inviter)
