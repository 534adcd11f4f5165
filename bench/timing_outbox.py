"""An outbox for benchmarks: notes when the first status line and the first reply text
become visible, keeps nothing."""

from __future__ import annotations

import time

from brain.outbox import Capabilities


class FirstTextOutbox:
    capabilities = Capabilities(max_message_length=2000, edit_interval_s=0.0)

    def __init__(self) -> None:
        self.first_visible: float | None = None
        self.first_progress: float | None = None

    async def progress(self, text: str) -> None:
        if self.first_progress is None:
            self.first_progress = time.perf_counter()

    async def send(self, text: str) -> int:
        if self.first_visible is None:
            self.first_visible = time.perf_counter()
        return 0

    async def edit(self, ref: int, text: str) -> None:
        return None

    async def send_image(self, data: bytes, filename: str, caption: str) -> int:
        return 0

    async def send_reasoning(self, text: str) -> None:
        return None

    async def typing(self) -> None:
        return None

    async def error(self, text: str) -> None:
        raise RuntimeError(text)
