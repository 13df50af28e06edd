"""Aggregates over traces: statistics by group (grouping.py), and tag discovery."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import FilterSyntaxError, InvalidQuery
from .filters import field_getter, parse_field, parse_filter
from .filters.evaluate import now_ms
from .filters.fields import ATTRIBUTES
from .grouping import Groups, nearest_rank, shown
from .query import select

if TYPE_CHECKING:
    from .backend import ReadView

__all__ = ["GroupStats", "group_stats", "nearest_rank", "tag_keys", "tag_values"]

SORTS = ("count", "errors", "error_rate", "mean", "p50", "p95", "p99", "max", "group")


def natural_key(value: str) -> tuple:
    """``v2`` before ``v10``, ``9`` before ``10``: digit runs compare as numbers."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", value)
        if part
    )


@dataclass
class GroupStats:
    group_names: list[str]
    rows: list[dict[str, Any]]
    unit: str = "trace"  # what a row counts: traces, or spans when grouped by a span field


def _group_field(text: str) -> Any:
    f = parse_field(text.strip())
    bad_attribute = f.kind == "attribute" and f.key not in ATTRIBUTES.values()
    if f.kind in ("unknown", "assessment", "prompt") or bad_attribute or f.key == "content":
        raise FilterSyntaxError(
            f"cannot group by {text!r}: use tags.KEY, metadata.KEY, an attribute, span.name, "
            "span.type, span.status or span.attributes.KEY",
            text,
            0,
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
    """Per group of traces, or, when a ``span.*`` key is among ``group_by``, per group of
    spans: then ``count`` counts spans, ``errors`` spans with status ERROR, and the
    percentiles are of span durations (per-span-type latency with ``span.type``)."""
    if sort not in SORTS:
        raise InvalidQuery(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
    fields = [_group_field(g) for g in group_by]
    getters = [(f.kind == "span", field_getter(f)) for f in fields]
    per_span = any(on_span for on_span, _g in getters)
    node, now = parse_filter(filter_string), now_ms()
    pushed = getattr(snapshot, "group_rows", None)  # a database groups by itself
    rows = pushed(fields, node, now, experiment_ids) if pushed is not None else None
    if rows is None:
        rows = _group_docs(snapshot, getters, per_span, node, now, experiment_ids)
    if sort == "group":
        rows.sort(key=lambda r: [natural_key(g) for g in r["group"]])
    else:
        col = sort if sort in ("count", "errors", "error_rate") else f"{sort}_ms"

        def by_col(r: dict[str, Any]) -> tuple[float, list[str]]:
            v = r[col]
            return (-(v if v is not None else -math.inf), r["group"])

        rows.sort(key=by_col)
    return GroupStats([str(f) for f in fields], rows, "span" if per_span else "trace")


def _group_docs(
    snapshot: ReadView,
    getters: list[tuple[bool, Any]],
    per_span: bool,
    node: Any,
    now: int,
    experiment_ids: Iterable[str] | None,
) -> list[dict[str, Any]]:
    groups = Groups()
    for doc in select(snapshot, node, experiment_ids, now):
        if not per_span:
            key = tuple(shown(g(doc)) for _s, g in getters)
            groups.add(key, doc.get("status") == "ERROR", doc.get("execution_time_ms"))
            continue
        for span in snapshot.spans(doc):
            key = tuple(shown(g(span) if on_span else g(doc)) for on_span, g in getters)
            end, start = span.get("end_time_ns"), span.get("start_time_ns") or 0
            took = None if end is None else (end - start) / 1e6
            groups.add(key, span.get("status") == "ERROR", took)
    return groups.rows()


def tag_keys(
    snapshot: ReadView,
    filter_string: str | None = None,
    experiment_ids: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Every tag key: how many traces carry it and how many distinct values it has."""
    node, now = parse_filter(filter_string), now_ms()
    pushed = getattr(snapshot, "tag_key_rows", None)
    found = pushed(node, now, experiment_ids) if pushed is not None else None
    if found is None:
        traces: Counter[str] = Counter()
        values: dict[str, set[str]] = defaultdict(set)
        for doc in select(snapshot, node, experiment_ids, now):
            for k, v in doc["tags"].items():
                traces[k] += 1
                values[k].add(v)
        found = [(k, n, len(values[k])) for k, n in traces.items()]
    return [
        {"key": k, "traces": n, "values": v}
        for k, n, v in sorted(found, key=lambda kv: (-kv[1], kv[0]))
    ]


def tag_values(
    snapshot: ReadView,
    key: str,
    filter_string: str | None = None,
    experiment_ids: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """The values of tag ``key`` with the number of traces carrying each."""
    node, now = parse_filter(filter_string), now_ms()
    pushed = getattr(snapshot, "tag_value_rows", None)
    found = pushed(key, node, now, experiment_ids) if pushed is not None else None
    if found is None:
        counts: Counter[str] = Counter()
        for doc in select(snapshot, node, experiment_ids, now):
            v = doc["tags"].get(key)
            if v is not None:
                counts[v] += 1
        found = list(counts.items())
    return [{"value": v, "traces": n} for v, n in sorted(found, key=lambda kv: (-kv[1], kv[0]))]
