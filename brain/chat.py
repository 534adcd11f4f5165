"""Plain chat: one character answers, streamed, within its model's context window."""

from __future__ import annotations

import contextlib
import logging

from brain.config import CharacterConfig
from brain.context import build_prompt, reply_reserve
from brain.errors import ContextTooLong
from brain.history import HistoryStore
from brain.llm import ModelClient
from brain.streaming import ReplyStreamer

log = logging.getLogger(__name__)

TRUNCATED_NOTE = "_(Your message was too long for me; I read only its beginning.)_"


class ChatResponder:
    """Answers a stored user turn as one character and returns the reply text."""

    def __init__(self, history: HistoryStore, clients: dict[str, ModelClient]) -> None:
        self._history = history
        self._clients = clients

    async def reply(
        self,
        character: CharacterConfig,
        *,
        channel: str,
        user_text: str,
        user_turn_id: int,
        streamer: ReplyStreamer,
    ) -> str:
        client = self._clients[character.endpoint]
        window = await client.context_window(character.model)
        reserve = reply_reserve(window, character.max_tokens)
        # If the server counts more tokens than we did, try once more with a smaller budget.
        for attempt, slack in enumerate((0, window // 4)):
            plan = await build_prompt(
                client,
                character.model,
                window=window,
                reserve=reserve + slack,
                system=character.persona,
                user_text=user_text,
                older_turns=lambda before, limit: self._history.recent(
                    channel, before_id=before, limit=limit
                ),
                before_id=user_turn_id,
            )
            log.debug(
                "%s: prompt ~%d tokens, %d history turns kept (window %d, reserve %d)",
                character.name, plan.prompt_tokens, plan.kept_turns, window, reserve,
            )  # fmt: skip
            stream = client.stream_chat(
                character.model,
                plan.messages,
                temperature=character.temperature,
                max_tokens=reserve,
                timeout_s=character.timeout_s,
                stage=character.name,
            )
            try:
                async with contextlib.aclosing(stream):
                    async for piece in stream:
                        await streamer.push(piece)
            except ContextTooLong:
                if attempt == 0 and not streamer.text:
                    log.warning("%s: server counted more tokens than we did; retrying", character.name)
                    continue
                raise
            footer = TRUNCATED_NOTE if plan.user_truncated else ""
            return await streamer.finish(footer)
        raise AssertionError("unreachable")
