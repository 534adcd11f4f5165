"""The Matrix adapter (matrix-nio): rooms, invites, text commands, replies, edits, images, E2EE.

matrix-nio *returns* error responses instead of raising them, so every call's
response type is checked here. Long work runs in tasks so the sync loop keeps
going; the first sync after start only catches up (no answers to the backlog),
and the session (device, token) and sync token persist so a restart neither
creates a device nor answers old messages.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import nio
from nio.crypto import ENCRYPTION_ENABLED, decrypt_attachment

from adapters.common import SLOW_DOWN, RateLimiter
from adapters.config import MatrixConfig
from adapters.matrix_html import markdown_to_html
from brain.brain import Brain
from brain.messages import Attachment, Inbound
from brain.outbox import Capabilities, MessageRef
from brain.redaction import register_secret

log = logging.getLogger(__name__)

NO_MENTIONS: dict[str, Any] = {}  # an empty m.mentions: this event pings nobody (not even @room)
MATRIX_LIMIT = 16000
CANT_DECRYPT = (
    "I can't read encrypted messages in this room (end-to-end encryption is not available "
    "to me here). Invite me to an unencrypted room instead."
)


class MatrixError(RuntimeError):
    """A Matrix call failed; the message names the call and the server's answer."""


def check(response: Any, what: str) -> Any:
    """matrix-nio reports failures as returned *Error objects: turn them into exceptions."""
    if isinstance(response, nio.ErrorResponse):
        raise MatrixError(f"{what} failed: {response.status_code} {response.message}")
    return response


class MatrixOutbox:
    """Replies in a room (and thread): real m.in_reply_to replies, m.replace edits."""

    def __init__(self, adapter: MatrixAdapter, room_id: str, reply_to: str | None,
                 thread_root: str | None) -> None:
        self._adapter = adapter
        self._room_id = room_id
        self._reply_to = reply_to
        self._thread_root = thread_root
        self.capabilities = Capabilities(
            max_message_length=MATRIX_LIMIT, edit_interval_s=adapter.config.edit_interval_s,
            markdown=True, max_upload_bytes=adapter.config.max_attachment_bytes,
        )  # fmt: skip

    def _relation(self) -> dict[str, Any]:
        reply_to, self._reply_to = self._reply_to, None  # only the first message is the reply
        if self._thread_root is not None:
            relation: dict[str, Any] = {"rel_type": "m.thread", "event_id": self._thread_root}
            if reply_to:
                relation["is_falling_back"] = True
                relation["m.in_reply_to"] = {"event_id": reply_to}
            return {"m.relates_to": relation}
        return {"m.relates_to": {"m.in_reply_to": {"event_id": reply_to}}} if reply_to else {}

    async def send(self, text: str) -> MessageRef:
        content = {**text_content(text), **self._relation()}
        return await self._adapter.send(self._room_id, content)

    async def edit(self, ref: MessageRef, text: str) -> None:
        new = text_content(text)
        content = {
            "msgtype": new["msgtype"],
            "body": f"* {new['body']}",
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": ref},
            "m.mentions": NO_MENTIONS,
        }
        await self._adapter.send(self._room_id, content)

    async def send_image(self, data: bytes, filename: str, caption: str) -> MessageRef:
        return await self._adapter.send_image(self._room_id, data, filename, caption, self._relation())

    async def send_reasoning(self, text: str) -> None:
        """A collapsed <details> block; clients without HTML show the plain body."""
        folded = {
            **text_content(f"💭 Reasoning:\n{text}"),
            "formatted_body": f"<details><summary>💭 Reasoning</summary>{markdown_to_html(text)}</details>",
            **self._relation(),
        }
        await self._adapter.send(self._room_id, folded)

    async def typing(self) -> None:
        await self._adapter.typing(self._room_id)

    async def error(self, text: str) -> None:
        await self.send(f"⚠️ {text}")


def text_content(text: str) -> dict[str, Any]:
    return {
        "msgtype": "m.text",
        "body": text,
        "format": "org.matrix.custom.html",
        "formatted_body": markdown_to_html(text),
        "m.mentions": NO_MENTIONS,
    }


class MatrixAdapter:
    """Logs in, keeps syncing, and hands addressed messages to the brain."""

    def __init__(self, brain: Brain, config: MatrixConfig, *, data_dir: Path,
                 password: str | None = None, access_token: str | None = None) -> None:
        self.brain = brain
        self.config = config
        self.folder = data_dir / "matrix"
        self._password = password
        register_secret(password)
        register_secret(access_token)
        self._access_token = access_token
        self.encryption = config.encryption and ENCRYPTION_ENABLED
        self.client: nio.AsyncClient | None = None
        self.rate_limit = RateLimiter(config.rate_limit_messages, config.rate_limit_window_s)
        self._tasks: set[asyncio.Task[None]] = set()
        self._told_cant_decrypt: set[str] = set()
        self._started_ms = 0
        self.ready = asyncio.Event()

    # -- session ----------------------------------------------------------------------

    @property
    def _session_file(self) -> Path:
        return self.folder / "session.json"

    async def login(self) -> nio.AsyncClient:
        """Reuse the stored session (same device) or log in once and store it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        store = self.folder / "store"
        store.mkdir(exist_ok=True)
        client_config = nio.AsyncClientConfig(
            encryption_enabled=self.encryption, store_sync_tokens=True, request_timeout=60
        )
        client = nio.AsyncClient(self.config.homeserver, self.config.user_id,
                                 store_path=str(store), config=client_config)
        self.client = client
        saved = self._load_session()
        if saved:
            register_secret(saved["access_token"])
            client.restore_login(saved["user_id"], saved["device_id"], saved["access_token"])
            log.info("matrix: restored session, device %s", saved["device_id"])
        elif self._access_token:
            client.access_token = self._access_token
            whoami = check(await client.whoami(), "whoami")
            client.restore_login(whoami.user_id, whoami.device_id or "", self._access_token)
            self._save_session(whoami.user_id, whoami.device_id or "", self._access_token)
        else:
            response = check(
                await client.login(self._password or "", device_name=self.config.device_name), "login"
            )
            self._save_session(response.user_id, response.device_id, response.access_token)
            log.info("matrix: logged in as %s, new device %s", response.user_id, response.device_id)
        if self.encryption and client.should_upload_keys:
            check(await client.keys_upload(), "keys upload")
        return client

    def _load_session(self) -> dict[str, str] | None:
        try:
            data = json.loads(self._session_file.read_text())
        except (OSError, ValueError):
            return None
        if data.get("user_id") != self.config.user_id and self.config.user_id:
            return None
        return data

    def _save_session(self, user_id: str, device_id: str, token: str) -> None:
        register_secret(token)
        path = self._session_file
        path.write_text(json.dumps({"user_id": user_id, "device_id": device_id, "access_token": token}))
        os.chmod(path, 0o600)  # it holds the access token

    # -- running -----------------------------------------------------------------------

    async def run(self) -> None:
        """Catch up without answering, then sync forever, reconnecting with backoff."""
        client = self.client or await self.login()
        self._started_ms = int(time.time() * 1000)
        first = check(await client.sync(timeout=0, full_state=True), "first sync")
        log.info("matrix: caught up (%s), answering from now on", first.next_batch)
        client.add_event_callback(self._on_invite, nio.InviteMemberEvent)
        client.add_event_callback(self._on_event, (nio.RoomMessageText, nio.RoomMessageImage,
                                                   nio.RoomEncryptedImage, nio.MegolmEvent))
        for room_id in list(client.invited_rooms):  # invites that came while we were away
            await self._consider_invite(room_id, client.invited_rooms[room_id].inviter)
        await self.brain.report_lost_image_jobs("matrix", self._notify)
        self.ready.set()
        backoff = 1.0
        while True:
            response = await client.sync(timeout=30000)
            if isinstance(response, nio.SyncError):
                log.warning("matrix: sync failed (%s); retrying in %.0f s", response.message, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            backoff = 1.0
            if self.encryption:
                await self._maintain_keys()

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

    # -- invites --------------------------------------------------------------------------

    def _allowed(self, user_id: str) -> bool:
        cfg = self.config
        if not (cfg.allowed_users or cfg.allowed_servers):
            return True
        server = user_id.split(":", 1)[-1]
        return user_id in cfg.allowed_users or server in cfg.allowed_servers

    async def _on_invite(self, room: nio.MatrixRoom, event: nio.InviteMemberEvent) -> None:
        assert self.client is not None
        if event.state_key == self.client.user_id and event.membership == "invite":
            await self._consider_invite(room.room_id, event.sender)

    async def _consider_invite(self, room_id: str, inviter: str | None) -> None:
        assert self.client is not None
        if inviter and self._allowed(inviter):
            check(await self.client.join(room_id), f"join {room_id}")
            log.info("matrix: joined %s (invited by %s)", room_id, inviter)
        else:
            check(await self.client.room_leave(room_id), f"decline {room_id}")
            log.info("matrix: declined the invite to %s from %s", room_id, inviter)

    # -- messages -------------------------------------------------------------------------

    async def _on_event(self, room: nio.MatrixRoom, event: nio.Event) -> None:
        """Runs inside the sync loop: start a task and return at once."""
        assert self.client is not None
        if event.sender == self.client.user_id or event.server_timestamp < self._started_ms:
            return
        task = asyncio.create_task(self._handle(room, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, room: nio.MatrixRoom, event: nio.Event) -> None:
        try:
            await self._handle_event(room, event)
        except Exception:  # one bad event never stops the bot
            log.exception("matrix: failed to handle %s in %s", event.event_id, room.room_id)

    async def _handle_event(self, room: nio.MatrixRoom, event: nio.Event) -> None:
        assert self.client is not None
        content = event.source.get("content", {})
        relation = content.get("m.relates_to") or {}
        if relation.get("rel_type") == "m.replace":
            return  # edits of earlier messages are not new messages
        thread_root = relation.get("event_id") if relation.get("rel_type") == "m.thread" else None
        outbox = MatrixOutbox(self, room.room_id, event.event_id, thread_root)
        if isinstance(event, nio.MegolmEvent):
            await self._undecryptable(room, event, outbox)
            return
        if not self._allowed(event.sender):
            return
        replied = await self._replied_event(room, relation)
        if not self._addressed(room, content, replied):
            return
        if not self.rate_limit.allow(event.sender):
            await outbox.send(SLOW_DOWN)
            return
        attachments, notes = await self._download(event, content)
        is_image = bool(attachments or notes)  # its body is a file name, not words
        if not is_image:  # replying to a picture asks about it: the vision character sees it
            attachments, notes = await self._replied_image(replied)
        if notes:
            await outbox.send("\n".join(notes))
            if is_image and not attachments:
                return
        text = "" if is_image else self._strip_mention(room, content.get("body", ""))
        channel = f"{room.room_id}/{thread_root}" if thread_root else room.room_id
        inbound = Inbound(
            platform="matrix",
            channel_id=channel,
            author_id=event.sender,
            author_name=room.user_name(event.sender) or event.sender,
            text=text,
            message_id=event.event_id,
            reply_to=(relation.get("m.in_reply_to") or {}).get("event_id"),
            is_direct=self._is_direct(room),
            is_admin=self._is_direct(room) or event.sender in self.config.admin_users,
            attachments=tuple(attachments),
        )
        await self.brain.handle(inbound, outbox)
        await self.client.room_typing(room.room_id, False)

    def _is_direct(self, room: nio.MatrixRoom) -> bool:
        return room.member_count <= 2

    def _addressed(
        self, room: nio.MatrixRoom, content: dict[str, Any], replied: nio.Event | None
    ) -> bool:
        """A direct room, an answer-every-message room, a mention, or a reply to the bot."""
        assert self.client is not None
        own = self.client.user_id
        if self._is_direct(room) or room.room_id in self.config.answer_rooms:
            return True
        mentions = content.get("m.mentions")
        if isinstance(mentions, dict) and own in mentions.get("user_ids", []):
            return True
        body = content.get("body", "") if isinstance(content.get("body"), str) else ""
        name = room.user_name(own) or ""
        if own in body or (name and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", body, re.IGNORECASE)):
            return True
        if f"matrix.to/#/{own}" in str(content.get("formatted_body", "")):
            return True
        return replied is not None and replied.sender == own

    def _strip_mention(self, room: nio.MatrixRoom, body: str) -> str:
        assert self.client is not None
        body = re.sub(r"(?m)^> .*\n?", "", body).strip()  # the quoted fallback of a reply
        names = [n for n in (room.user_name(self.client.user_id), self.client.user_id) if n]
        for name in names:
            body = re.sub(rf"^\s*{re.escape(name)}\s*[:,]?\s*", "", body, flags=re.IGNORECASE)
        return body.strip()

    async def _undecryptable(self, room: nio.MatrixRoom, event: nio.MegolmEvent,
                             outbox: MatrixOutbox) -> None:
        log.warning("matrix: cannot decrypt %s in %s (session %s)", event.event_id, room.room_id,
                    event.session_id)
        if not self.encryption and room.room_id not in self._told_cant_decrypt:
            self._told_cant_decrypt.add(room.room_id)
            await outbox.send(CANT_DECRYPT)

    async def _replied_event(
        self, room: nio.MatrixRoom, relation: dict[str, Any]
    ) -> nio.Event | None:
        """The event this one replies to, decrypted where it can be; None for no reply."""
        assert self.client is not None
        event_id = (relation.get("m.in_reply_to") or {}).get("event_id")
        if not event_id:
            return None
        response = await self.client.room_get_event(room.room_id, event_id)
        if not isinstance(response, nio.RoomGetEventResponse):
            return None
        event = response.event
        if isinstance(event, nio.MegolmEvent) and self.encryption:
            try:
                event = self.client.decrypt_event(event)
            except nio.EncryptionError as exc:
                log.info("matrix: cannot decrypt replied-to event %s: %s", event_id, exc)
        return event

    async def _replied_image(self, replied: nio.Event | None) -> tuple[list[Attachment], list[str]]:
        """The image of the replied-to event (anyone's, the bot's own drawings too)."""
        if replied is None:
            return [], []
        return await self._download(replied, replied.source.get("content", {}))

    async def _download(self, event: nio.Event, content: dict[str, Any]) -> tuple[list[Attachment], list[str]]:
        """Fetch an image within the size limit (refused before download beyond it)."""
        assert self.client is not None
        if not isinstance(event, (nio.RoomMessageImage, nio.RoomEncryptedImage)):
            return [], []
        info = content.get("info") or {}
        name = str(content.get("body") or "image")[:80]
        size = info.get("size")
        if not isinstance(size, int) or size > self.config.max_attachment_bytes:
            limit = self.config.max_attachment_bytes // 1024
            return [], [f"{name} is too large or of unknown size (the limit is {limit} KB), so I did not open it."]
        response = await self.client.download(mxc=event.url)
        if not isinstance(response, nio.DownloadResponse) or len(response.body) > self.config.max_attachment_bytes:
            return [], [f"I could not download {name}; please try again."]
        data = response.body
        if isinstance(event, nio.RoomEncryptedImage):
            data = decrypt_attachment(data, event.key["k"], event.hashes["sha256"], event.iv)
        return [Attachment(name, info.get("mimetype") or event.mimetype or "", data)], []

    # -- sending ----------------------------------------------------------------------------

    async def _notify(self, channel_id: str, text: str) -> None:
        """A message of the bot's own, unprompted, into a room or thread (a channel key's id)."""
        room_id, _, thread_root = channel_id.partition("/")
        relation = {"m.relates_to": {"rel_type": "m.thread", "event_id": thread_root}} if thread_root else {}
        await self.send(room_id, {**text_content(text), **relation})

    async def send(self, room_id: str, content: dict[str, Any]) -> str:
        assert self.client is not None
        response = await self.client.room_send(room_id, "m.room.message", content,
                                               ignore_unverified_devices=True)
        return check(response, f"send to {room_id}").event_id

    async def typing(self, room_id: str) -> None:
        assert self.client is not None
        await self.client.room_typing(room_id, True, timeout=30000)

    async def send_image(self, room_id: str, data: bytes, filename: str, caption: str,
                         relation: dict[str, Any]) -> str:
        from PIL import Image

        assert self.client is not None
        width, height = await asyncio.to_thread(lambda: Image.open(io.BytesIO(data)).size)
        room = self.client.rooms.get(room_id)
        encrypt = bool(room and room.encrypted and self.encryption)
        upload, keys = await self.client.upload(io.BytesIO(data), content_type="image/png",
                                                filename=filename, encrypt=encrypt,
                                                filesize=len(data))
        check(upload, "upload")
        content: dict[str, Any] = {
            "msgtype": "m.image",
            "body": caption,
            "filename": filename,
            "info": {"mimetype": "image/png", "size": len(data), "w": width, "h": height},
            "m.mentions": NO_MENTIONS,
            **relation,
        }
        if encrypt and keys:
            content["file"] = {**keys, "url": upload.content_uri}
        else:
            content["url"] = upload.content_uri
        return await self.send(room_id, content)
