"""Search: filter, order and page over a store snapshot.

Ordering follows MLflow: the caller's keys, then ``timestamp_ms DESC`` and ``trace_id ASC``
unless already named, so the order is total. Absent values sort last in both directions.
Page tokens are keyset tokens: they hold the last row's sort key, so adding or retagging traces
between pages never repeats or skips a row that stays in place.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import FilterSyntaxError
from .filters import ast as A
from .filters import compile_filter, field_getter, parse_field, parse_filter, required_bytes
from .filters.parser import ATTRIBUTES, NUMERIC_ATTRIBUTES

__all__ = ["OrderKey", "SearchPage", "parse_order_by", "search", "select"]

_ORDER_RE = re.compile(r"^\s*(.+?)(?:\s+(ASC|DESC))?\s*$", re.I | re.S)


@dataclass(frozen=True)
class OrderKey:
    field: A.Field
    desc: bool = False

    def __str__(self) -> str:
        return f"{self.field} {'DESC' if self.desc else 'ASC'}"


def parse_order_by(order_by: Iterable[str] | None) -> list[OrderKey]:
    """``["tags.model_version", "timestamp_ms DESC"]`` -> keys, completed with the tie-breakers."""
    keys: list[OrderKey] = []
    for text in order_by or []:
        m = _ORDER_RE.match(text)
        if not m or not m.group(1).strip():
            raise FilterSyntaxError("empty order_by key", text, 0)
        f = parse_field(m.group(1).strip())
        if f.kind == "unknown" or (f.kind == "attribute" and f.key not in ATTRIBUTES.values()):
            raise FilterSyntaxError(
                f"unknown order_by key {m.group(1).strip()!r}; use an attribute such as "
                "timestamp_ms, execution_time_ms, status, name, or tags.KEY / metadata.KEY",
                text,
                0,
            )
        if f.kind in ("tag", "metadata") and not f.key:
            raise FilterSyntaxError("empty key in order_by", text, len(m.group(1)))
        if any(k.field == f for k in keys):
            raise FilterSyntaxError(f"order_by names {f} twice", text, 0)
        keys.append(OrderKey(f, (m.group(2) or "ASC").upper() == "DESC"))
    for f, desc in (
        (A.Field("attribute", "timestamp_ms"), True),
        (A.Field("attribute", "trace_id"), False),
    ):
        if not any(k.field == f for k in keys):
            keys.append(OrderKey(f, desc))
    return keys


class _Desc:
    """Reverses the order of a string inside a sort tuple."""

    __slots__ = ("v",)

    def __init__(self, v: Any):
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return other.v < self.v

    def __gt__(self, other: _Desc) -> bool:
        return other.v > self.v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.v == other.v

    def __hash__(self) -> int:
        return hash(self.v)


def _raw_key(keys: list[OrderKey]) -> Callable[[dict], tuple]:
    getters = [field_getter(k.field) for k in keys]
    return lambda d: tuple(g(d) for g in getters)


def _sort_key(keys: list[OrderKey]) -> Callable[[tuple], tuple]:
    """Raw values -> a comparable tuple: absent last either way, DESC reversed."""
    numeric = [k.field.kind == "attribute" and k.field.key in NUMERIC_ATTRIBUTES for k in keys]
    desc = [k.desc for k in keys]

    def key(raw: tuple) -> tuple:
        out: list[tuple[int, Any]] = []
        for v, num, d in zip(raw, numeric, desc, strict=True):
            if v is None:
                out.append((1, 0))
            elif d:
                out.append((0, -v if num else _Desc(v)))
            else:
                out.append((0, v))
        return tuple(out)

    return key


def _fingerprint(
    node: A.Node | None, keys: list[OrderKey], experiment_ids: list[str] | None
) -> str:
    text = f"{node}|{[str(k) for k in keys]}|{sorted(experiment_ids or [])}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _encode_token(raw: tuple, fp: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"k": list(raw), "f": fp})).decode().rstrip("=")


def _decode_token(token: str, fp: str) -> tuple:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        raw = tuple(data["k"])
        ok = data["f"] == fp
    except (ValueError, KeyError, TypeError):
        raise FilterSyntaxError("invalid page token", token, 0) from None
    if not ok:
        raise FilterSyntaxError(
            "page token belongs to a different search (filter, order or experiments changed)",
            token,
            0,
        )
    return raw


@dataclass
class SearchPage:
    """One page of results, in order. Matches are held as their compact JSON bytes where
    possible and parsed again on iteration, so a page of 100,000 traces costs about the size of
    its JSON, not of 100,000 dicts."""

    items: list[bytes | dict]
    token: str | None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[dict]:
        loads = orjson.loads
        for item in self.items:
            yield loads(item) if isinstance(item, bytes) else item


def select(
    snapshot: Any,
    node: A.Node | None,
    experiment_ids: Iterable[str] | None = None,
    now: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[dict]:
    """Every document matching ``node`` (True, not unknown) in the given experiments."""
    for doc, _raw in _select_raw(snapshot, node, experiment_ids, now, progress):
        yield doc


def _select_raw(
    snapshot: Any,
    node: A.Node | None,
    experiment_ids: Iterable[str] | None = None,
    now: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[dict, bytes | None]]:
    return snapshot.select_raw(
        compile_filter(node, now),
        required=required_bytes(node),
        experiment_ids=None if experiment_ids is None else {str(e) for e in experiment_ids},
        progress=progress,
    )


def search(
    snapshot: Any,
    filter_string: str | A.Node | None = None,
    experiment_ids: list[str] | None = None,
    order_by: Iterable[str] | None = None,
    max_results: int | None = None,
    page_token: str | None = None,
    now: int | None = None,
) -> SearchPage:
    node = parse_filter(filter_string) if isinstance(filter_string, str | None) else filter_string
    keys = parse_order_by(order_by)
    if max_results is not None and max_results < 1:
        raise FilterSyntaxError(f"max_results must be at least 1, got {max_results}", "", 0)
    exps = None if experiment_ids is None else [str(e) for e in experiment_ids]
    fp = _fingerprint(node, keys, exps)
    raw_of = _raw_key(keys)
    sort_key = _sort_key(keys)
    rows: Iterable[tuple[tuple, bytes | dict]] = (
        (sort_key(raw_of(d)), d if raw is None else raw)
        for d, raw in _select_raw(snapshot, node, exps, now)
    )
    if page_token:
        after = sort_key(_decode_token(page_token, fp))
        rows = (r for r in rows if r[0] > after)
    if max_results is None:
        page = sorted(rows, key=lambda r: r[0])
        more = False
    else:
        page = heapq.nsmallest(max_results + 1, rows, key=lambda r: r[0])
        more = len(page) > max_results
        page = page[:max_results]
    result = SearchPage([item for _k, item in page], None)
    if more and page:
        last = next(iter(SearchPage(result.items[-1:], None)))
        result.token = _encode_token(raw_of(last), fp)
    return result
