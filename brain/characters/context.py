"""Fitting a conversation into a model's context window, counted in real tokens.

The system prompt and the new user message are always kept; history turns are
added newest first while they fit, leaving a reserve for the reply. Token counts
come from the endpoint's tokenizer (see `ModelClient.count_tokens`).

What changes from one message to the next comes last: the system prompt is the
character's persona alone, and material for this message only (the members' proposals
for the synthesizer, a /think round's answers) follows the user's message (`after`).
So a server that caches prompt prefixes (llama.cpp's slots, vLLM, Ollama) reads the
persona and the history once, and only the new turns on the next message.

Recalled turns (`brain.memory.memory`) also come with the user's message, before its text, in a
budget of their own that is kept whether or not anything is recalled, so the history's
budget does not move from message to message.

For the same reason the history's start does not creep forward one turn per message
once the window is full: the oldest turn kept last time (`floor`) stays the start while
everything from it on fits, and when it no longer does, the history is cut back to
about half its budget (as llama.cpp's own context shift discards half). The cached
prefix then survives the next several messages instead of none. (llama-server also moves
the turns kept after a cut into place in its cache instead of reading them again:
`n_cache_reuse`, see `brain.models.dialects`.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from brain.characters.recall import Recollection, fit_recollection
from brain.errors import ContextTooLong
from brain.history.store import StoredTurn
from brain.models.client import Message, ModelClient

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
KEEP_ON_TRIM = 0.5  # share of the history budget kept when the history must be cut back

TurnPager = Callable[[int | None, int], Awaitable[list[StoredTurn]]]
"""(before_id, limit) -> older turns, newest first."""


@dataclass(frozen=True)
class PromptPlan:
    """The messages to send and what trimming did to get there."""

    messages: list[Message]
    prompt_tokens: int
    kept_turns: int
    user_truncated: bool
    oldest_kept: int | None = None  # the id of the oldest history turn kept (the next floor)


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
    after: str = "",
    floor: int | None = None,
    recollection: Recollection | None = None,
) -> PromptPlan:
    """Build [system, *history, user (+ after)] so prompt + reserve never exceeds `window`.

    `after` (cut to at most half of what the system prompt leaves) is appended to the
    user's message: one message, so every chat template takes it. `floor`: the oldest
    turn the last prompt of this kind kept (see the module docstring); None fills the
    window. `recollection`: what the memory recalled, shown when older than the history.
    """

    async def cost(text: str) -> int:
        return await client.count_tokens(model, text) + PER_MESSAGE_OVERHEAD

    budget = window - reserve - PROMPT_OVERHEAD
    budget -= await cost(system)
    if budget < MIN_USER_TOKENS + PER_MESSAGE_OVERHEAD:
        raise ContextTooLong(
            f"The persona is too long for the model's context window ({window} tokens).",
            detail=f"system prompt leaves {budget} tokens",
        )
    if after:
        after, after_cost, _ = await _fit_text(after, budget // 2, cost, window)
        budget -= after_cost
    user_text, user_cost, truncated = await _fit_text(user_text, budget, cost, window)
    budget -= user_cost
    recall_budget = 0
    if recollection is not None:  # a quarter at most: the newest turns come first
        recall_budget = max(0, min(recollection.wanted, budget // 4))
        budget -= recall_budget

    known_count = client.known_token_counter(model)
    history_budget = budget
    kept: list[tuple[StoredTurn, int]] = []  # (turn, its cost), newest first
    spent = 0
    cursor = before_id
    full = at_floor = False
    size = first_page_size
    while not (full or at_floor):
        page = await older_turns(cursor, size)
        for turn in page:
            if floor is not None and turn.id < floor:
                at_floor = True
                break
            tokens = known_count(turn.content)
            if tokens is None:
                tokens = await client.count_tokens(model, turn.content)
            turn_cost = tokens + PER_MESSAGE_OVERHEAD
            if turn_cost > budget:
                full = True
                break
            budget -= turn_cost
            spent += turn_cost
            kept.append((turn, turn_cost))
        if full or at_floor or len(page) < size:
            break
        cursor = page[-1].id
        average = spent / len(kept)
        size = max(MIN_HISTORY_PAGE, min(MAX_HISTORY_PAGE, int(budget / average * 1.25) + 1))
    if full and floor is not None:  # the history from the floor outgrew the window: cut back
        while kept and spent > history_budget * KEEP_ON_TRIM:
            _, turn_cost = kept.pop()
            spent -= turn_cost
            budget += turn_cost

    if recollection is not None:
        start = kept[-1][0].id if kept else before_id
        recalled, recall_cost = "", 0
        if start is not None:
            recalled, recall_cost = await fit_recollection(recollection, start, recall_budget, cost)
        budget += recall_budget - recall_cost
        if recalled:
            user_text = f"{recalled}\n\n{user_text}"

    messages: list[Message] = [{"role": "system", "content": system}]
    messages += [{"role": t.role, "content": t.content} for t, _ in reversed(kept)]
    messages.append({"role": "user", "content": f"{user_text}\n\n{after}" if after else user_text})
    used = window - reserve - budget
    oldest = kept[-1][0].id if kept else None
    return PromptPlan(messages, used, len(kept), truncated, oldest)


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
