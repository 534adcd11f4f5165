"""What a page showed in each channel, so that a reload shows the same thing again.

Discord and Matrix keep what the bot said; the web page keeps nothing, and the history of
turns is not what was shown: commands and their answers, notes, errors, the "how this
reply was made" panel, a reply cut off mid-way and the alternatives of a regenerated reply
are not turns (they never go into a prompt). So the page's adapter records each event it
sends, as it sent it — a streamed reply as last edited, with whether it was finished — and a
reload replays them through the same code that showed them live.

Bounded: the newest `KEPT_EVENTS` per channel, and the picture itself only for the newest
`KEPT_PICTURES` drawn images of a channel (older ones keep their caption).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from brain.database.tables import SHOWN, ShownEventRow

log = logging.getLogger(__name__)

KEPT_EVENTS = 500  # per channel: what a reload can show
KEPT_PICTURES = 20  # drawn images whose picture is kept per channel (about 0.4 MB each)
PICTURE = "image"  # the kind of a drawn image's event; its picture is its "src"


@dataclass(frozen=True)
class ShownEvent:
    """One event a page was sent, as it stands now."""

    ref: str
    payload: dict[str, Any]
    finished: bool


class Transcript:
    """Records and reads back what a page showed, per channel key ("web:main")."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def _write(self, work: Callable[..., None], *args: Any) -> None:
        """Run a write off the event loop. A failing one is logged, never raised: the record
        of what was shown never costs the reply it records."""
        try:
            await asyncio.to_thread(work, *args)
        except SQLAlchemyError:
            log.exception("could not record what the page showed")

    async def add(
        self, channel: str, ref: str, payload: dict[str, Any], *, finished: bool = True
    ) -> None:
        """Record an event the page was sent (`ref`: the page's id for it)."""
        row = {
            "channel": channel,
            "ref": ref,
            "kind": str(payload.get("event", "")),
            "payload": json.dumps(payload),
            "finished": finished,
        }
        await self._write(self._add, row)

    async def update(
        self,
        channel: str,
        ref: str,
        payload: dict[str, Any] | None = None,
        *,
        finished: bool | None = None,
    ) -> None:
        """The event `ref` now reads `payload` (a reply's later edit), or is finished."""
        values: dict[str, Any] = {}
        if payload is not None:
            values["payload"] = json.dumps(payload)
        if finished is not None:
            values["finished"] = finished
        if values:
            await self._write(self._update, channel, [ref], values)

    async def finish(self, channel: str, refs: list[str]) -> None:
        """The events `refs` are finished (a reply written to its end, a question answered)."""
        if refs:
            await self._write(self._update, channel, refs, {"finished": True})

    async def finish_kind(self, channel: str, kind: str) -> None:
        """Every open event of `kind` in the channel is finished (its question was answered)."""

        def run() -> None:
            with self._engine.begin() as connection:
                connection.execute(
                    update(ShownEventRow)
                    .where(SHOWN.channel == channel, SHOWN.kind == kind, SHOWN.finished.is_(False))
                    .values(finished=True)
                )

        await self._write(run)

    async def remove(self, channel: str, ref: str) -> None:
        """The event `ref` is gone from the page (your message, deleted)."""

        def run() -> None:
            with self._engine.begin() as connection:
                connection.execute(
                    delete(ShownEventRow).where(SHOWN.channel == channel, SHOWN.ref == ref)
                )

        await self._write(run)

    async def find(self, channel: str, ref: str) -> ShownEvent | None:
        """The event the page knows as `ref`, if it is still kept."""
        shown = await asyncio.to_thread(self._read, channel, ref, 1)
        return shown[0] if shown else None

    async def read(self, channel: str, limit: int = KEPT_EVENTS) -> list[ShownEvent]:
        """The channel's newest `limit` events, oldest first."""
        return await asyncio.to_thread(self._read, channel, None, limit)

    async def channels(self, prefix: str, limit: int) -> list[str]:
        """The channel keys starting with `prefix` that showed anything, newest first."""
        query = (
            select(SHOWN.channel)
            .where(SHOWN.channel.startswith(prefix, autoescape=True))
            .group_by(SHOWN.channel)
            .order_by(func.max(SHOWN.id).desc())
            .limit(limit)
        )

        def run() -> list[str]:
            with self._engine.connect() as connection:
                return [channel for (channel,) in connection.execute(query)]

        return await asyncio.to_thread(run)

    # -- in a worker thread ---------------------------------------------------------------

    def _add(self, row: dict[str, Any]) -> None:
        with self._engine.begin() as connection:
            connection.execute(insert(ShownEventRow).values(row))
            _keep_newest(connection, row["channel"])
            if row["kind"] == PICTURE:
                _drop_old_pictures(connection, row["channel"])

    def _update(self, channel: str, refs: list[str], values: dict[str, Any]) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                update(ShownEventRow)
                .where(SHOWN.channel == channel, SHOWN.ref.in_(refs))
                .values(values)
            )

    def _read(self, channel: str, ref: str | None, limit: int) -> list[ShownEvent]:
        query = select(SHOWN.ref, SHOWN.payload, SHOWN.finished).where(SHOWN.channel == channel)
        if ref is not None:
            query = query.where(SHOWN.ref == ref)
        query = query.order_by(SHOWN.id.desc()).limit(limit)
        with self._engine.connect() as connection:
            rows = list(connection.execute(query))
        return [ShownEvent(r, json.loads(p), bool(f)) for r, p, f in reversed(rows)]


def _keep_newest(connection: Connection, channel: str) -> None:
    """Delete the channel's events older than its newest `KEPT_EVENTS`."""
    oldest_kept = (
        select(SHOWN.id)
        .where(SHOWN.channel == channel)
        .order_by(SHOWN.id.desc())
        .offset(KEPT_EVENTS - 1)
        .limit(1)
        .scalar_subquery()
    )
    connection.execute(
        delete(ShownEventRow).where(SHOWN.channel == channel, SHOWN.id < oldest_kept)
    )


def _drop_old_pictures(connection: Connection, channel: str) -> None:
    """Older drawn images than the newest `KEPT_PICTURES` keep their caption only."""
    query = (
        select(SHOWN.id, SHOWN.payload)
        .where(SHOWN.channel == channel, SHOWN.kind == PICTURE)
        .order_by(SHOWN.id.desc())
        .offset(KEPT_PICTURES)
    )
    for row_id, payload in list(connection.execute(query)):
        event = json.loads(payload)
        if event.get("src"):
            event["src"] = ""
            connection.execute(
                update(ShownEventRow).where(SHOWN.id == row_id).values(payload=json.dumps(event))
            )
