"""Full-text search of a channel's user turns, in the database's own engine.

The dense search finds what a message means; this finds the rare words it shares with an
old turn (a name, a place, a flight number), which an encoder trained for sentence
similarity may rank low. SQLite answers with FTS5 and `bm25()`, PostgreSQL with a
`tsvector` index and `ts_rank` (migration 0010 builds both). Their scores differ: bm25
weighs each shared word by how rare it is in the database (a word in a few of hundreds of
turns scores 3-6; in a handful of turns, next to nothing), ts_rank counts shared words
(one word once scores 0.0608, `TS_RANK_ONE_WORD`, so it is divided by that). Each is then
squashed into [0, 1) (score / (score + 1)) before the memory adds it, weighted, to the
cosine similarity (`brain.memory.ranking`).

A message's words are searched for with OR: a question rarely repeats every word of the
fact it asks about. Common words are left out (PostgreSQL's English dictionary drops its
own; FTS5 has none), or every turn with "my" in it would match.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.engine import Engine

TS_RANK_ONE_WORD = 0.0607927  # ts_rank of a document matching one query word once
MAX_TERMS = 16  # a pasted page searches for its first words only
STOP_WORDS = frozenset(
    """a about again all also am an and any are as at be been being but by can could did do
    does doing don done for from get got had has have having he her here hers him his how i
    if in into is it its just let like me mine more most much my no not now of off on once
    only or our ours out over own please remember same she should so some still such tell
    than that the their theirs them then there these they this those to too up us very was
    we were what when where which who whom whose why will with would yes you your yours""".split()
)

SQLITE_QUERY = text(
    "SELECT turn_search.rowid, -bm25(turn_search) FROM turn_search "
    "JOIN turns ON turns.id = turn_search.rowid "
    "WHERE turn_search MATCH :terms AND turns.channel = :channel AND turns.id < :before "
    "ORDER BY bm25(turn_search) LIMIT :limit"
)
POSTGRESQL_QUERY = text(
    "SELECT id, ts_rank(to_tsvector('english', content), query) AS score "
    "FROM turns, to_tsquery('english', :terms) AS query "
    "WHERE to_tsvector('english', content) @@ query "
    "AND role = 'user' AND kind = 'text' AND channel = :channel AND id < :before "
    "ORDER BY score DESC LIMIT :limit"
)


def search_terms(message: str) -> list[str]:
    """The words of `message` worth searching for: lowercased, without common words."""
    words = re.findall(r"\w+", message.casefold())
    kept = [w for w in dict.fromkeys(words) if len(w) > 1 and w not in STOP_WORDS]
    return kept[:MAX_TERMS]


class LexicalSearch:
    """The channel's user turns sharing words with a message (blocking: run in a thread)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name

    def search(self, channel: str, message: str, before: int, limit: int) -> dict[int, float]:
        """{turn id: score in [0, 1)} of at most `limit` turns before `before`, best first."""
        terms = search_terms(message)
        if not terms:
            return {}
        if self._dialect == "sqlite":
            query = SQLITE_QUERY
            match = " OR ".join(f'"{term}"' for term in terms)  # quoted: a word, never syntax
        elif self._dialect == "postgresql":
            query = POSTGRESQL_QUERY
            match = " | ".join(f"'{term}'" for term in terms)  # \w+ words: no quote inside
        else:
            return {}
        parameters = {"terms": match, "channel": channel, "before": before, "limit": limit}
        with self._engine.connect() as connection:
            rows = connection.execute(query, parameters).all()
        scale = 1 / TS_RANK_ONE_WORD if self._dialect == "postgresql" else 1.0
        return {int(turn_id): _squashed(float(score) * scale) for turn_id, score in rows}


def _squashed(score: float) -> float:
    score = max(score, 0.0)
    return score / (score + 1.0)
