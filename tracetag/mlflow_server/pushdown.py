"""Which part of a filter an MLflow server can evaluate itself.

MLflow's trace search takes an AND of simple clauses only: no OR, NOT or parentheses, ``IN`` on
a few attributes, strings for tags, epoch milliseconds for times. The top-level AND items it
can take are sent as its filter; everything is still checked by tracetag's own predicate on
what comes back, so the server only narrows the transfer and never changes an answer.
"""

from __future__ import annotations

from typing import Any

from ..filters import ast as A
from ..filters.evaluate import value_of

__all__ = ["split"]

_STRING_OPS = {"=", "!="}
_NUMERIC = {"timestamp_ms": "trace.timestamp_ms", "execution_time_ms": "trace.execution_time_ms"}


def _quote(text: str) -> str | None:
    """MLflow's string literal, or None when the text cannot be one safely."""
    if ("'" in text and '"' in text) or "\\" in text:
        return None
    return f'"{text}"' if "'" in text else f"'{text}'"


def _key(prefix: str, key: str) -> str | None:
    # MLflow reads ``tags.name`` as the trace's name, not the tag called name.
    if "`" in key or (prefix == "tags" and key == "name"):
        return None
    return f"{prefix}.`{key}`"


def _clause(n: A.Node, now: int) -> str | None:
    """``n`` in MLflow's syntax, when the server can decide it as tracetag does."""
    if isinstance(n, A.Compare) and n.field.kind in ("tag", "metadata"):
        if n.op not in _STRING_OPS or not isinstance(n.value, A.String):
            return None
        key = _key("tags" if n.field.kind == "tag" else "metadata", n.field.key)
        value = _quote(n.value.value)
        return None if key is None or value is None else f"{key} {n.op} {value}"
    if isinstance(n, A.Compare) and n.field.kind == "attribute":
        if n.field.key in _NUMERIC:
            lit = value_of(n.field, n.value, now)
            if not isinstance(lit, int | float) or lit != int(lit):
                return None
            return f"{_NUMERIC[n.field.key]} {n.op} {int(lit)}"
        if n.field.key == "status" and n.op in _STRING_OPS and isinstance(n.value, A.String):
            value = _quote(n.value.value)
            return None if value is None else f"trace.status {n.op} {value}"
    if isinstance(n, A.InList) and n.field == A.Field("attribute", "status"):
        values = [_quote(v.value) for v in n.values if isinstance(v, A.String)]
        if len(values) != len(n.values) or None in values:
            return None
        return f"trace.status {'NOT ' if n.negated else ''}IN ({', '.join(map(str, values))})"
    return None


def split(node: A.Node | None, now: int) -> tuple[str, list[Any]]:
    """(MLflow filter text for what the server can take, the AND items left to tracetag)."""
    if node is None:
        return "", []
    items = list(node.items) if isinstance(node, A.And) else [node]
    pushed: list[str] = []
    rest: list[Any] = []
    for item in items:
        clause = _clause(item, now)
        if clause is None:
            rest.append(item)
        else:
            pushed.append(clause)
    return " AND ".join(pushed), rest
