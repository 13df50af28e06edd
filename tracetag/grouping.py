"""Counts, errors and durations per group, for ``stats``: shared by the scan of documents
(analytics.py) and the file store's columns (store/columns.py), so both give the same rows.

Percentiles are nearest-rank (the smallest value with at least p% of values at or below it),
so every reported percentile is a duration some trace actually had.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

__all__ = ["NONE_GROUP", "Groups", "nearest_rank", "shown"]

NONE_GROUP = "(none)"


def shown(value: Any) -> str:
    """A group's name for a value (absent: ``(none)``)."""
    return NONE_GROUP if value is None else str(value)


def nearest_rank(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class Groups:
    """Counts, errors and durations per group key (a tuple of group names)."""

    def __init__(self) -> None:
        self.durations: dict[tuple[str, ...], list[float]] = defaultdict(list)
        self.counts: Counter[tuple[str, ...]] = Counter()
        self.errors: Counter[tuple[str, ...]] = Counter()

    def add(self, key: tuple[str, ...], error: bool, duration: float | None) -> None:
        self.counts[key] += 1
        self.errors[key] += error
        if duration is not None:
            self.durations[key].append(duration)

    def extend(self, key: tuple[str, ...], count: int, errors: int, durations: list[Any]) -> None:
        """``count`` traces at once, ``errors`` of them errors, with these durations."""
        self.counts[key] += count
        self.errors[key] += errors
        if durations:
            self.durations[key].extend(durations)

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for key, n in self.counts.items():
            ds = sorted(self.durations.get(key, []))
            rows.append(
                {
                    "group": list(key),
                    "count": n,
                    "errors": self.errors[key],
                    "error_rate": self.errors[key] / n,
                    "mean_ms": (sum(ds) / len(ds)) if ds else None,
                    "p50_ms": nearest_rank(ds, 50),
                    "p95_ms": nearest_rank(ds, 95),
                    "p99_ms": nearest_rank(ds, 99),
                    "max_ms": ds[-1] if ds else None,
                }
            )
        return rows
