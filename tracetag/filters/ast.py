"""The filter AST: small frozen nodes, with source positions kept out of equality.

Every node prints back (``str(node)``) to filter text that parses to an equal node, so a parsed
filter can be shown, stored and re-read (``--explain``, page tokens, tests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dc_field

__all__ = [
    "And",
    "Compare",
    "Duration",
    "Field",
    "InList",
    "IsNull",
    "Like",
    "Node",
    "Not",
    "Now",
    "Number",
    "Or",
    "String",
    "Value",
    "depth",
]

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.:/\-]+$")


def quote_string(text: str) -> str:
    body = text.replace("\\", "\\\\")
    if "'" not in body:
        return f"'{body}'"
    if '"' not in body:
        return f'"{body}"'
    return "'" + body.replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Field:
    """``kind`` is ``tag``, ``metadata``, ``attribute``, ``span`` (key ``name``, ``type``,
    ``status``, ``content`` or ``attributes.K``), ``assessment`` (``feedback.X``,
    ``expectation.X``) or ``prompt`` (or ``unknown`` until validated)."""

    kind: str
    key: str
    pos: int = dc_field(default=0, compare=False)
    raw: str = dc_field(default="", compare=False)

    def __str__(self) -> str:
        if self.kind == "attribute":
            return self.key
        if self.kind == "prompt":
            return "prompt"
        if self.kind == "span" and self.key.startswith("attributes."):
            name = self.key[len("attributes.") :]
            return f"span.attributes.{name if _PLAIN_KEY.match(name) else f'`{name}`'}"
        if self.kind in ("span", "assessment"):
            path = f"span.{self.key}" if self.kind == "span" else self.key
            prefix, _, name = path.partition(".")
            return f"{prefix}.{name if _PLAIN_KEY.match(name) else f'`{name}`'}"
        prefix = {"tag": "tags", "metadata": "metadata"}.get(self.kind, self.kind)
        if _PLAIN_KEY.match(self.key):
            return f"{prefix}.{self.key}"
        if "`" not in self.key:
            return f"{prefix}.`{self.key}`"
        return f'{prefix}."{self.key}"'


@dataclass(frozen=True)
class String:
    value: str
    pos: int = dc_field(default=0, compare=False)

    def __str__(self) -> str:
        return quote_string(self.value)


@dataclass(frozen=True)
class Number:
    value: int | float
    pos: int = dc_field(default=0, compare=False)

    def __str__(self) -> str:
        return repr(self.value)


UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


@dataclass(frozen=True)
class Duration:
    """A length of time, kept in milliseconds (``5s`` is ``Duration(5000)``)."""

    ms: float
    pos: int = dc_field(default=0, compare=False)

    def __str__(self) -> str:
        ms = self.ms
        return f"{int(ms)}ms" if ms == int(ms) else f"{ms!r}ms"


@dataclass(frozen=True)
class Now:
    """``now()`` plus ``offset_ms`` (negative for ``now() - 24h``), resolved when compiled."""

    offset_ms: float = 0
    pos: int = dc_field(default=0, compare=False)

    def __str__(self) -> str:
        if not self.offset_ms:
            return "now()"
        sign = "-" if self.offset_ms < 0 else "+"
        return f"now() {sign} {Duration(abs(self.offset_ms))}"


Value = String | Number | Duration | Now


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str  # one of = != < <= > >=
    value: Value

    def __str__(self) -> str:
        return f"{self.field} {self.op} {self.value}"


@dataclass(frozen=True)
class Like:
    field: Field
    op: str  # LIKE, ILIKE or RLIKE
    pattern: String
    negated: bool = False

    def __str__(self) -> str:
        neg = "NOT " if self.negated else ""
        return f"{self.field} {neg}{self.op} {self.pattern}"


@dataclass(frozen=True)
class InList:
    field: Field
    values: tuple[Value, ...]
    negated: bool = False
    pos: int = dc_field(default=0, compare=False)

    def __str__(self) -> str:
        neg = "NOT " if self.negated else ""
        return f"{self.field} {neg}IN ({', '.join(str(v) for v in self.values)})"


@dataclass(frozen=True)
class IsNull:
    field: Field
    negated: bool = False

    def __str__(self) -> str:
        return f"{self.field} IS {'NOT ' if self.negated else ''}NULL"


def _wrap(node: Node, inside: type) -> str:
    text = str(node)
    if isinstance(node, Or) or (isinstance(node, And) and inside is not And):
        return f"({text})"
    return text


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " AND ".join(_wrap(i, And) for i in self.items)


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " OR ".join(f"({i})" if isinstance(i, Or) else str(i) for i in self.items)


@dataclass(frozen=True)
class Not:
    item: Node

    def __str__(self) -> str:
        inner = self.item
        if isinstance(inner, And | Or):
            return f"NOT ({inner})"
        return f"NOT {inner}"


Node = Compare | Like | InList | IsNull | And | Or | Not


def tree(node: Node, indent: str = "") -> str:
    """An indented outline of the parsed filter, for ``--explain`` and test failures. Span
    conditions show how they are evaluated: each group as ``SOME SPAN`` (one span must satisfy
    every condition in it), checked after the trace-level conditions of the same AND."""
    if isinstance(node, And):
        spans = [i for i in node.items if is_span_condition(i)]
        rest = [tree(i, indent + "  ") for i in node.items if not is_span_condition(i)]
        if spans:
            rest.append(_some_span(spans, indent + "  "))
        return "\n".join([f"{indent}AND", *rest])
    if isinstance(node, Or):
        return "\n".join([f"{indent}OR", *(tree(i, indent + "  ") for i in node.items)])
    if isinstance(node, Not):
        return f"{indent}NOT\n{tree(node.item, indent + '  ')}"
    if is_span_condition(node):
        return _some_span([node], indent)
    return f"{indent}{type(node).__name__}: {node}"


def _some_span(nodes: list[Node], indent: str) -> str:
    lines = [f"{indent}SOME SPAN (one span satisfies all of)"]
    lines += [f"{indent}  {type(n).__name__}: {n}" for n in nodes]
    return "\n".join(lines)


def depth(node: Node) -> int:
    """How deeply ``node`` nests (iteratively, so a hostile filter cannot exhaust the stack)."""
    deepest = 0
    stack: list[tuple[Node, int]] = [(node, 1)]
    while stack:
        n, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(n, And | Or):
            stack.extend((i, d + 1) for i in n.items)
        elif isinstance(n, Not):
            stack.append((n.item, d + 1))
    return deepest


def is_span_condition(node: Node) -> bool:
    """A comparison on a span field: it holds or not per span, not per trace."""
    f = getattr(node, "field", None)
    return isinstance(f, Field) and f.kind == "span"


def has_span_conditions(node: Node | None) -> bool:
    if node is None:
        return False
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, And | Or):
            stack.extend(n.items)
        elif isinstance(n, Not):
            stack.append(n.item)
        elif is_span_condition(n):
            return True
    return False
