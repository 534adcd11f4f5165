"""The Matrix adapter (matrix-nio): rooms, invites, text commands, replies, edits, images, E2EE.

matrix-nio *returns* error responses instead of raising them, so every call's
response type is checked here. Long work runs in tasks so the sync loop keeps
going; the first sync after start only catches up (no answers to the backlog),
and the session (device, token) and sync token persist so a restart neither
creates a device nor answers old messages.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import nio
from nio.crypto import ENCRYPTION_ENABLED

from adapters.common import RateLimiter
from adapters.config import MatrixConfig
from adapters.intake import AccessRules, Arrival, Intake
from adapters.matrix_direct import DirectRooms
from adapters.matrix_invites import Invites
from adapters.matrix_media import (
    MEDIA_EVENTS,
    caption,
    remote_file,
    replied_files,
    upload_image,
)
from adapters.matrix_names import RoomNames
from adapters.matrix_outbox import NO_MENTIONS, MatrixOutbox, text_content
from adapters.matrix_session import MatrixSession, check
from adapters.matrix_stop import StopReactions
from brain.bounded import BoundedDict
from brain.brain import Brain
from brain.channels.registry import Ticket

log = logging.getLogger(__name__)


KNOWN_ROOMS = 10_000  # rooms remembered as told they cannot be read (most recent kept)
CANT_DECRYPT = (
    "I can't read encrypted messages in this room (end-to-end encryption is not available "
    "to me here). Invite me to an unencrypted room instead."
)


def strip_mention(body: str, names: list[str], *, reply: bool = False) -> str:
    """The words of a message: without a leading mention, nor, for a reply, the quoted
    fallback older clients put before it (its leading `>` lines). Quotes people write in
    their own words stay."""
    if reply:
        body = re.sub(r"\A(?:>.*(?:\n|\Z))+", "", body)
    body = body.strip()
    for name in names:
        body = re.sub(rf"^\s*{re.escape(name)}\s*[:,]?\s*", "", body, flags=re.IGNORECASE)
    return body.strip()


def home_server(user_id: str) -> str:
    """The server part of a Matrix user id ("@ann:example.org" → "example.org")."""
    return user_id.split(":", 1)[-1]


def access_rules(config: MatrixConfig) -> AccessRules:
    """Matrix's allowlists: users, or whole home servers; admins by user id."""
    return AccessRules(
        allowed_users=frozenset(config.allowed_users),
        allowed_groups=frozenset(config.allowed_servers),
        admin_users=frozenset(config.admin_users),
    )


def _thread_root(relation: dict[str, Any]) -> str | None:
    """The thread an event belongs to (its root event's id), or None."""
    root = relation.get("event_id") if relation.get("rel_type") == "m.thread" else None
    return root if isinstance(root, str) else None


def _channel_id(room_id: str, relation: dict[str, Any]) -> str:
    """Where an event's conversation is kept: its room, or its thread there."""
    root = _thread_root(relation)
    return f"{room_id}/{root}" if root else room_id


def addressed(own: str, room: nio.MatrixRoom, content: dict[str, Any]) -> bool:
    """Whether a message in a shared room names the bot (user id `own`): an intentional
    mention (clients add the sender of the message replied to), its id or display name in
    the text (a reply's fallback quotes the sender's id), or a pill."""
    mentions = content.get("m.mentions")
    if isinstance(mentions, dict) and own in mentions.get("user_ids", []):
        return True
    body = content.get("body", "") if isinstance(content.get("body"), str) else ""
    name = room.user_name(own) or ""
    if own in body or (name and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", body, re.IGNORECASE)):
        return True
    return f"matrix.to/#/{own}" in str(content.get("formatted_body", ""))


def may_reply_to_the_bot(content: dict[str, Any], relation: dict[str, Any]) -> bool:
    """A reply that may be to the bot although it names nobody: only from a client without
    intentional mentions (no `m.mentions`); one with them names the replied-to sender."""
    return bool((relation.get("m.in_reply_to") or {}).get("event_id")) and (
        "m.mentions" not in content
    )


async def authored_edit(
    client: nio.AsyncClient, room_id: str, event: nio.Event
) -> tuple[str, str] | None:
    """(the edited event's id, its new text) when `event` edits (m.replace) its sender's own
    message in this room. Servers pass on anyone's edit of any event; the spec leaves the
    check to clients."""
    content = event.source.get("content", {})
    new = content.get("m.new_content") or {}
    edited = (content.get("m.relates_to") or {}).get("event_id")
    if not (isinstance(new.get("body"), str) and isinstance(edited, str)):
        return None
    response = await client.room_get_event(room_id, edited)
    if isinstance(response, nio.RoomGetEventResponse) and response.event.sender == event.sender:
        return edited, new["body"]
    return None


async def replied_event(
    client: nio.AsyncClient, room_id: str, relation: dict[str, Any], *, decrypt: bool
) -> nio.Event | None:
    """The event a message replies to (`relation`: its `m.relates_to`), decrypted where it
    can be; None for no reply, or one the server will not give."""
    event_id = (relation.get("m.in_reply_to") or {}).get("event_id")
    if not event_id:
        return None
    response = await client.room_get_event(room_id, event_id)
    if not isinstance(response, nio.RoomGetEventResponse):
        return None
    event = response.event
    if isinstance(event, nio.MegolmEvent) and decrypt:
        try:
            event = client.decrypt_event(event)
        except nio.EncryptionError as exc:
            log.info("matrix: cannot decrypt replied-to event %s: %s", event_id, exc)
    return event


class MatrixAdapter:
    """Logs in, keeps syncing, and hands addressed messages to the brain."""

    def __init__(
        self,
        brain: Brain,
        config: MatrixConfig,
        *,
        data_dir: Path,
        password: str | None = None,
        access_token: str | None = None,
    ) -> None:
        self.brain = brain
        self.config = config
        self.encryption = config.encryption and ENCRYPTION_ENABLED
        self.session = MatrixSession(
            data_dir / "matrix",
            config,
            self.encryption,
            password=password,
            access_token=access_token,
        )
        self.direct_rooms = DirectRooms(data_dir / "matrix" / "direct_rooms.json")
        self.client: nio.AsyncClient | None = None
        self.intake = Intake(
            brain,
            "matrix",
            lambda: access_rules(config),
            RateLimiter(config.rate_limit_messages, config.rate_limit_window_s),
            config.max_attachment_bytes,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self.stop_reactions = StopReactions(brain)  # ⏹ on a reply being written
        writer = brain.mixture.writer.name  # its display name in each room, if asked
        self.room_names = RoomNames(writer) if config.name_from_character else None
        self._told_cant_decrypt: BoundedDict[str, bool] = BoundedDict(KNOWN_ROOMS)
        self.ready = asyncio.Event()

    async def login(self) -> nio.AsyncClient:
        """Reuse the stored session (same device) or log in once and store it."""
        self.client = await self.session.login()
        self.direct_rooms.load()
        return self.client

    # -- running -----------------------------------------------------------------------

    async def run(self) -> None:
        """Catch up without answering, then sync forever, reconnecting with backoff."""
        client = self.client or await self.login()
        first = check(await client.sync(timeout=0, full_state=True), "first sync")
        log.info("matrix: caught up (%s), answering from now on", first.next_batch)
        await self.direct_rooms.fetch(client)
        client.add_global_account_data_callback(
            self.direct_rooms.on_account_data, nio.UnknownAccountDataEvent
        )
        invites = Invites(client, self.direct_rooms, self._may_invite)
        client.add_event_callback(invites.on_invite, nio.InviteMemberEvent)
        client.add_event_callback(self._on_redaction, nio.RedactionEvent)
        client.add_event_callback(self.stop_reactions.on_reaction, nio.ReactionEvent)
        client.add_event_callback(
            self._on_event,
            (nio.RoomMessageText, *MEDIA_EVENTS, nio.MegolmEvent),
        )
        await invites.catch_up(first)  # invites from while we were away
        await self.intake.report_lost_jobs(self._notify)
        if self.room_names is not None:
            await self.room_names.follow(client)
        self.ready.set()
        backoff = 1.0
        while True:
            response = await client.sync(timeout=30000)
            if isinstance(response, nio.SyncError):
                log.warning(
                    "matrix: sync failed (%s); retrying in %.0f s", response.message, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            backoff = 1.0
            if self.encryption:
                await self._maintain_keys()
            if self.room_names is not None:  # rooms joined since: named too
                await self.room_names.follow(client)

    async def _maintain_keys(self) -> None:
        assert self.client is not None
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        if self.client.should_query_keys:
            await self.client.keys_query()
        if self.client.should_claim_keys:
            await self.client.keys_claim(self.client.get_users_for_key_claiming())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.close()

    # -- messages -------------------------------------------------------------------------

    async def _on_event(self, room: nio.MatrixRoom, event: nio.Event) -> None:
        """Runs inside the sync loop: stamp the event's place in its channel's order, start a
        task and return at once."""
        assert self.client is not None
        # Not filtered by timestamp: the first sync skipped the backlog already, and a sender's
        # server whose clock runs behind ours would have its every message dropped.
        if event.sender == self.client.user_id:
            return
        relation = event.source.get("content", {}).get("m.relates_to") or {}
        if isinstance(event, nio.MegolmEvent):
            ticket = None  # nothing to answer: said once per room (see _undecryptable)
        elif relation.get("rel_type") == "m.replace":  # an edit: the edited message's turn
            ticket = self.intake.change(str(relation.get("event_id")))
        else:
            ticket = self.intake.arrive(_channel_id(room.room_id, relation), event.event_id)
        task = self._spawn(self._handle(room, event, ticket))
        if ticket is not None:  # a task cancelled before it ran still gives its place up
            task.add_done_callback(lambda _: ticket.drop())

    async def _on_redaction(self, room: nio.MatrixRoom, event: nio.RedactionEvent) -> None:
        """A redacted (deleted) message is forgotten: its stored turn and its memory."""
        if event.redacts:
            ticket = self.intake.change(event.redacts)
            task = self._spawn(self.intake.changed(event.redacts, None, ticket))
            task.add_done_callback(lambda _: ticket.drop())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _handle(self, room: nio.MatrixRoom, event: nio.Event, ticket: Ticket | None) -> None:
        try:
            if isinstance(event, nio.MegolmEvent):
                await self._undecryptable(room, event)
            elif ticket is not None:
                with ticket:
                    await self._handle_event(room, event, ticket)
        except Exception:  # one bad event never stops the bot
            log.exception("matrix: failed to handle %s in %s", event.event_id, room.room_id)

    async def _handle_event(self, room: nio.MatrixRoom, event: nio.Event, ticket: Ticket) -> None:
        assert self.client is not None
        content = event.source.get("content", {})
        relation = content.get("m.relates_to") or {}
        if relation.get("rel_type") == "m.replace":  # an edit is not a new message...
            if (edit := await authored_edit(self.client, room.room_id, event)) is not None:
                edited, body = edit
                text = strip_mention(body, self._own_names(room))
                await self.intake.changed(edited, text, ticket)
            return  # ...but a stored (or waiting) message, changed
        own = self.client.user_id
        direct = self._is_direct(room)
        named = direct or room.room_id in self.config.answer_rooms or addressed(own, room, content)
        if not (named or may_reply_to_the_bot(content, relation)):
            return
        # Fetched only for a message the bot may answer (in a busy room, not for each one).
        replied = await replied_event(self.client, room.room_id, relation, decrypt=self.encryption)
        if not named and (replied is None or replied.sender != own):
            return  # a reply, but not to the bot
        media = remote_file(self.client, event, content)
        body = content.get("body") if isinstance(content.get("body"), str) else ""
        words = caption(content) if media else body  # a media body may be a file name
        arrival = Arrival(
            platform="matrix",
            channel_id=_channel_id(room.room_id, relation),
            author_id=event.sender,
            author_name=room.user_name(event.sender) or event.sender,
            text=strip_mention(words, self._own_names(room), reply="m.in_reply_to" in relation),
            direct=direct,
            author_groups=frozenset({home_server(event.sender)}),
            files=(media,) if media else (),
            replied_files=replied_files(self.client, replied),
            message_id=event.event_id,
        )
        thread_root = _thread_root(relation)
        outbox = MatrixOutbox(self, room.room_id, event.event_id, thread_root)
        try:
            await self.intake.handle(arrival, outbox, ticket)
        finally:
            outbox.finish()
        await self.client.room_typing(room.room_id, False)

    def _may_invite(self, user_id: str) -> bool:
        return self.intake.rules.allows_user(user_id, frozenset({home_server(user_id)}))

    def _own_names(self, room: nio.MatrixRoom) -> list[str]:
        assert self.client is not None
        return [n for n in (room.user_name(self.client.user_id), self.client.user_id) if n]

    def _is_direct(self, room: nio.MatrixRoom) -> bool:
        """The room's DM status (see adapters.matrix_direct for the rule)."""
        return self.direct_rooms.is_direct(room.room_id, room.member_count)

    async def _undecryptable(self, room: nio.MatrixRoom, event: nio.MegolmEvent) -> None:
        log.warning(
            "matrix: cannot decrypt %s in %s (session %s)",
            event.event_id,
            room.room_id,
            event.session_id,
        )
        if not self.encryption and room.room_id not in self._told_cant_decrypt:
            self._told_cant_decrypt[room.room_id] = True
            relation = event.source.get("content", {}).get("m.relates_to") or {}
            outbox = MatrixOutbox(self, room.room_id, event.event_id, _thread_root(relation))
            await outbox.send(CANT_DECRYPT)

    # -- sending ----------------------------------------------------------------------------

    async def _notify(self, channel_id: str, text: str) -> None:
        """A message of the bot's own, unprompted, into a room or thread (a channel key's id)."""
        room_id, _, thread_root = channel_id.partition("/")
        relation = (
            {"m.relates_to": {"rel_type": "m.thread", "event_id": thread_root}}
            if thread_root
            else {}
        )
        await self.send(room_id, {**text_content(text), **relation})

    async def send(self, room_id: str, content: dict[str, Any]) -> str:
        assert self.client is not None
        response = await self.client.room_send(
            room_id, "m.room.message", content, ignore_unverified_devices=True
        )
        return check(response, f"send to {room_id}").event_id

    async def typing(self, room_id: str) -> None:
        assert self.client is not None
        await self.client.room_typing(room_id, True, timeout=30000)

    async def send_image(
        self, room_id: str, data: bytes, filename: str, caption: str, relation: dict[str, Any]
    ) -> str:
        assert self.client is not None
        room = self.client.rooms.get(room_id)
        encrypt = bool(room and room.encrypted and self.encryption)
        content = await upload_image(self.client, data, filename, caption, encrypt=encrypt)
        return await self.send(room_id, {**content, "m.mentions": NO_MENTIONS, **relation})
