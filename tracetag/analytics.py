"""Aggregates over traces: statistics by group, and tag discovery.

Percentiles are nearest-rank (the smallest value with at least p% of values at or below it),
so every reported percentile is a duration some trace actually had.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import FilterSyntaxError, InvalidQuery
from .filters import field_getter, parse_field, parse_filter
from .filters.fields import ATTRIBUTES
from .query import select

if TYPE_CHECKING:
    from .backend import ReadView

__all__ = ["GroupStats", "group_stats", "nearest_rank", "tag_keys", "tag_values"]

NONE_GROUP = "(none)"
SORTS = ("count", "errors", "error_rate", "mean", "p50", "p95", "p99", "max", "group")


def natural_key(value: str) -> tuple:
    """``v2`` before ``v10``, ``9`` before ``10``: digit runs compare as numbers."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", value)
        if part
    )


def nearest_rank(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class GroupStats:
    group_names: list[str]
    rows: list[dict[str, Any]]


def _group_field(text: str) -> Any:
    f = parse_field(text.strip())
    if f.kind == "unknown" or (f.kind == "attribute" and f.key not in ATTRIBUTES.values()):
        raise FilterSyntaxError(
            f"cannot group by {text!r}: use tags.KEY, metadata.KEY or an attribute", text, 0
        )
    if f.kind in ("tag", "metadata") and not f.key:
        raise FilterSyntaxError(f"cannot group by {text!r}: empty key", text, len(text))
    return f


def group_stats(
    snapshot: ReadView,
    group_by: Sequence[str],
    filter_string: str | None = None,
    experiment_ids: Iterable[str] | None = None,
    sort: str = "count",
) -> GroupStats:
    if sort not in SORTS:
        raise InvalidQuery(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
    fields = [_group_field(g) for g in group_by]
    getters = [field_getter(f) for f in fields]
    durations: dict[tuple, list[float]] = defaultdict(list)
    counts: Counter[tuple] = Counter()
    errors: Counter[tuple] = Counter()
    for doc in select(snapshot, parse_filter(filter_string), experiment_ids):
        key = tuple(NONE_GROUP if (v := g(doc)) is None else str(v) for g in getters)
        counts[key] += 1
        if doc.get("status") == "ERROR":
            errors[key] += 1
        if doc.get("execution_time_ms") is not None:
            durations[key].append(doc["execution_time_ms"])
    rows: list[dict[str, Any]] = []
    for key, n in counts.items():
        ds = sorted(durations.get(key, []))
        rows.append(
            {
                "group": list(key),
                "count": n,
                "errors": errors[key],
                "error_rate": errors[key] / n,
                "mean_ms": (sum(ds) / len(ds)) if ds else None,
                "p50_ms": nearest_rank(ds, 50),
                "p95_ms": nearest_rank(ds, 95),
                "p99_ms": nearest_rank(ds, 99),
                "max_ms": ds[-1] if ds else None,
            }
        )
    if sort == "group":
        rows.sort(key=lambda r: [natural_key(g) for g in r["group"]])
    else:
        col = sort if sort in ("count", "errors", "error_rate") else f"{sort}_ms"

        def by_col(r: dict[str, Any]) -> tuple[float, list[str]]:
            v = r[col]
            return (-(v if v is not None else -math.inf), r["group"])

        rows.sort(key=by_col)
    return GroupStats([str(f) for f in fields], rows)


def tag_keys(
    snapshot: ReadView,
    filter_string: str | None = None,
    experiment_ids: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Every tag key: how many traces carry it and how many distinct values it has."""
    traces: Counter[str] = Counter()
    values: dict[str, set[str]] = defaultdict(set)
    for doc in select(snapshot, parse_filter(filter_string), experiment_ids):
        for k, v in doc["tags"].items():
            traces[k] += 1
            values[k].add(v)
    return [
        {"key": k, "traces": n, "values": len(values[k])}
        for k, n in sorted(traces.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def tag_values(
    snapshot: ReadView,
    key: str,
    filter_string: str | None = None,
    experiment_ids: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """The values of tag ``key`` with the number of traces carrying each."""
    counts: Counter[str] = Counter()
    for doc in select(snapshot, parse_filter(filter_string), experiment_ids):
        v = doc["tags"].get(key)
        if v is not None:
            counts[v] += 1
    return [
        {"value": v, "traces": n} for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
