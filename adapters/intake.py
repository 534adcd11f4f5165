"""One intake for every chat platform: what happens to a message between the platform and the brain.

An adapter does platform I/O only. It reads a platform event into an `Arrival` (who wrote,
where, what, and which files — described, not yet downloaded) and hands it here with its
outbox. What is the same on every platform happens here, once: the access rules
(allowlists, admins), the per-user rate limit and its "slow down" reply, attachments read
within the size limit (and the picture of a replied-to message when the message has none)
with one wording for every note, and the neutral `Inbound` the brain answers.

Order is kept here too: `arrive` stamps a message's place in its channel's order (call it in
the platform's callback, before anything is awaited), so a picture that takes long to
download is still answered before the quick text sent after it.

Adding a platform means one new module of platform I/O: fill an `Arrival` per message,
implement an `Outbox`, and call `handle` (or `arrive` first, then `handle` with the ticket,
when the platform must await something before the `Arrival` is known).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from adapters.common import SLOW_DOWN, RateLimiter, could_not_download, too_large
from brain.answering import NOTHING_TO_STOP
from brain.brain import Brain
from brain.channels.events import NewMessage
from brain.channels.registry import Ticket
from brain.chat.attachments import cannot_read, readable_kind
from brain.messages import Attachment, CommandCall, Inbound
from brain.outbox import Outbox

STOP_WORDS = {"/stop", "!stop"}

log = logging.getLogger(__name__)


class DownloadFailed(Exception):
    """A file could not be fetched from the platform (the user is asked to try again)."""


@dataclass(frozen=True)
class RemoteFile:
    """A file on the platform, read only when the message gets that far."""

    name: str
    content_type: str
    size: int | None  # as the platform declares it; None when it does not say
    # The bytes, or None once more than the given limit arrived; raises DownloadFailed.
    read: Callable[[int], Awaitable[bytes | None]]


@dataclass(frozen=True)
class Arrival:
    """One platform message as an adapter read it, before any rule is applied."""

    platform: str
    channel_id: str  # where the conversation is kept (a thread is its own)
    author_id: str
    author_name: str
    text: str  # without the mention of the bot; "" for a message that is only a file
    direct: bool = False  # a one-to-one conversation: the user is its admin
    author_groups: frozenset[str] = frozenset()  # Discord roles, a Matrix user's home server
    places: frozenset[str] = frozenset()  # the channel and its parent, for allowlists
    realm: str | None = None  # the Discord server it came from; None elsewhere
    files: tuple[RemoteFile, ...] = ()
    replied_files: tuple[RemoteFile, ...] = ()  # the pictures of the message it replies to
    command: CommandCall | None = None
    message_id: str = ""  # the platform's id of the message (edits and deletions name it)


@dataclass(frozen=True)
class AccessRules:
    """Who may talk to the bot, where, and who counts as an admin. Empty lists allow all."""

    allowed_users: frozenset[str] = frozenset()
    allowed_groups: frozenset[str] = frozenset()
    allowed_places: frozenset[str] = frozenset()  # direct conversations are never limited
    allowed_realms: frozenset[str] = frozenset()
    admin_users: frozenset[str] = frozenset()
    admin_groups: frozenset[str] = frozenset()

    def allows_user(self, user_id: str, groups: frozenset[str] = frozenset()) -> bool:
        if not (self.allowed_users or self.allowed_groups):
            return True
        return user_id in self.allowed_users or bool(groups & self.allowed_groups)

    def allows(self, arrival: Arrival) -> bool:
        realm = arrival.realm
        if realm is not None and self.allowed_realms and realm not in self.allowed_realms:
            return False
        if self.allowed_places and not arrival.direct and not arrival.places & self.allowed_places:
            return False
        return self.allows_user(arrival.author_id, arrival.author_groups)

    def is_admin(self, arrival: Arrival) -> bool:
        """Admins may /reset shared conversations; everyone is the admin of their own DM."""
        return (
            arrival.direct
            or arrival.author_id in self.admin_users
            or bool(arrival.author_groups & self.admin_groups)
        )


class Intake:
    """Applies the rules every platform shares, then asks the brain.

    `access` gives the rules as the platform's config says now (read at each message, so
    a config changed at run time applies at once); None allows everyone.
    """

    def __init__(
        self,
        brain: Brain,
        platform: str,
        access: Callable[[], AccessRules] | None = None,
        rate_limit: RateLimiter | None = None,  # None: a local console, one user, no limit
        max_attachment_bytes: int = 10 * 2**20,
    ) -> None:
        self.brain = brain
        self.platform = platform
        self._access = access or AccessRules
        self.rate_limit = rate_limit
        self.max_attachment_bytes = max_attachment_bytes
        self.ignored = 0  # messages dropped by the access rules

    @property
    def rules(self) -> AccessRules:
        return self._access()

    def arrive(self, channel_id: str, message_id: str = "") -> Ticket:
        """Stamp a message's place in its channel's order; synchronous, so call it before
        anything is awaited. `handle` delivers (or drops) it."""
        source = f"{self.platform}:{message_id}" if message_id else ""
        return self.brain.arrive(f"{self.platform}:{channel_id}", source)

    def change(self, message_id: str) -> Ticket:
        """Stamp an edit or deletion of a message, as `arrive` does (see `changed`)."""
        return self.brain.change(f"{self.platform}:{message_id}")

    async def handle(self, arrival: Arrival, outbox: Outbox, ticket: Ticket | None = None) -> None:
        """The whole way in for one message: stamped (unless `ticket` was, earlier), let in
        by the rules, its files read, then answered in its turn. Returns once answered."""
        with ticket or self.arrive(arrival.channel_id, arrival.message_id) as stamped:
            if await self.admit(arrival, outbox):
                await self.deliver(arrival, outbox, stamped)

    async def admit(self, arrival: Arrival, outbox: Outbox) -> bool:
        """Whether the message goes on: allowed here, and its author within the rate limit.

        Someone off the allowlists gets no answer at all; someone over the limit is told.
        """
        if not self.rules.allows(arrival):
            self.ignored += 1
            log.info("%s: ignored a message from %s: not allowed", self.platform, arrival.author_id)
            return False
        if self.rate_limit is not None and not self.rate_limit.allow(arrival.author_id):
            await outbox.send(SLOW_DOWN)
            return False
        return True

    async def stop_if_asked(self, arrival: Arrival, outbox: Outbox) -> bool:
        """A `/stop` (or `!stop`) stops the reply being written in its channel at once,
        instead of waiting its turn behind it; returns whether the message was one."""
        if arrival.command is not None:  # a platform's own command (Discord's /stop)
            asked = arrival.command.name == "stop"
        else:  # a typed one; the word "stop" alone is chat like any other
            asked = arrival.text.strip().lower() in STOP_WORDS
        if not asked:
            return False
        if not self.brain.stop(f"{self.platform}:{arrival.channel_id}"):
            await outbox.send(NOTHING_TO_STOP)
        return True

    async def deliver(self, arrival: Arrival, outbox: Outbox, ticket: Ticket) -> None:
        """Read its files (or the replied-to picture), send any notes, and hand it on in its
        turn (a message that comes to nothing gives its place up). A stop is not queued."""
        with ticket:
            if await self.stop_if_asked(arrival, outbox):
                return  # its place is given up: the channel goes on
            attachments, notes = await self._read(arrival.files)
            # A reply to a picture asks about it: the vision character sees it.
            if not arrival.files:
                attachments, notes = await self._read(arrival.replied_files)
            if notes:
                await outbox.send("\n".join(notes))
                if not attachments and not arrival.text:
                    return  # nothing left to answer
            await ticket.deliver(NewMessage(self.inbound(arrival, attachments), outbox))

    def inbound(self, arrival: Arrival, attachments: list[Attachment] | None = None) -> Inbound:
        """The neutral message the brain answers."""
        return Inbound(
            platform=arrival.platform,
            channel_id=arrival.channel_id,
            author_id=arrival.author_id,
            author_name=arrival.author_name,
            text=arrival.text,
            is_admin=self.rules.is_admin(arrival),
            attachments=tuple(attachments or ()),
            command=arrival.command,
            message_id=arrival.message_id,
            is_direct=arrival.direct,
        )

    async def changed(
        self, message_id: str, text: str | None, ticket: Ticket | None = None
    ) -> None:
        """A message was edited to `text`, or deleted (None), on the platform: stamped at
        once (unless `ticket` was, earlier), applied in its channel's order."""
        await self.brain.message_changed(f"{self.platform}:{message_id}", text, ticket)

    async def report_lost_jobs(self, notify: Callable[[str, str], Awaitable[None]]) -> int:
        """Tell the users of this platform whose images an earlier run did not finish."""
        return await self.brain.report_lost_image_jobs(self.platform, notify)

    async def _read(self, files: tuple[RemoteFile, ...]) -> tuple[list[Attachment], list[str]]:
        """Each file the bot can use, within the size limit: a file of another kind (audio,
        video, an archive) or declared too large is refused unread; the rest is read with a
        running cap (a size may be missing, or wrong)."""
        limit = self.max_attachment_bytes
        attachments: list[Attachment] = []
        notes: list[str] = []
        for item in files:
            if readable_kind(item.name, item.content_type) is None:
                notes.append(cannot_read(item.name, item.content_type))
                continue
            if item.size is not None and item.size > limit:
                notes.append(too_large(item.name, limit, item.size))
                continue
            try:
                data = await item.read(limit)
            except DownloadFailed as exc:
                log.warning("%s: could not download an attachment: %s", self.platform, exc)
                notes.append(could_not_download(item.name))
                continue
            if data is None:
                notes.append(too_large(item.name, limit))
                continue
            attachments.append(Attachment(item.name[:80], item.content_type, data))
        return attachments, notes
