"""The filter AST compiled to parameterised SQL over ``tracetag_traces``.

Every value is a bound parameter; only column names and operators from fixed tables are ever
written into the SQL text. The result follows SQL's three-valued logic, which is the local
evaluator's (``tracetag.filters.evaluate``): an absent field is NULL, so a comparison with it is
unknown and NOT unknown stays unknown.

A condition whose meaning PostgreSQL cannot reproduce exactly (span conditions, RLIKE's RE2
dialect, ILIKE over non-ASCII text, linked prompts) is compiled to a *bound*: TRUE where the
condition sits under an even number of NOTs (for a span condition, the words it needs in the
trace's span JSON, as the local store's record prefilter) and FALSE under an odd number, so
the SQL selects a superset of the matches, and the backend runs the local predicate over what
comes back. A compiled filter says whether it is ``exact``: only then may a ``LIMIT`` go into
the SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..filters import ast as A
from ..filters.evaluate import numeric_compare, value_of
from ..filters.spans import required_in_record

__all__ = ["Compiled", "compile_sql", "order_sql"]

_COLUMNS = {
    "trace_id": "trace_id",
    "experiment_id": "experiment_id",
    "timestamp_ms": "timestamp_ms",
    "execution_time_ms": "execution_time_ms",
    "status": "status",
    "name": "name",
    "client_request_id": "client_request_id",
    "end_time_ms": "(timestamp_ms + execution_time_ms)",
}
_NUMERIC = {"timestamp_ms", "execution_time_ms", "end_time_ms"}
_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
# RE2 and PostgreSQL's regular expressions agree on patterns made of these characters, except
# that PostgreSQL's '.' also matches a newline: a superset, used where a superset is enough.
_SIMPLE_REGEX = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-,:/=^$.*+?|()"
)


@dataclass
class Compiled:
    sql: str
    params: list[Any] = field(default_factory=list)
    exact: bool = True


class _Compiler:
    def __init__(self, now: int):
        self.now = now
        self.params: list[Any] = []
        self.exact = True
        self._bounded = False

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return "%s"

    def bound(self, positive: bool) -> str:
        """A condition SQL cannot decide exactly: let everything through, the predicate decides."""
        self.exact = False
        self._bounded = True
        return "TRUE" if positive else "FALSE"

    # -- fields ------------------------------------------------------------------------------

    def text_of(self, f: A.Field) -> str | None:
        """The SQL text expression of a field (NULL when absent), or None when SQL has none."""
        if f.kind == "tag":
            return f"(tags ->> {self.bind(f.key)})"
        if f.kind == "metadata":
            return f"(metadata ->> {self.bind(f.key)})"
        if f.kind == "assessment":
            return "NULL::text"  # no assessments are stored: always absent
        if f.kind == "attribute":
            if f.key == "run_id":
                return "(metadata ->> 'mlflow.sourceRun')"
            col = _COLUMNS.get(f.key)
            if col is None:
                return None
            return f"{col}::text" if f.key in _NUMERIC else col
        return None

    def number_of(self, f: A.Field) -> str | None:
        if f.kind == "attribute" and f.key in _NUMERIC:
            return _COLUMNS[f.key]
        text = self.text_of(f)
        if text is None:
            return None
        # A value is a number when it reads as one (tracetag.filters.evaluate.NUMBER_PATTERN,
        # the same pattern in the schema's function); otherwise it is unknown, never an error.
        return f"tracetag_number({text})"

    # -- nodes -------------------------------------------------------------------------------

    def node(self, n: A.Node, positive: bool) -> str:
        if A.is_span_condition(n):
            return self._span(n, positive)
        if isinstance(n, A.And | A.Or):
            joiner = " AND " if isinstance(n, A.And) else " OR "
            return "(" + joiner.join(self.node(i, positive) for i in n.items) + ")"
        if isinstance(n, A.Not):
            return f"(NOT {self.node(n.item, not positive)})"
        handler: Callable[[Any, bool], str] = getattr(self, f"_{type(n).__name__.lower()}")
        mark, self._bounded = len(self.params), False
        sql = handler(n, positive)
        if self._bounded:  # parameters bound on the way to giving up are not in the SQL
            del self.params[mark:]
        return sql

    def _span(self, n: A.Node, positive: bool) -> str:
        """A span condition is tracetag's to decide; where it must hold (no NOT above), the
        words it needs must be in the trace's span JSON (``sp``, joined by the caller), which
        PostgreSQL checks without parsing it."""
        exact, folded = required_in_record([n]) if positive else ([], [])
        if not (exact or folded):
            return self.bound(positive)
        self.exact = False
        parts = [f"strpos(sp.spans, {self.bind(b.decode())}) > 0" for b in exact]
        parts += [f"strpos(lower(sp.spans), {self.bind(b.decode())}) > 0" for b in folded]
        return "(" + " AND ".join(parts) + ")"

    def _isnull(self, n: A.IsNull, positive: bool) -> str:
        if n.field.kind == "tag" and n.negated and positive:
            return f"(tags ? {self.bind(n.field.key)})"
        expr = self.text_of(n.field)
        if expr is None:
            return self.bound(positive)
        return f"({expr} IS {'NOT ' if n.negated else ''}NULL)"

    def _compare(self, n: A.Compare, positive: bool) -> str:
        f = n.field
        lit = value_of(f, n.value, self.now)
        numeric = numeric_compare(f, n.value) or (f.kind == "attribute" and f.key in _NUMERIC)
        if numeric:
            expr = self.number_of(f)
            if expr is None or not isinstance(lit, int | float):
                return self.bound(positive)
            return f"({expr} {_OPS[n.op]} {self.bind(lit)})"
        if not isinstance(lit, str):
            return self.bound(positive)
        if f.kind == "tag" and n.op == "=" and positive:
            # The GIN index answers containment; where NULL and FALSE select alike (no NOT
            # above), it is the same condition.
            return f"(tags @> {self.bind(orjson.dumps({f.key: lit}).decode())}::jsonb)"
        expr = self.text_of(f)
        if expr is None:
            return self.bound(positive)
        collate = ' COLLATE "C"' if n.op not in ("=", "!=") else ""
        return f"({expr}{collate} {_OPS[n.op]} {self.bind(lit)})"

    def _inlist(self, n: A.InList, positive: bool) -> str:
        f = n.field
        values = [value_of(f, v, self.now) for v in n.values]
        numeric = numeric_compare(f, n.values[0]) or (f.kind == "attribute" and f.key in _NUMERIC)
        if numeric:
            expr = self.number_of(f)
            if expr is None or not all(isinstance(v, int | float) for v in values):
                return self.bound(positive)
            test = f"({expr})::float8 = ANY({self.bind([float(v) for v in values])}::float8[])"
        else:
            if not all(isinstance(v, str) for v in values):
                return self.bound(positive)
            if f.kind == "tag" and positive and not n.negated:
                parts = [
                    f"tags @> {self.bind(orjson.dumps({f.key: v}).decode())}::jsonb" for v in values
                ]
                return "(" + " OR ".join(parts) + ")"
            expr = self.text_of(f)
            if expr is None:
                return self.bound(positive)
            test = f"{expr} = ANY({self.bind(values)}::text[])"
        return f"(NOT ({test}))" if n.negated else f"({test})"

    def _like(self, n: A.Like, positive: bool) -> str:
        expr = self.text_of(n.field)
        if expr is None:
            return self.bound(positive)
        pattern = n.pattern.value
        if n.op == "RLIKE":
            simple = set(pattern) <= _SIMPLE_REGEX
            if not (simple and positive and not n.negated):
                return self.bound(positive)
            self.exact = False
            return f"({expr} ~ {self.bind(pattern)})"
        if n.op == "LIKE":
            neg = "NOT " if n.negated else ""
            return f"({expr} {neg}LIKE {self.bind(like_pattern(pattern))})"
        # ILIKE: case folding agrees between RE2 and PostgreSQL on ASCII only ('k' also
        # matches the Kelvin sign in RE2), so other text is left to the predicate.
        if not pattern.isascii():
            return self.bound(positive)
        self.exact = False
        fn = "tracetag_not_ilike" if n.negated else "tracetag_ilike"
        unsure = "TRUE" if positive else "FALSE"
        return f"COALESCE({fn}({expr}, {self.bind(like_pattern(pattern))}), {unsure})"


def like_pattern(pattern: str) -> str:
    """tracetag's LIKE pattern (``\\`` escapes the next character; a trailing ``\\`` is itself)
    as PostgreSQL's, whose escape character is also ``\\`` but which refuses a trailing one."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1] if i + 1 < len(pattern) else "\\"
            out.append("\\" + nxt if nxt in "%_\\" else nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def compile_sql(node: A.Node | None, now: int) -> Compiled:
    """``node`` as a WHERE condition (``TRUE`` for no filter)."""
    if node is None:
        return Compiled("TRUE")
    c = _Compiler(now)
    sql = c.node(node, True)
    return Compiled(sql, c.params, c.exact)


def order_sql(keys: list[Any]) -> tuple[list[str], list[Any]] | None:
    """SQL expressions for the sort keys (``tracetag.query.OrderKey``), with their parameters,
    or None when a key has no SQL form. Text sorts by code point (``COLLATE "C"``), as Python
    compares strings; absent values sort last in both directions."""
    c = _Compiler(0)
    exprs: list[str] = []
    for k in keys:
        f = k.field
        if f.kind == "attribute" and f.key in _NUMERIC:
            expr: str | None = _COLUMNS[f.key]
        else:
            expr = c.text_of(f)
            if expr is not None:
                expr = f'({expr}) COLLATE "C"'
        if expr is None or f.kind == "assessment":
            return None
        exprs.append(expr)
    return exprs, c.params
