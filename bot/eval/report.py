"""What `mombot eval` reports: per configuration, the share right with its 95% interval,
median time and tokens, and what each member adds to the mixture."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass

Z95 = 1.959964  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Outcome:
    """One configuration's reply to one question, as checked."""

    config: str
    question: int
    tag: str
    right: bool
    read: str | None  # what the answer check read out of the reply
    seconds: float
    tokens: int
    reply: str
    error: str | None = None


@dataclass(frozen=True)
class Row:
    config: str
    asked: int
    right: int
    low: float  # 95% Wilson interval of the share right
    high: float
    median_s: float
    median_tokens: float
    errors: int
    adds: float | None  # mixture's share minus this leave-one-out's (what the member adds)

    @property
    def share(self) -> float:
        return self.right / self.asked if self.asked else 0.0


def wilson(right: int, asked: int) -> tuple[float, float]:
    """The 95% Wilson score interval of right/asked: sound at 0%, 100% and small counts,
    where the normal approximation is not."""
    if asked == 0:
        return 0.0, 1.0
    share = right / asked
    z2 = Z95 * Z95
    centre = (share + z2 / (2 * asked)) / (1 + z2 / asked)
    spread = Z95 * math.sqrt(share * (1 - share) / asked + z2 / (4 * asked * asked))
    spread /= 1 + z2 / asked
    return max(0.0, centre - spread), min(1.0, centre + spread)


def summarize(outcomes: list[Outcome], order: list[str], only: set[str]) -> list[Row]:
    """One row per configuration, in `order`, limited to `only` when given."""
    by_config: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_config.setdefault(outcome.config, []).append(outcome)
    mixture = by_config.get("mixture", [])
    mixture_share = sum(o.right for o in mixture) / len(mixture) if mixture else None
    rows = []
    for name in order:
        got = by_config.get(name, [])
        if not got or (only and name not in only):
            continue
        right = sum(o.right for o in got)
        low, high = wilson(right, len(got))
        adds = None
        if name.startswith("mixture - ") and mixture_share is not None:
            adds = mixture_share - right / len(got)
        rows.append(
            Row(
                config=name,
                asked=len(got),
                right=right,
                low=low,
                high=high,
                median_s=statistics.median(o.seconds for o in got),
                median_tokens=statistics.median(o.tokens for o in got),
                errors=sum(o.error is not None for o in got),
                adds=adds,
            )
        )
    return rows


def report_table(rows: list[Row], questions: int) -> str:
    """The table for the terminal."""
    lines = [
        f"{questions} questions; right: share answered right, 95% interval (Wilson); "
        "adds: the mixture's share minus the mixture's without that member",
        "",
        f"{'configuration':<22} {'right':>6} {'95% interval':>14} {'median s':>9} "
        f"{'tokens':>7} {'errors':>6} {'adds':>7}",
    ]
    for row in rows:
        adds = "" if row.adds is None else f"{row.adds * 100:+.0f} pt"
        lines.append(
            f"{row.config:<22} {row.share * 100:5.0f}% {row.low * 100:6.0f}–{row.high * 100:3.0f}% "
            f"{row.median_s:9.1f} {row.median_tokens:7.0f} {row.errors:6d} {adds:>7}"
        )
    return "\n".join(lines)


def report_json(rows: list[Row], outcomes: list[Outcome], only: set[str]) -> str:
    """Rows and every outcome (what was read from each reply), for tools."""
    return json.dumps(
        {
            "configurations": [{**asdict(row), "share": row.share} for row in rows],
            "outcomes": [asdict(o) for o in outcomes if not only or o.config in only],
        },
        indent=1,
        ensure_ascii=False,
    )
