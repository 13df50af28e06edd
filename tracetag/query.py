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
from typing import TYPE_CHECKING, Any

import orjson

from .errors import FilterSyntaxError, InvalidQuery
from .filters import ast as A
from .filters import compile_filter, field_getter, parse_field, parse_filter, required_bytes
from .filters.evaluate import now_ms
from .filters.fields import ATTRIBUTES, NUMERIC_ATTRIBUTES

if TYPE_CHECKING:
    from .backend import ReadView

__all__ = ["OrderKey", "SearchPage", "parse_order_by", "search", "select"]

_DIRECTIONS = {"ASC": False, "DESC": True}
# Spellings people reach for; each gets a hint instead of being read as part of a key.
_DIRECTION_TYPOS = re.compile(r"(?i)(ascending|descending|asc\w+|desc\w+|dsc|des|up|down)")


def _split_order_items(texts: Iterable[str]) -> list[tuple[str, str, int]]:
    """(item, the text it came from, its offset): MLflow's habit of one comma-separated string
    ("timestamp DESC, execution_time_ms ASC") works as well as repeated options. Commas inside
    backticks or double quotes belong to a key."""
    items: list[tuple[str, str, int]] = []
    for text in texts:
        quote = ""
        start = 0
        for i, c in enumerate(text):
            if quote:
                if c == quote:
                    quote = ""
            elif c in '`"':
                quote = c
            elif c == ",":
                items.append((text[start:i], text, start))
                start = i + 1
        items.append((text[start:], text, start))
    return items


@dataclass(frozen=True)
class OrderKey:
    field: A.Field
    desc: bool = False

    def __str__(self) -> str:
        return f"{self.field} {'DESC' if self.desc else 'ASC'}"


def parse_order_by(order_by: Iterable[str] | None) -> list[OrderKey]:
    """``["tags.model_version", "timestamp_ms DESC"]`` -> keys, completed with the tie-breakers."""
    keys: list[OrderKey] = []
    for item, text, offset in _split_order_items(order_by or []):
        if len(text) > 10_000:
            raise FilterSyntaxError("order_by key too long", text[:80], 0)
        pos = offset + len(item) - len(item.lstrip())
        words = item.split()
        if not words:
            raise FilterSyntaxError("empty order_by key", text, pos)
        desc = False
        last = words[-1]
        if len(words) > 1 and last.upper() in _DIRECTIONS:
            desc = _DIRECTIONS[last.upper()]
            words.pop()
        elif len(words) > 1 and _DIRECTION_TYPOS.fullmatch(last):
            raise FilterSyntaxError(
                f"unknown direction {last!r}; use ASC or DESC", text, offset + item.rindex(last)
            )
        name = " ".join(words)
        quoted = name.partition(".")[2][:1] in ("`", '"')
        if len(words) > 1 and not quoted:
            raise FilterSyntaxError(
                f"cannot sort by {item.strip()!r}: give one key and ASC or DESC (a tag key "
                "with spaces is quoted: tags.`review status`); for several keys repeat "
                "--order-by or separate them with commas",
                text,
                pos,
            )
        f = parse_field(name)
        if f.kind == "unknown" or (f.kind == "attribute" and f.key not in ATTRIBUTES.values()):
            raise FilterSyntaxError(
                f"unknown order_by key {name!r}; use an attribute such as "
                "timestamp_ms, execution_time_ms, status, name, or tags.KEY / metadata.KEY",
                text,
                pos,
            )
        if f.kind in ("tag", "metadata") and not f.key:
            raise FilterSyntaxError("empty key in order_by", text, pos + len(name))
        if any(k.field == f for k in keys):
            raise FilterSyntaxError(f"order_by names {f} twice", text, pos)
        keys.append(OrderKey(f, desc))
    for f, desc in (
        (A.Field("attribute", "timestamp_ms"), True),
        (A.Field("attribute", "trace_id"), False),
    ):
        if not any(k.field == f for k in keys):
            keys.append(OrderKey(f, desc))
    return keys


class _Desc:
    """Reverses the order of a string inside a sort tuple[Any, ...]."""

    __slots__ = ("v",)

    def __init__(self, v: Any):
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.v < self.v)

    def __gt__(self, other: _Desc) -> bool:
        return bool(other.v > self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.v == other.v

    def __hash__(self) -> int:
        return hash(self.v)


def is_newest_first(order: Any) -> bool:
    """Whether ``order`` (the search's keys) is the default: newest first, ties by trace id."""
    try:
        keys = [(k.field.kind, k.field.key, k.desc) for k in order or ()]
    except AttributeError:
        return False
    return keys == [("attribute", "timestamp_ms", True), ("attribute", "trace_id", False)]


def _row_key(keys: list[OrderKey]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A document's sort key (``_sort_key(keys)(_raw_key(keys)(d))``) in one step: written
    out for the default order, which every ``search --all`` of many matches sorts by."""
    if is_newest_first(keys):

        def newest_first(d: dict[str, Any]) -> tuple[Any, ...]:
            ts, tid = d.get("timestamp_ms"), d.get("trace_id")
            return ((1, 0) if ts is None else (0, -ts), (1, 0) if tid is None else (0, tid))

        return newest_first
    raw_of, sort_key = _raw_key(keys), _sort_key(keys)
    return lambda d: sort_key(raw_of(d))


def _raw_key(keys: list[OrderKey]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    getters = [field_getter(k.field) for k in keys]
    return lambda d: tuple(g(d) for g in getters)


def _sort_key(keys: list[OrderKey]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """Raw values -> a comparable tuple[Any, ...]: absent last either way, DESC reversed."""
    numeric = [k.field.kind == "attribute" and k.field.key in NUMERIC_ATTRIBUTES for k in keys]
    desc = [k.desc for k in keys]

    def key(raw: tuple[Any, ...]) -> tuple[Any, ...]:
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


def _encode_token(raw: tuple[Any, ...], fp: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"k": list(raw), "f": fp})).decode().rstrip("=")


def _decode_token(token: str, fp: str, keys: list[OrderKey]) -> tuple[Any, ...]:
    """The sort key a token holds, checked against the search's keys: a token is input like
    any other and may have been edited or made up."""
    invalid = InvalidQuery("invalid page token (pass the token printed with the previous page)")
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token[:4096] + "=" * (-len(token) % 4)))
        raw = tuple(data["k"])
        ok = data["f"] == fp
    except (ValueError, KeyError, TypeError):
        raise invalid from None
    if not ok:
        raise InvalidQuery(
            "page token belongs to a different search (filter, order or experiments changed)"
        )
    if len(raw) != len(keys):
        raise invalid
    for v, k in zip(raw, keys, strict=True):
        numeric = k.field.kind == "attribute" and k.field.key in NUMERIC_ATTRIBUTES
        expected = int if numeric else str
        if v is not None and (isinstance(v, bool) or not isinstance(v, expected)):
            raise invalid
    return raw


@dataclass
class SearchPage:
    """One page of results, in order. Matches are held as their compact JSON bytes where
    possible and parsed again on iteration, so a page of 100,000 traces costs about the size of
    its JSON, not of 100,000 dicts."""

    items: list[bytes | dict[str, Any]]
    token: str | None
    ids: list[str] | None = None  # the items' trace ids, when known without parsing them

    def __len__(self) -> int:
        return len(self.items) if self.ids is None else len(self.ids)

    def trace_ids(self) -> list[str]:
        """The trace ids in order (``-o ids``): without parsing the items again."""
        if self.ids is not None:
            return self.ids
        return [d["trace_id"] for d in self]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        loads = orjson.loads
        for item in self.items:
            yield loads(item) if isinstance(item, bytes) else item


def select(
    snapshot: ReadView,
    node: A.Node | None,
    experiment_ids: Iterable[str] | None = None,
    now: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every document matching ``node`` (True, not unknown) in the given experiments."""
    for doc, _raw in _select_raw(snapshot, node, experiment_ids, now, progress):
        yield doc


def _select_raw(
    snapshot: ReadView,
    node: A.Node | None,
    experiment_ids: Iterable[str] | None = None,
    now: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    **pushdown: Any,
) -> Iterator[tuple[dict[str, Any], bytes | None]]:
    now = now_ms() if now is None else now
    rows: Iterator[tuple[dict[str, Any], bytes | None]] = snapshot.select_raw(
        _compiled(snapshot, node, now),
        required=required_bytes(node),
        experiment_ids=None if experiment_ids is None else {str(e) for e in experiment_ids},
        progress=progress,
        node=node,
        now=now,
        **pushdown,
    )
    return rows


def _compiled(snapshot: ReadView, node: A.Node | None, now: int) -> Any:
    return compile_filter(
        node, now, spans_of=snapshot.spans, record_of=getattr(snapshot, "span_record", None)
    )


def search(
    snapshot: ReadView,
    filter_string: str | A.Node | None = None,
    experiment_ids: list[str] | None = None,
    order_by: Iterable[str] | None = None,
    max_results: int | None = None,
    page_token: str | None = None,
    now: int | None = None,
    ids_only: bool = False,
) -> SearchPage:
    """A page of matches. ``ids_only``: the page holds the matches' ids alone (``trace_ids``;
    iterating it gives nothing), so every match of a big search costs its id, not its JSON."""
    node = parse_filter(filter_string) if isinstance(filter_string, str | None) else filter_string
    keys = parse_order_by(order_by)
    if max_results is not None and max_results < 1:
        raise InvalidQuery(f"max_results must be at least 1, got {max_results}")
    exps = None if experiment_ids is None else [str(e) for e in experiment_ids]
    fp = _fingerprint(node, keys, exps)
    raw_of = _raw_key(keys)
    sort_key = _sort_key(keys)
    after_raw = _decode_token(page_token, fp, keys) if page_token else None
    ids_only = ids_only and max_results is None  # (a page's token is made of its last item)
    every = ids_only and after_raw is None and is_newest_first(keys)
    listed = getattr(snapshot, "search_ids", None) if every else None
    if listed is not None:
        now = now_ms() if now is None else now
        found = listed(node, _compiled(snapshot, node, now), exps)
        if found is not None:
            return SearchPage([], None, found)
    pushdown: dict[str, Any] = {"order": keys, "after": after_raw}
    if max_results is not None:
        pushdown["limit"] = max_results + 1
    # (The trace id rides along, so that ids come out without a second parse.)
    row_key = _row_key(keys)
    rows: Iterable[tuple[tuple[Any, ...], str, bytes | dict[str, Any] | None]] = (
        (row_key(d), d["trace_id"], None if ids_only else d if raw is None else raw)
        for d, raw in _select_raw(snapshot, node, exps, now, **pushdown)
    )
    if after_raw is not None:
        after = sort_key(after_raw)
        rows = (r for r in rows if r[0] > after)
    if max_results is None:
        page = sorted(rows, key=lambda r: r[0])
        more = False
    else:
        page = heapq.nsmallest(max_results + 1, rows, key=lambda r: r[0])
        more = len(page) > max_results
        page = page[:max_results]
    items = [] if ids_only else [item for _k, _t, item in page if item is not None]
    result = SearchPage(items, None, [t for _k, t, _i in page])
    if more and page:
        last = next(iter(SearchPage(result.items[-1:], None)))
        result.token = _encode_token(raw_of(last), fp)
    return result
