"""AST -> a predicate over stored trace documents, with SQL's three-valued logic.

Each node compiles to a closure returning True, False or None (unknown). A comparison with an
absent field is unknown; NOT unknown is unknown; AND / OR follow Kleene's tables; a trace
matches only when the whole filter is True. Another backend can compile the same AST instead.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from ..errors import InvalidInput
from . import ast as A
from .fields import NUMERIC_ATTRIBUTES, parse_iso_ms
from .patterns import compile_like, compile_rlike
from .spans import SPAN_KINDS, SUMMARISED, kind_spans, required_in_record, span_getter

__all__ = [
    "NUMBER_PATTERN",
    "Predicate",
    "compile_filter",
    "field_getter",
    "fields_of",
    "now_ms",
    "numeric_compare",
    "required_bytes",
    "tag_keys_read",
    "value_of",
]

Predicate = Callable[[dict[str, Any]], bool | None]
SpansOf = Callable[[dict[str, Any]], list[dict[str, Any]]]


RecordOf = Callable[[dict[str, Any]], bytes]


class Ctx:
    """What compiling needs besides the node: ``now()``, how to read a trace's spans, and
    (optionally) their raw record, to skip traces that cannot match without parsing."""

    def __init__(self, now: int, spans_of: SpansOf | None, record_of: RecordOf | None = None):
        self.now = now
        self.spans_of = spans_of
        self.record_of = record_of


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def now_ms() -> int:
    """What ``now()`` means: ``$TRACETAG_NOW`` (an ISO time, for reproducible reports) or now."""
    fixed = os.environ.get("TRACETAG_NOW")
    if fixed:
        try:
            return parse_iso_ms(fixed)
        except (ValueError, OverflowError):
            raise InvalidInput(
                f"TRACETAG_NOW={fixed[:40]!r} is not a date; use an ISO time such as "
                "2025-03-05T12:00:00Z, or unset it"
            ) from None
    return int(time.time() * 1000)


def field_getter(f: A.Field) -> Callable[[dict[str, Any]], Any]:
    key = f.key
    if f.kind == "span":
        return span_getter(key)  # over a span dict, not the trace's
    if f.kind == "assessment":
        # tracetag stores no assessments: every feedback / expectation is absent (IS NULL).
        return lambda d: None
    if f.kind == "prompt":
        return _linked_prompts
    if f.kind == "tag":
        return lambda d: d["tags"].get(key)
    if f.kind == "metadata":
        return lambda d: d["metadata"].get(key)
    if key == "end_time_ms":

        def end_time(d: dict[str, Any]) -> Any:
            ex = d.get("execution_time_ms")
            return None if ex is None else d["timestamp_ms"] + ex

        return end_time
    if key == "run_id":
        return lambda d: d["metadata"].get("mlflow.sourceRun")
    return lambda d: d.get(key)


def _linked_prompts(d: dict[str, Any]) -> Any:
    """The ``name/version`` of each prompt linked to the trace (MLflow's tag
    ``mlflow.linkedPrompts``, a JSON list of {name, version}); absent when there are none."""
    raw = d["tags"].get("mlflow.linkedPrompts")
    if not raw:
        return None
    try:
        links = orjson.loads(raw)
        return _PromptSet(f"{p['name']}/{p['version']}" for p in links)
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None


class _PromptSet(frozenset[str]):
    """Several linked prompts: ``prompt = 'a/1'`` holds when any of them is ``a/1``."""

    def __eq__(self, other: object) -> bool:
        return other in self if isinstance(other, str) else frozenset.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return frozenset.__hash__(self)


# What a tag or metadata value must look like to compare as a number: decimal digits with an
# optional sign, fraction and exponent, ASCII spaces around allowed, and small enough to stay
# finite. Python's float() would also take "nan", "inf", "1_000" and non-ASCII digits, and
# PostgreSQL's float8 other spellings again; one definition, used by the local evaluator and
# (as the function tracetag_number) by the PostgreSQL backend, reads the same values as numbers.
NUMBER_PATTERN = (
    r"^[ \t\n\r\f\v]*[-+]?([0-9]{1,200}(\.[0-9]{0,200})?|\.[0-9]{1,200})([eE][-+]?[0-9]{1,2})?"
    r"[ \t\n\r\f\v]*$"
)
_NUMBER = re.compile(NUMBER_PATTERN[:-1] + r"\Z")  # Python's $ would allow a final newline


def _as_number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and _NUMBER.match(value):
        return float(value)
    return None


def value_of(f: A.Field, v: A.Value, now: int) -> Any:
    if isinstance(v, A.Now):
        return now + v.offset_ms
    if isinstance(v, A.Duration):
        return v.ms
    if isinstance(v, A.String) and f.kind == "attribute" and f.key in NUMERIC_ATTRIBUTES:
        return parse_iso_ms(v.value)
    return v.value


def numeric_compare(f: A.Field, v: A.Value) -> bool:
    """Tags and metadata compare as numbers when the literal is a number (``retries > 9``)."""
    return f.kind in ("tag", "metadata") and isinstance(v, A.Number | A.Duration)


def _junction(parts: list[Predicate], decisive: bool) -> Predicate:
    """Kleene's AND (``decisive`` False) or OR (True): the first part equal to ``decisive``
    decides; otherwise any unknown part makes the whole unknown."""

    def junction(d: dict[str, Any]) -> bool | None:
        result: bool | None = not decisive
        for p in parts:
            r = p(d)
            if r is decisive:
                return decisive
            if r is None:
                result = None
        return result

    return junction


def _compile_junction(node: A.And | A.Or, ctx: Ctx) -> Predicate:
    if isinstance(node, A.Or):
        return _junction([_compile(i, ctx) for i in node.items], True)
    # AND: its span conditions are one group (one span must satisfy them all), checked last,
    # so that spans are read only for traces the trace-level conditions let through.
    spans = [i for i in node.items if A.is_span_condition(i)]
    parts = [_compile(i, ctx) for i in node.items if not A.is_span_condition(i)]
    if spans:
        parts.append(_exists(spans, ctx))
    return _junction(parts, False)


def _compile_not(node: A.Not, ctx: Ctx) -> Predicate:
    inner = _compile(node.item, ctx)

    def not_(d: dict[str, Any]) -> bool | None:
        r = inner(d)
        return None if r is None else not r

    return not_


def _compile_is_null(node: A.IsNull, ctx: Ctx) -> Predicate:
    get = field_getter(node.field)
    if node.negated:
        return lambda d: get(d) is not None
    return lambda d: get(d) is None


def _compile_like(node: A.Like, ctx: Ctx) -> Predicate:
    get = field_getter(node.field)
    if node.op == "RLIKE":
        match = compile_rlike(node.pattern.value)
    else:
        match = compile_like(node.pattern.value, node.op == "ILIKE")
    negated = node.negated

    def like(d: dict[str, Any]) -> bool | None:
        v = get(d)
        if v is None:
            return None
        return match(str(v)) != negated

    return like


def _compile_compare(node: A.Compare, ctx: Ctx) -> Predicate:
    get = field_getter(node.field)
    op = _OPS[node.op]
    lit = value_of(node.field, node.value, ctx.now)
    if numeric_compare(node.field, node.value):

        def num_cmp(d: dict[str, Any]) -> bool | None:
            v = _as_number(get(d))
            return None if v is None else op(v, lit)

        return num_cmp

    def cmp(d: dict[str, Any]) -> bool | None:
        v = get(d)
        return None if v is None else op(v, lit)

    return cmp


def _compile_in(node: A.InList, ctx: Ctx) -> Predicate:
    get = field_getter(node.field)
    numeric = numeric_compare(node.field, node.values[0])
    values = frozenset(value_of(node.field, v, ctx.now) for v in node.values)
    negated = node.negated

    def in_(d: dict[str, Any]) -> bool | None:
        v = get(d)
        if numeric:
            v = _as_number(v)
        if v is None:
            return None
        return (v in values) != negated

    return in_


# One compiler per node type: a new node type is one function and one entry here.
_COMPILERS: dict[type, Callable[[Any, Ctx], Predicate]] = {
    A.And: _compile_junction,
    A.Or: _compile_junction,
    A.Not: _compile_not,
    A.IsNull: _compile_is_null,
    A.Like: _compile_like,
    A.Compare: _compile_compare,
    A.InList: _compile_in,
}


def _on_span(node: A.Node, ctx: Ctx) -> Predicate:
    """A span condition compiled as a predicate over one span dict."""
    compiler = _COMPILERS[type(node)]
    return compiler(node, ctx)


def _exists(nodes: list[A.Node], ctx: Ctx) -> Predicate:
    """True when some span of the trace satisfies every one of ``nodes`` (see .spans)."""
    conditions = [_on_span(n, ctx) for n in nodes]
    spans_of, record_of = ctx.spans_of, ctx.record_of
    if spans_of is None:
        raise ValueError("span conditions need the trace's spans (spans_of)")
    exact, folded = required_in_record(nodes) if record_of is not None else ([], [])
    summarised = all(getattr(getattr(n, "field", None), "key", None) in SUMMARISED for n in nodes)

    decided: dict[str, bool] = {}

    def exists(d: dict[str, Any]) -> bool:
        kinds = d.get(SPAN_KINDS) if summarised else None
        if isinstance(kinds, str):
            found = decided.get(kinds)
            if found is None:
                if len(decided) > 4096:
                    decided.clear()
                found = any(all(c(s) is True for c in conditions) for s in kind_spans(kinds))
                decided[kinds] = found
            return found
        if record_of is not None and (exact or folded):
            raw = record_of(d)
            if not all(b in raw for b in exact):
                return False
            if folded:
                low = raw.lower()
                if not all(b in low for b in folded):
                    return False
        if single is not None:
            return any(single(s) is True for s in spans_of(d))
        return any(all(c(s) is True for c in conditions) for s in spans_of(d))

    single = conditions[0] if len(conditions) == 1 else None
    return exists


def _compile(node: A.Node, ctx: Ctx) -> Predicate:
    if A.is_span_condition(node):
        return _exists([node], ctx)
    compiler = _COMPILERS.get(type(node))
    if compiler is None:
        raise TypeError(f"not a filter node: {node!r}")
    return compiler(node, ctx)


def compile_filter(
    node: A.Node | None,
    now: int | None = None,
    spans_of: SpansOf | None = None,
    record_of: RecordOf | None = None,
) -> Predicate:
    """``node`` as a predicate over info documents. ``spans_of(doc)`` reads a trace's spans,
    needed when the filter has span conditions (each trace's spans are read at most once);
    ``record_of(doc)``, the raw bytes they are stored as, lets traces that lack a required
    word be skipped unparsed."""
    if node is None:
        return lambda d: True
    cached = _last_spans(spans_of) if spans_of is not None else None
    return _compile(node, Ctx(now_ms() if now is None else now, cached, record_of))


def _last_spans(spans_of: SpansOf) -> SpansOf:
    """``spans_of`` remembering the last trace's spans (several span groups, one read)."""
    last: list[Any] = [None, None]

    def spans(d: dict[str, Any]) -> list[dict[str, Any]]:
        if last[0] is not d:
            last[0], last[1] = d, spans_of(d)
        result: list[dict[str, Any]] = last[1]
        return result

    return spans


def _conjuncts(node: A.Node | None) -> Iterator[A.Node]:
    """The conditions every match must satisfy: the filter itself, or the conditions of its
    top-level AND (nested ANDs included); an OR or a NOT is one opaque condition."""
    if isinstance(node, A.And):
        for item in node.items:
            yield from _conjuncts(item)
    elif node is not None:
        yield node


def fields_of(node: A.Node | None) -> Iterator[A.Field]:
    """Every field a filter names."""
    if isinstance(node, A.And | A.Or):
        for item in node.items:
            yield from fields_of(item)
    elif isinstance(node, A.Not):
        yield from fields_of(node.item)
    elif node is not None:
        yield node.field


def tag_keys_read(node: A.Node | None) -> set[str] | None:
    """The tag keys a filter reads (None: any, for a field not yet known). A change of other
    tags cannot change whether a trace matches: the indexes need not judge it again."""
    keys: set[str] = set()
    for f in fields_of(node):
        if f.kind == "tag":
            keys.add(f.key)
        elif f.kind == "prompt":
            keys.add("mlflow.linkedPrompts")  # (read by _linked_prompts)
        elif f.kind == "unknown":
            return None
    return keys


def _string_equalities(node: A.Node | None) -> Iterator[A.Compare]:
    """The ``FIELD = 'string'`` conditions every match must satisfy."""
    for c in _conjuncts(node):
        if isinstance(c, A.Compare) and c.op == "=" and isinstance(c.value, A.String):
            yield c


def tag_equalities(node: A.Node | None) -> list[tuple[str, str]]:
    """The (key, value) of each ``tags.KEY = 'VALUE'`` every match must satisfy: what a tag
    index can look up."""
    return [
        (c.field.key, c.value.value)
        for c in _string_equalities(node)
        if c.field.kind == "tag" and isinstance(c.value, A.String)
    ]


def required_bytes(node: A.Node | None) -> list[bytes]:
    """Byte strings that every matching document's JSON must contain.

    ``tags.environment = 'production'`` can only be True for a document whose JSON holds
    ``"production"``; the scan skips parsing the lines that lack it. Only conjunctions of
    string equalities qualify; anything else (OR, NOT, patterns) contributes nothing.
    """
    return [
        orjson.dumps(c.value.value)
        for c in _string_equalities(node)
        if isinstance(c.value, A.String)
        and not (c.field.kind == "attribute" and c.field.key in NUMERIC_ATTRIBUTES)
        and c.field.key not in ("run_id", "end_time_ms")
        and c.field.kind in ("tag", "metadata", "attribute")
    ]


def required_span_bytes(node: A.Node | None) -> list[bytes]:
    """Byte strings every matching trace's span record must contain (the record holds all
    its spans): what the span conditions among the filter's required conditions ask for,
    ``trace.text LIKE '%question 29%'`` -> ``question 29``. Empty: nothing to look for."""
    spans = [c for c in _conjuncts(node) if A.is_span_condition(c)]
    return required_in_record(spans)[0] if spans else []
