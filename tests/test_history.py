"""History on real SQLite and real PostgreSQL: per channel, ordered, kept across restarts."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from brain.database.engine import resolve_database_url
from brain.database.tables import IMAGE
from brain.history.store import KEPT_IMAGES, HistoryStore
from brain.images.jobs import ImageJobs, LostImageJob


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    return request.getfixturevalue("postgres_url")


async def test_turns_are_kept_per_channel_newest_first(database_url: str) -> None:
    store = HistoryStore(database_url)
    a, b = f"test:{uuid.uuid4()}", f"test:{uuid.uuid4()}"
    ids = [await store.add(a, "user" if i % 2 == 0 else "assistant", f"a{i}") for i in range(5)]
    await store.add(b, "user", "b0")
    recent = await store.recent(a, limit=3)
    assert [t.content for t in recent] == ["a4", "a3", "a2"]
    older = await store.recent(a, before_id=ids[2], limit=10)
    assert [t.content for t in older] == ["a1", "a0"]
    assert [t.content for t in await store.recent(b)] == ["b0"]
    store.close()


async def test_restart_keeps_history_and_reset_clears_one_channel(database_url: str) -> None:
    channel, other = f"test:{uuid.uuid4()}", f"test:{uuid.uuid4()}"
    first = HistoryStore(database_url)
    await first.add(channel, "user", "remember me", "ann")
    await first.add(other, "user", "other channel")
    first.close()

    second = HistoryStore(database_url)  # a new process would do exactly this
    turns = await second.recent(channel)
    assert [(t.role, t.author, t.content) for t in turns] == [("user", "ann", "remember me")]
    assert await second.clear(channel) == 1
    assert await second.count(channel) == 0
    assert await second.count(other) == 1
    second.close()


async def test_unicode_and_long_content_round_trip(database_url: str) -> None:
    store = HistoryStore(database_url)
    channel = f"test:{uuid.uuid4()}"
    text = "héllo 🌍 " * 5000
    await store.add(channel, "user", text)
    assert (await store.recent(channel))[0].content == text
    store.close()


async def test_an_edit_replaces_a_message_text_and_keeps_what_came_with_it(
    database_url: str,
) -> None:
    store = HistoryStore(database_url)
    channel = f"test:{uuid.uuid4()}"
    file = "[file a.txt]\n```\nrice\n```"
    plain, with_file = f"x:{uuid.uuid4()}", f"x:{uuid.uuid4()}"  # platform message ids
    first_id, _ = await store.add_and_recent(channel, "user", "plain", "ann", 1, source=plain)
    await store.add_and_recent(channel, "user", file, "ann", 1, source=with_file, text_chars=0)

    async def stored() -> list[str]:
        return [t.content for t in reversed(await store.recent(channel))]

    for source, words in ((plain, "edited"), (with_file, "now with words")):
        rewritten, removed = await store.rewrite_source(source, words)
        assert len(rewritten) == 1 and removed == []  # none left empty
    assert await stored() == ["edited", f"now with words\n\n{file}"]
    await store.rewrite_source(with_file, "")  # the words taken out again: the file stays
    assert await stored() == ["edited", file]
    # edited down to nothing (on Discord: only the bot's mention left): gone, as a new
    # message with nothing in it is never stored
    assert await store.rewrite_source(plain, "") == ([], [(first_id, channel)])
    assert await stored() == [file]
    store.close()


def test_relative_sqlite_path_goes_into_data_dir(tmp_path: Path) -> None:
    url = resolve_database_url("sqlite:///mombot.db", tmp_path / "data")
    assert url == f"sqlite:///{tmp_path / 'data' / 'mombot.db'}"
    assert (tmp_path / "data").is_dir()
    assert (
        resolve_database_url("postgresql+psycopg://u@h/db", tmp_path)
        == "postgresql+psycopg://u@h/db"
    )


def test_sqlite_uses_wal(sqlite_url: str) -> None:
    store = HistoryStore(sqlite_url)
    with store._engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert mode == "wal"
    store.close()


async def test_image_entries_keep_their_png_for_the_newest_images_only(database_url: str) -> None:
    store = HistoryStore(database_url)
    channel, other = f"t:{uuid.uuid4().hex}", f"t:{uuid.uuid4().hex}"
    assert await store.latest_image(channel) is None
    await store.add(other, "assistant", "[image: owl]", "mom", kind=IMAGE, image=b"owl")
    ids = [
        await store.add(
            channel, "assistant", f"[image: fox {i}]", "mom", kind=IMAGE, image=b"fox" + bytes([i])
        )
        for i in range(KEPT_IMAGES + 2)
    ]
    await store.add(channel, "user", "nice", "ann")  # a later text turn carries no image
    newest = await store.latest_image(channel)
    assert newest is not None
    assert (newest.turn_id, newest.description, newest.png) == (
        ids[-1],
        f"[image: fox {KEPT_IMAGES + 1}]",
        b"fox" + bytes([KEPT_IMAGES + 1]),
    )
    with store._engine.connect() as connection:
        kept = (
            connection.execute(
                text("SELECT id FROM turns WHERE channel = :c AND image IS NOT NULL"),
                {"c": channel},
            )
            .scalars()
            .all()
        )
    assert sorted(kept) == ids[2:]  # the two oldest lost their PNG...
    assert (
        len(await store.recent(channel, include_images=True, limit=100)) == KEPT_IMAGES + 3
    )  # ...not their entry
    owl = await store.latest_image(other)
    assert owl is not None and owl.png == b"owl"  # another channel's images are its own
    await store.clear(channel)
    assert await store.latest_image(channel) is None
    store.close()


async def test_opening_the_store_migrates_off_the_event_loop(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17 item 12: connecting and migrating (Alembic) block; the bot opens it in a thread."""
    import threading

    from brain.history import store as history

    migrated_on: list[str] = []
    migrate = history.migrate

    def recording(engine: object) -> None:
        migrated_on.append(threading.current_thread().name)
        migrate(engine)  # type: ignore[arg-type]

    monkeypatch.setattr(history, "migrate", recording)
    store = await HistoryStore.open(database_url)
    assert migrated_on and migrated_on[0] != threading.main_thread().name
    await store.ping()
    store.close()


async def test_two_bots_on_one_database_claim_only_their_own_lost_image_jobs(
    database_url: str,
) -> None:
    """Issue 17 item 7: the README's scaling section puts two bots on one database. A bot that
    starts claims what its own earlier run left, never the other bot's live jobs."""
    platform = f"p{uuid.uuid4().hex[:8]}"
    engine = HistoryStore(database_url).engine
    first, second = ImageJobs(engine, "bot-one"), ImageJobs(engine, "bot-two")
    await first.start(f"{platform}:room", "ann", "a fox")  # first's job, still drawing
    await second.start(f"{platform}:room", "bob", "a cat")  # then second dies
    restarted = ImageJobs(engine, "bot-two")
    lost = await restarted.take_lost(platform)
    assert [(j.user_id, j.prompt) for j in lost] == [("bob", "a cat")]
    assert await first.take_lost(platform) == [
        LostImageJob(f"{platform}:room", "ann", "a fox")
    ]  # first's own, as its next start would report it
    engine.dispose()


async def test_what_a_page_showed_is_kept_within_its_bounds(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The web page's record (`brain.history.transcript`): each channel keeps its newest
    events, and only its newest drawn images keep their picture; other channels untouched."""
    from brain.history import transcript

    monkeypatch.setattr(transcript, "KEPT_EVENTS", 6)
    monkeypatch.setattr(transcript, "KEPT_PICTURES", 2)
    store = HistoryStore(database_url)
    shown = transcript.Transcript(store.engine)
    web = f"web{uuid.uuid4().hex[:8]}:"  # the PostgreSQL database outlives one test run
    await shown.add(f"{web}other", "o", {"event": "message", "html": "kept"})
    for n in range(4):
        await shown.add(f"{web}a", f"i{n}", {"event": "image", "src": f"data:{n}", "html": ""})
    for n in range(3):
        await shown.add(f"{web}a", f"m{n}", {"event": "message", "html": str(n)}, finished=False)
    events = await shown.read(f"{web}a")
    assert [e.ref for e in events] == ["i1", "i2", "i3", "m0", "m1", "m2"]  # the newest 6
    assert [e.payload["src"] for e in events[:3]] == ["", "data:2", "data:3"]
    await shown.add(f"{web}a", "i4", {"event": "image", "src": "data:4", "html": ""})
    pictures = [e.payload["src"] for e in await shown.read(f"{web}a") if e.ref.startswith("i")]
    assert pictures == ["", "data:3", "data:4"]  # older than the newest two: caption only
    await shown.finish(f"{web}a", ["m1"])
    finished = {e.ref: e.finished for e in await shown.read(f"{web}a") if e.ref.startswith("m")}
    assert finished == {"m0": False, "m1": True, "m2": False}
    assert [e.ref for e in await shown.read(f"{web}other")] == ["o"]
    assert await shown.channels(web, 10) == [f"{web}a", f"{web}other"]
    store.close()
