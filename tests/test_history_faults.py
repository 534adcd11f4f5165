"""The database briefly locked or its connection dropped: turns wait or reconnect, none lost
or doubled."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import make_url

from brain.history.store import HistoryStore


async def test_a_briefly_locked_sqlite_database_is_waited_for(sqlite_url: str) -> None:
    store = HistoryStore(sqlite_url)
    await store.add("c", "user", "before the lock")
    path = make_url(sqlite_url).database
    locked, release = threading.Event(), threading.Event()

    def hold_write_lock() -> None:  # another process's writer, e.g. a backup tool
        other = sqlite3.connect(path)
        other.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait()
        other.rollback()
        other.close()

    attempted = threading.Event()  # the store's INSERT has gone to SQLite, into the lock

    def note_insert(connection: object, cursor: object, statement: str, *args: object) -> None:
        if statement.startswith("INSERT"):
            attempted.set()

    event.listen(store.engine, "before_cursor_execute", note_insert)
    holder = threading.Thread(target=hold_write_lock)
    holder.start()
    await asyncio.to_thread(locked.wait)
    adding = asyncio.create_task(store.add("c", "user", "during the lock"))
    await asyncio.to_thread(attempted.wait, 30)
    # A write that does not wait fails at once ("database is locked"); this one is still
    # going half a second later, and ends once the lock is released.
    done, _ = await asyncio.wait({adding}, timeout=0.5)
    assert not done
    release.set()
    await adding
    holder.join()
    assert [t.content for t in await store.recent("c")] == ["during the lock", "before the lock"]
    store.close()


async def test_a_dropped_postgresql_connection_is_replaced(postgres_url: str) -> None:
    channel = f"pg-drop-{time.monotonic_ns()}"
    store = HistoryStore(postgres_url)
    await store.add(channel, "user", "first")
    url = make_url(postgres_url)
    admin = psycopg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
    )
    # What a server restart or an idle-connection reaper does to the bot's pooled connections.
    dropped = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        (url.database,),
    ).fetchall()
    admin.close()
    assert dropped  # the pool's connection was among them
    await store.add(channel, "assistant", "second")
    assert [t.content for t in await store.recent(channel)] == ["second", "first"]
    assert await store.count(channel) == 2
    store.close()
