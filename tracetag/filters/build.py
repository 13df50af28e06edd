"""Parse tree -> AST nodes: lark's Transformer, built once, that only builds nodes (checking is
:func:`tracetag.filters.parser.validate`'s job)."""

from __future__ import annotations

import re
from typing import Any

from lark import Transformer, v_args

from . import ast as A
from .fields import duration_of, parse_field, unquote

__all__ = ["BUILD"]


def _flatten(kind: type[A.And] | type[A.Or], items: tuple[Any, ...]) -> tuple[Any, ...]:
    out: list[Any] = []
    for item in items:
        out.extend(item.items if isinstance(item, kind) else [item])
    return tuple(out)


def _field(tok: Any) -> A.Field:
    return parse_field(str(tok), tok.start_pos)


@v_args(inline=True)
class Build(Transformer[Any, Any]):
    def or_expr(self, *items: Any) -> A.Or:
        return A.Or(_flatten(A.Or, items))

    def and_expr(self, *items: Any) -> A.And:
        return A.And(_flatten(A.And, items))

    def not_(self, item: Any) -> A.Not:
        return A.Not(item)

    def group(self, _lpar: Any, item: Any, _rpar: Any) -> Any:
        return item

    def compare(self, f: Any, op: Any, value: Any) -> A.Compare:
        return A.Compare(_field(f), "!=" if op == "<>" else str(op), value)

    def like(self, f: Any, op: Any, pattern: Any, negated: bool = False) -> A.Like:
        s = A.String(unquote(str(pattern)), pattern.start_pos)
        return A.Like(_field(f), str(op).upper(), s, negated)

    def not_like(self, f: Any, op: Any, pattern: Any) -> A.Like:
        return self.like(f, op, pattern, negated=True)

    def in_(self, f: Any, lpar: Any, values: Any, _rpar: Any, negated: bool = False) -> A.InList:
        vals = tuple(values.children) if values is not None else ()
        return A.InList(_field(f), vals, negated, lpar.start_pos)

    def not_in(self, f: Any, lpar: Any, values: Any, rpar: Any) -> A.InList:
        return self.in_(f, lpar, values, rpar, negated=True)

    def is_null(self, f: Any) -> A.IsNull:
        return A.IsNull(_field(f))

    def is_not_null(self, f: Any) -> A.IsNull:
        return A.IsNull(_field(f), negated=True)

    def string(self, tok: Any) -> A.String:
        return A.String(unquote(str(tok)), tok.start_pos)

    def number(self, tok: Any) -> A.Number:
        text = str(tok)
        is_int = re.fullmatch(r"[+-]?\d+", text) is not None
        return A.Number(int(text) if is_int else float(text), tok.start_pos)

    def duration(self, tok: Any) -> A.Duration:
        return duration_of(tok)

    def now(self, now_tok: Any, _lpar: Any, _rpar: Any, *offset: Any) -> A.Now:
        if offset and offset[0] is not None:
            d = duration_of(offset[1])
            return A.Now(-d.ms if str(offset[0]) == "-" else d.ms, now_tok.start_pos)
        return A.Now(0, now_tok.start_pos)


BUILD = Build()
