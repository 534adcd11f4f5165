"""Pinning each character to a server slot of its own, so its prompt cache stays warm.

A llama.cpp server with `--parallel N` has N slots, each caching the last prompt it
processed. A character's prompt is its persona, then the channel's history, then the
new message: sent to the same slot as last time, only what is new since its last
request is processed. Sent to whichever slot is free, it lands on another character's
cache and the whole prompt is read again (five or six times a reply, for a mixture).

Characters take slots in the order they first ask; the last slot is kept for calls that
belong to no character (routing, votes). With more characters than slots the surplus
ones are left to the server's own choice (it picks the slot whose cache matches best).
"""

from __future__ import annotations

from brain.bounded import BoundedDict

MAX_KEYS = 256  # distinct characters remembered per server (a config holds a handful)


class SlotPins:
    """Which slot of one server each cache key (a character's name) is sent to."""

    def __init__(self) -> None:
        self._slots: BoundedDict[str, int] = BoundedDict(MAX_KEYS)

    def slot_for(self, key: str | None, slots: int) -> int | None:
        """The slot for `key` on a server with `slots` slots; None: let the server choose."""
        if slots <= 1:
            return None
        spare = slots - 1
        if key is None:
            return spare
        slot = self._slots.get(key)
        if slot is None:
            taken = set(self._slots.values())
            free = [s for s in range(spare) if s not in taken]
            if not free:
                return None
            slot = self._slots[key] = free[0]
        return slot if slot < spare else None
