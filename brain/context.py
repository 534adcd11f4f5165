"""Fitting a conversation into a model's context window, counted in real tokens.

The system prompt and the new user message are always kept; history turns are
added newest first while they fit, leaving a reserve for the reply. Token counts
come from the endpoint's tokenizer (see `ModelClient.count_tokens`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from brain.errors import ContextTooLong
from brain.history import StoredTurn
from brain.llm import Message, ModelClient

# Chat templates wrap each message in role markers and separators (ChatML: about 5
# tokens); the generation prompt and BOS add a few more. Counted on the safe side.
PER_MESSAGE_OVERHEAD = 8
PROMPT_OVERHEAD = 16
MIN_USER_TOKENS = 16
# Turns read per database call while filling the window: the first page is small (most
# prompts fill up within it); each next one asks for about as many turns as the rest of
# the budget holds at the average cost so far (with a margin), so a window that holds
# hundreds of short turns takes few calls and one of long turns reads few spare rows.
FIRST_HISTORY_PAGE = 64
MIN_HISTORY_PAGE = 16
MAX_HISTORY_PAGE = 512

TurnPager = Callable[[int | None, int], Awaitable[list[StoredTurn]]]
"""(before_id, limit) -> older turns, newest first."""


@dataclass(frozen=True)
class PromptPlan:
    """The messages to send and what trimming did to get there."""

    messages: list[Message]
    prompt_tokens: int
    kept_turns: int
    user_truncated: bool


def reply_reserve(window: int, max_tokens: int) -> int:
    """Tokens kept free for the answer: the character's max_tokens, at most half the window."""
    return max(1, min(max_tokens, window // 2))


async def build_prompt(
    client: ModelClient,
    model: str,
    *,
    window: int,
    reserve: int,
    system: str,
    user_text: str,
    older_turns: TurnPager,
    before_id: int | None,
    first_page_size: int = FIRST_HISTORY_PAGE,
) -> PromptPlan:
    """Build [system, *history, user] so prompt + reserve never exceeds `window`."""

    async def cost(text: str) -> int:
        return await client.count_tokens(model, text) + PER_MESSAGE_OVERHEAD

    budget = window - reserve - PROMPT_OVERHEAD
    budget -= await cost(system)
    if budget < MIN_USER_TOKENS + PER_MESSAGE_OVERHEAD:
        raise ContextTooLong(
            f"The persona is too long for the model's context window ({window} tokens).",
            detail=f"system prompt leaves {budget} tokens",
        )
    user_text, user_cost, truncated = await _fit_text(user_text, budget, cost, window)
    budget -= user_cost

    known_count = client.known_token_counter(model)
    kept: list[StoredTurn] = []
    spent = 0
    cursor = before_id
    full = False
    size = first_page_size
    while not full:
        page = await older_turns(cursor, size)
        for turn in page:
            tokens = known_count(turn.content)
            if tokens is None:
                tokens = await client.count_tokens(model, turn.content)
            turn_cost = tokens + PER_MESSAGE_OVERHEAD
            if turn_cost > budget:
                full = True
                break
            budget -= turn_cost
            spent += turn_cost
            kept.append(turn)
        if full or len(page) < size:
            break
        cursor = page[-1].id
        average = spent / len(kept)
        size = max(MIN_HISTORY_PAGE, min(MAX_HISTORY_PAGE, int(budget / average * 1.25) + 1))

    messages: list[Message] = [{"role": "system", "content": system}]
    messages += [{"role": t.role, "content": t.content} for t in reversed(kept)]
    messages.append({"role": "user", "content": user_text})
    used = window - reserve - budget
    return PromptPlan(messages, used, len(kept), truncated)


async def _fit_text(
    text: str, budget: int, cost: Callable[[str], Awaitable[int]], window: int
) -> tuple[str, int, bool]:
    """Cut `text` (keeping its start) until it costs at most `budget` tokens."""
    # A token is at least one character; no need to send megabytes to the tokenizer.
    truncated = False
    if len(text) > window * 32:
        text, truncated = text[: window * 32], True
    text_cost = await cost(text)
    for _ in range(12):
        if text_cost <= budget:
            return text, text_cost, truncated
        keep = int(len(text) * (budget - PER_MESSAGE_OVERHEAD) / text_cost * 0.9)
        text, truncated = text[: max(keep, 0)], True
        text_cost = await cost(text)
    raise ContextTooLong("Your message does not fit the model's context window.")
