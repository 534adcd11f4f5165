"""The memory's config section (`[memory]`), beside the code it configures."""

from __future__ import annotations

from pydantic import Field, field_validator

from brain.strict_model import StrictModel


class MemoryConfig(StrictModel):
    """What a channel told the bot, remembered beyond the context window (and only there)."""

    enabled: bool = Field(
        True, description="Recall old turns and keep a rolling summary per channel."
    )
    recall_turns: int = Field(
        3, ge=1, le=20, description="Most old turns brought back into one prompt."
    )
    recall_tokens: int = Field(
        192,
        ge=32,
        description="Tokens of each prompt kept for recalled turns; the summary has its own "
        "share (summary_tokens) beside it. Both together: at most a quarter of the window.",
    )
    min_similarity: float = Field(
        0.4,
        ge=-1,
        le=2,
        description="Score an old turn needs to be recalled: its cosine similarity to the "
        "message plus lexical_weight times its full-text score (chosen on the tuning half "
        "of bench/data/memory_eval.jsonl by bench/bench_memory.py).",
    )
    lexical_weight: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Weight of the database's full-text score (FTS5 bm25 or PostgreSQL "
        "ts_rank, each squashed into 0-1) added to the cosine similarity; 0: dense only, "
        "the full-text index is not asked (on the evaluation set every weight above 0 "
        "found less with the bundled encoder: docs/BENCHMARKS.md).",
    )
    correction_similarity: float = Field(
        0.45,
        ge=-1,
        le=1.01,
        description="How alike a newer turn must be to a recalled one to be recalled with it, "
        "ranked first (a correction: 'actually it moved to Thursday'); above 1: never.",
    )
    summary_character: str = Field(
        "", description="Character that writes the rolling summary; empty: the synthesizer."
    )
    summary_tokens: int = Field(
        160, ge=16, le=2048, description="Longest summary, in tokens; its share of each prompt."
    )
    summary_every: int = Field(
        24,
        ge=2,
        description="Turns that must fall out of the window before the summary is rewritten.",
    )
    cache_vectors: int = Field(
        200_000,
        ge=1000,
        description="Stored turns' vectors kept in memory for search, over all channels "
        "(0.8 KB each); the least recently used channels are read again when needed.",
    )
    follow_user: bool = Field(
        False,
        description="What a user told the bot in a direct conversation may be recalled in "
        "their other direct conversations with it (never in a shared room, never another "
        "user's); another platform's only where linked_accounts names both accounts.",
    )
    linked_accounts: list[list[str]] = Field(
        default_factory=list,
        description="One person's accounts on each platform, for follow_user: [[\"discord:"
        '1234", "matrix:@ann:example.org"]] (platform:user id, as /persona keys them).',
    )

    @field_validator("linked_accounts")
    @classmethod
    def _each_account_once(cls, groups: list[list[str]]) -> list[list[str]]:
        seen: set[str] = set()
        for group in groups:
            for account in group:
                platform, _, user = account.partition(":")
                if not (platform and user):
                    raise ValueError(f"{account!r}: an account is platform:user id")
                if account in seen:
                    raise ValueError(f"{account!r} is linked twice: one person, one list")
                seen.add(account)
        return groups
