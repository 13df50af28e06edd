"""AST -> a predicate over stored trace documents, with SQL's three-valued logic.

Each node compiles to a closure returning True, False or None (unknown). A comparison with an
absent field is unknown; NOT unknown is unknown; AND / OR follow Kleene's tables; a trace
matches only when the whole filter is True. Another backend can compile the same AST instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import orjson

from ..errors import InvalidInput
from . import ast as A
from .fields import NUMERIC_ATTRIBUTES, parse_iso_ms
from .patterns import compile_like, compile_rlike

__all__ = [
    "Predicate",
    "compile_filter",
    "field_getter",
    "now_ms",
    "required_bytes",
]

Predicate = Callable[[dict[str, Any]], bool | None]
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


def _as_number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _literal(f: A.Field, v: A.Value, now: int) -> Any:
    if isinstance(v, A.Now):
        return now + v.offset_ms
    if isinstance(v, A.Duration):
        return v.ms
    if isinstance(v, A.String) and f.kind == "attribute" and f.key in NUMERIC_ATTRIBUTES:
        return parse_iso_ms(v.value)
    return v.value


def _numeric_compare(f: A.Field, v: A.Value) -> bool:
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


def _compile_junction(node: A.And | A.Or, now: int) -> Predicate:
    return _junction([_compile(i, now) for i in node.items], isinstance(node, A.Or))


def _compile_not(node: A.Not, now: int) -> Predicate:
    inner = _compile(node.item, now)

    def not_(d: dict[str, Any]) -> bool | None:
        r = inner(d)
        return None if r is None else not r

    return not_


def _compile_is_null(node: A.IsNull, now: int) -> Predicate:
    get = field_getter(node.field)
    if node.negated:
        return lambda d: get(d) is not None
    return lambda d: get(d) is None


def _compile_like(node: A.Like, now: int) -> Predicate:
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


def _compile_compare(node: A.Compare, now: int) -> Predicate:
    get = field_getter(node.field)
    op = _OPS[node.op]
    lit = _literal(node.field, node.value, now)
    if _numeric_compare(node.field, node.value):

        def num_cmp(d: dict[str, Any]) -> bool | None:
            v = _as_number(get(d))
            return None if v is None else op(v, lit)

        return num_cmp

    def cmp(d: dict[str, Any]) -> bool | None:
        v = get(d)
        return None if v is None else op(v, lit)

    return cmp


def _compile_in(node: A.InList, now: int) -> Predicate:
    get = field_getter(node.field)
    numeric = _numeric_compare(node.field, node.values[0])
    values = frozenset(_literal(node.field, v, now) for v in node.values)
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
_COMPILERS: dict[type, Callable[[Any, int], Predicate]] = {
    A.And: _compile_junction,
    A.Or: _compile_junction,
    A.Not: _compile_not,
    A.IsNull: _compile_is_null,
    A.Like: _compile_like,
    A.Compare: _compile_compare,
    A.InList: _compile_in,
}


def _compile(node: A.Node, now: int) -> Predicate:
    compiler = _COMPILERS.get(type(node))
    if compiler is None:
        raise TypeError(f"not a filter node: {node!r}")
    return compiler(node, now)


def compile_filter(node: A.Node | None, now: int | None = None) -> Predicate:
    if node is None:
        return lambda d: True
    return _compile(node, now_ms() if now is None else now)


def required_bytes(node: A.Node | None) -> list[bytes]:
    """Byte strings that every matching document's JSON must contain.

    ``tags.environment = 'production'`` can only be True for a document whose JSON holds
    ``"production"``; the scan skips parsing the lines that lack it. Only conjunctions of
    string equalities qualify; anything else (OR, NOT, patterns) contributes nothing.
    """
    if node is None:
        return []
    if isinstance(node, A.And):
        return [b for item in node.items for b in required_bytes(item)]
    if (
        isinstance(node, A.Compare)
        and node.op == "="
        and isinstance(node.value, A.String)
        and not (node.field.kind == "attribute" and node.field.key in NUMERIC_ATTRIBUTES)
        and node.field.key not in ("run_id", "end_time_ms")
    ):
        return [orjson.dumps(node.value.value)]
    return []
