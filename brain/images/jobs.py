"""Image jobs in progress, noted in the history's database so a crash cannot lose them.

A row is written before a job is queued and deleted when its user has been told how it
ended; rows found at start belong to a process that died, and their users are told.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select

from brain.database.tables import ImageJob


@dataclass(frozen=True)
class LostImageJob:
    channel: str
    user_id: str
    prompt: str


class ImageJobs:
    """This bot instance's image jobs (`instance` tells it from others on one database)."""

    def __init__(self, engine: Engine, instance: str) -> None:
        self._engine = engine
        self.instance = instance

    async def start(self, channel: str, user_id: str, prompt: str) -> int:
        """Note an image job before it is queued, so a crash cannot lose it silently."""
        return await asyncio.to_thread(self._start, channel, user_id, prompt)

    async def finish(self, job_id: int) -> None:
        """Forget a job that ended (delivered, failed or cancelled: its user was told)."""
        await asyncio.to_thread(self._finish, job_id)

    async def take_lost(self, platform: str) -> list[LostImageJob]:
        """Remove and return the jobs this instance's dead process left on one platform."""
        return await asyncio.to_thread(self._take_lost, platform)

    def _start(self, channel: str, user_id: str, prompt: str) -> int:
        row = {
            "channel": channel,
            "user_id": user_id,
            "prompt": prompt,
            "created_at": datetime.now(UTC),
            "instance": self.instance,
        }
        with self._engine.begin() as connection:
            inserted = connection.execute(insert(ImageJob).values(row)).inserted_primary_key
            assert inserted is not None  # an INSERT of one row has its key
            return int(inserted[0])

    def _finish(self, job_id: int) -> None:
        with self._engine.begin() as connection:
            connection.execute(delete(ImageJob).where(col(ImageJob.id) == job_id))

    def _take_lost(self, platform: str) -> list[LostImageJob]:
        mine = col(ImageJob.channel).startswith(f"{platform}:", autoescape=True) & col(
            ImageJob.instance
        ).in_([self.instance, ""])
        with Session(self._engine) as session:
            jobs = session.exec(select(ImageJob).where(mine).order_by(col(ImageJob.id))).all()
            session.exec(delete(ImageJob).where(col(ImageJob.id).in_([j.id for j in jobs])))
            session.commit()
            return [LostImageJob(j.channel, j.user_id, j.prompt) for j in jobs]
