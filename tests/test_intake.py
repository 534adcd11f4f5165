"""The intake every adapter shares, tested once without any platform."""

from __future__ import annotations

import asyncio

from adapters.common import SLOW_DOWN, RateLimiter, read_capped
from adapters.intake import AccessRules, Arrival, DownloadFailed, Intake, RemoteFile
from brain.after_turn import Work
from brain.answering import NOTHING_TO_STOP
from brain.channels.events import Answerable, Change
from brain.channels.registry import Channels, Ticket
from brain.messages import CommandCall, Inbound
from tests.helpers import RecordingOutbox, eventually


class RecordingBrain:
    """Keeps what it was asked to answer, in the order the channels' owners hand it on (the
    real brain is tested on its own)."""

    def __init__(self) -> None:
        self.asked: list[Inbound] = []
        self.channels = Channels(self, self.change_stored, max_waiting=20)

    def arrive(self, channel_key: str, source: str = "") -> Ticket:
        return self.channels.arrive(channel_key, source)

    async def answer(self, event: Answerable) -> list[Work]:
        self.asked.append(event.message)
        return []

    async def change_stored(self, change: Change) -> None:
        return None

    async def report_lost_image_jobs(self, platform: str, notify: object) -> int:
        return 0

    def stop(self, channel_key: str) -> bool:
        return self.channels.stop(channel_key)


class StoredFile:
    """A file on a platform: counts its reads, and stops a read past the limit."""

    def __init__(
        self,
        name: str,
        data: bytes,
        *,
        declared: int | None,
        fails: bool = False,
        content_type: str = "image/png",
        arrives: asyncio.Event | None = None,
    ):
        self.data, self.reads, self.fails = data, 0, fails
        self.arrives = arrives  # a slow download: its bytes come once this is set
        self.remote = RemoteFile(name, content_type, declared, self.read)

    async def read(self, limit: int) -> bytes | None:
        self.reads += 1
        if self.arrives is not None:
            await self.arrives.wait()
        if self.fails:
            raise DownloadFailed("HTTP 502")

        async def chunks():
            for start in range(0, len(self.data), 1024):
                yield self.data[start : start + 1024]

        return await read_capped(chunks(), limit)


def arrival(**fields: object) -> Arrival:
    base: dict[str, object] = {
        "platform": "p",
        "channel_id": "c",
        "author_id": "ann",
        "author_name": "Ann",
        "text": "hello",
    }
    return Arrival(**{**base, **fields})  # type: ignore[arg-type]


EVERYONE = AccessRules()


def intake(brain: RecordingBrain, rules: AccessRules = EVERYONE, **options: object) -> Intake:
    return Intake(brain, "p", lambda: rules, **options)  # type: ignore[arg-type]


def test_access_rules_allow_by_user_group_place_and_realm() -> None:
    rules = AccessRules(
        allowed_users=frozenset({"ann"}),
        allowed_groups=frozenset({"friends"}),
        allowed_places=frozenset({"general"}),
        allowed_realms=frozenset({"home"}),
    )
    assert rules.allows(arrival(places=frozenset({"general"}), realm="home"))
    assert rules.allows(
        arrival(
            author_id="bob", author_groups=frozenset({"friends"}), places=frozenset({"general"})
        )
    )
    assert not rules.allows(arrival(author_id="bob", places=frozenset({"general"})))
    assert not rules.allows(arrival(places=frozenset({"lounge"})))
    assert rules.allows(arrival(direct=True))  # a DM is not limited by the channel list
    assert not rules.allows(arrival(places=frozenset({"general"}), realm="elsewhere"))
    assert AccessRules().allows(arrival(author_id="anyone"))


def test_admins_are_listed_users_or_groups_and_everyone_in_their_own_dm() -> None:
    rules = AccessRules(admin_users=frozenset({"ann"}), admin_groups=frozenset({"mods"}))
    assert rules.is_admin(arrival())
    assert rules.is_admin(arrival(author_id="bob", author_groups=frozenset({"mods"})))
    assert rules.is_admin(arrival(author_id="bob", direct=True))
    assert not rules.is_admin(arrival(author_id="bob"))


async def test_a_message_off_the_allowlist_is_ignored_without_a_word() -> None:
    brain, outbox = RecordingBrain(), RecordingOutbox()
    gate = intake(brain, AccessRules(allowed_users=frozenset({"ann"})))
    await gate.handle(arrival(author_id="bob"), outbox)
    assert brain.asked == [] and outbox.events == [] and gate.ignored == 1


async def test_over_the_rate_limit_the_user_is_told_to_slow_down() -> None:
    brain = RecordingBrain()
    gate = intake(brain, rate_limit=RateLimiter(2, 60.0))
    outboxes = [RecordingOutbox() for _ in range(3)]
    for outbox in outboxes:
        await gate.handle(arrival(), outbox)
    assert len(brain.asked) == 2 and outboxes[2].messages == [SLOW_DOWN]


async def test_the_neutral_message_carries_text_command_admin_and_files() -> None:
    brain = RecordingBrain()
    picture = StoredFile("cat.png", b"png" * 10, declared=30)
    gate = intake(brain, AccessRules(admin_users=frozenset({"ann"})))
    command = CommandCall("sd", {"prompt": "a cat"})
    await gate.handle(arrival(files=(picture.remote,), command=command), RecordingOutbox())
    (message,) = brain.asked
    assert (message.platform, message.channel_id, message.author_id) == ("p", "c", "ann")
    assert message.text == "hello" and message.command == command and message.is_admin
    assert [(a.filename, a.content_type, a.data) for a in message.attachments] == [
        ("cat.png", "image/png", b"png" * 10)
    ]


async def test_files_over_the_limit_are_refused_declared_or_not() -> None:
    brain, outbox = RecordingBrain(), RecordingOutbox()
    declared = StoredFile("big.png", b"x" * 5000, declared=5000)
    undeclared = StoredFile("sneaky.png", b"x" * 5000, declared=None)
    gate = intake(brain, max_attachment_bytes=2048)
    await gate.handle(arrival(text="", files=(declared.remote, undeclared.remote)), outbox)
    assert declared.reads == 0  # refused before any download
    assert undeclared.reads == 1  # read, and stopped once past the limit
    assert outbox.messages == [
        "big.png is too large (4 KB; the limit is 2 KB), so I did not open it.\n"
        "sneaky.png is too large (the limit is 2 KB), so I did not open it."
    ]
    assert brain.asked == []  # nothing left to answer


async def test_files_the_bot_cannot_read_are_named_and_never_downloaded() -> None:
    """Issue 22 item 2: audio, video and other kinds get a clear note, without a download."""
    brain, outbox = RecordingBrain(), RecordingOutbox()
    voice = StoredFile("voice.ogg", b"OggS", declared=4, content_type="audio/ogg")
    notes = StoredFile("notes", b"milk", declared=None, content_type="text/plain")
    gate = intake(brain)
    await gate.handle(arrival(text="", files=(voice.remote,)), outbox)
    await gate.handle(arrival(text="and these?", files=(voice.remote, notes.remote)), outbox)
    assert voice.reads == 0 and notes.reads == 1
    assert (
        outbox.messages
        == ["I can't read voice.ogg (audio/ogg): send images (PNG, JPEG, WebP, GIF) or text files."]
        * 2
    )
    (message,) = brain.asked  # the file alone left nothing to answer; the words are answered
    assert message.text == "and these?" and [a.data for a in message.attachments] == [b"milk"]


async def test_a_failed_download_is_named_and_the_words_are_still_answered() -> None:
    brain, outbox = RecordingBrain(), RecordingOutbox()
    broken = StoredFile("cat.png", b"", declared=10, fails=True)
    await intake(brain).handle(arrival(text="what is this?", files=(broken.remote,)), outbox)
    assert outbox.messages == ["I could not download cat.png; please try again."]
    assert [m.text for m in brain.asked] == ["what is this?"] and brain.asked[0].attachments == ()


async def test_a_reply_to_a_picture_brings_the_picture_unless_the_message_has_its_own() -> None:
    brain = RecordingBrain()
    replied = StoredFile("drawn.png", b"drawn", declared=5)
    own = StoredFile("mine.png", b"mine", declared=4)
    gate = intake(brain)
    await gate.handle(arrival(replied_files=(replied.remote,)), RecordingOutbox())
    await gate.handle(
        arrival(files=(own.remote,), replied_files=(replied.remote,)), RecordingOutbox()
    )
    assert [[a.data for a in m.attachments] for m in brain.asked] == [[b"drawn"], [b"mine"]]
    assert replied.reads == 1  # the second message had a picture of its own


async def test_a_slow_download_keeps_its_place_and_the_quick_text_after_it_waits() -> None:
    """Issue 32 defect 4: a picture, then a quick text: answered in the order they came, however
    long the picture takes to download."""
    brain = RecordingBrain()
    gate = intake(brain)
    downloaded = asyncio.Event()
    picture = StoredFile("bike.png", b"png", declared=3, arrives=downloaded)
    notes = StoredFile("notes.txt", b"red", declared=3, content_type="text/plain")
    first = arrival(text="look at my bike", files=(picture.remote,), message_id="1")
    second = arrival(text="what colour is it?", files=(notes.remote,), message_id="2")
    sending = [asyncio.create_task(gate.handle(m, RecordingOutbox())) for m in (first, second)]
    await eventually(lambda: picture.reads == 1 and notes.reads == 1)  # the text is ready first
    downloaded.set()
    await asyncio.gather(*sending)
    assert [m.text for m in brain.asked] == ["look at my bike", "what colour is it?"]


async def test_only_a_stop_command_stops_the_word_alone_is_chat() -> None:
    """`/stop` and `!stop` stop a reply at once; "stop" typed alone is a message like any."""
    taking = intake(RecordingBrain())
    for text, stops in (("/stop", True), ("!STOP", True), ("stop", False), ("/stop it", False)):
        outbox = RecordingOutbox()
        assert await taking.stop_if_asked(arrival(text=text), outbox) is stops, text
        assert outbox.messages == ([NOTHING_TO_STOP] if stops else [])  # nothing was being written
