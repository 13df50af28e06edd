"""Span fields in filters: what ``span.name``, ``span.attributes.model`` and ``trace.text`` read
from a span, and how span conditions combine.

The rule (MLflow's, extended to OR and NOT): the span conditions that are joined by AND in one
group must all hold on the same span, and the group holds for a trace when at least one of its
spans satisfies them (SQL's EXISTS, so a group is true or false, never unknown). Each operand of
OR and NOT is its own group: ``span.name = 'a' OR span.type = 'LLM'`` means "some span is named
a, or some span is an LLM span"; ``NOT span.status = 'ERROR'`` means "no span has status ERROR".
Trace-level conditions in the same AND are checked first, so spans are read only for traces that
pass them.

``trace.text`` (alias ``span.content``, ``attributes.text``) is a span's text: its name, type,
status and status message, its inputs and outputs, its attributes (keys and values) and its
events (names and attributes), the structured parts as compact JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

__all__ = [
    "LIFTED_ATTRIBUTES",
    "SPAN_KINDS",
    "kind_spans",
    "required_in_record",
    "span_getter",
    "span_kinds",
    "span_summary",
    "span_text",
]

# MLflow keeps these as span attributes; tracetag lifts them into the span's own fields on
# import, so span.attributes.`mlflow.spanType` reads the span's type.
LIFTED_ATTRIBUTES = {
    "mlflow.spanType": "span_type",
    "mlflow.spanInputs": "inputs",
    "mlflow.spanOutputs": "outputs",
}
_TEXT = "_tracetag_text"  # where a span dict caches its text while a filter runs

# A trace's distinct (name, type, status) triples, kept in its info document by stores that
# keep spans apart (the file store): a group of span conditions on these three fields alone
# (``span.type = 'LLM'``) is decided from them without reading the spans. Derived data: a
# document without it (older stores, or a trace with too many kinds) has its spans read.
# One string ("name\ttype\tstatus" lines): cheaper to parse than lists on every scan, and
# traces of one application share a handful of them, so a filter decides each string once.
SPAN_KINDS = "span_kinds"
SUMMARISED = frozenset({"name", "type", "status"})
_MAX_KINDS = 32  # beyond this the summary would weigh on every scan more than it saves
_KIND_KEYS = ("name", "span_type", "status")


def span_kinds(spans: list[dict[str, Any]]) -> str | None:
    """The distinct (name, type, status) of ``spans``, in first-seen order, as one string;
    None when there are more than ``_MAX_KINDS`` or a value is not plain text."""
    seen: dict[tuple[Any, ...], None] = {}
    for s in spans:
        seen[(s.get("name"), s.get("span_type"), s.get("status"))] = None
        if len(seen) > _MAX_KINDS:
            return None
    lines = []
    for kind in seen:
        if not all(isinstance(v, str) and "\t" not in v and "\n" not in v for v in kind):
            return None  # (an absent field is not told apart from an empty one in the text)
        lines.append("\t".join(kind))
    return "\n".join(lines)


def span_summary(spans: list[dict[str, Any]]) -> dict[str, Any]:
    """What an info document keeps about ``spans``: ``{SPAN_KINDS: ...}``, or nothing."""
    kinds = span_kinds(spans)
    return {} if kinds is None else {SPAN_KINDS: kinds}


def kind_spans(kinds: str) -> list[dict[str, Any]]:
    """Span dicts holding just the summarised fields, for conditions on those fields."""
    if not kinds:
        return []
    return [dict(zip(_KIND_KEYS, k.split("\t"), strict=True)) for k in kinds.split("\n")]


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def span_text(span: dict[str, Any]) -> str:
    """The text ``trace.text`` searches in one span (computed once per loaded span)."""
    cached = span.get(_TEXT)
    if cached is None:
        parts = [span.get("name"), span.get("span_type"), span.get("status")]
        parts.append(span.get("status_message"))
        parts += [_as_text(span.get("inputs")), _as_text(span.get("outputs"))]
        if span.get("attributes"):
            parts.append(_as_text(span["attributes"]))
        for e in span.get("events") or []:
            parts += [e.get("name"), _as_text(e.get("attributes") or None)]
        cached = span[_TEXT] = "\n".join(p for p in parts if p)
    return str(cached)


def span_getter(key: str) -> Callable[[dict[str, Any]], Any]:
    """The value a span field reads from a span dict (None when the span has none)."""
    if key == "name":
        return lambda s: s.get("name")
    if key == "type":
        return lambda s: s.get("span_type")
    if key == "status":
        return lambda s: s.get("status")
    if key == "content":
        return span_text
    name = key.removeprefix("attributes.")
    lifted = LIFTED_ATTRIBUTES.get(name)
    if lifted is not None:
        return lambda s: _as_text(s.get(lifted))
    return lambda s: _as_text((s.get("attributes") or {}).get(name))


def _literals(pattern: str) -> list[str]:
    """The literal runs of a LIKE pattern (between ``%`` and ``_``, escapes resolved)."""
    runs, cur, i = [], [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            cur.append(pattern[i + 1])
            i += 2
            continue
        if c in "%_":
            runs.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    runs.append("".join(cur))
    return [r for r in runs if len(r) >= 3]


def _as_record_bytes(text: str) -> bytes | None:
    """How ``text`` appears inside a span record (JSON written by orjson), when it appears
    verbatim: no quote, backslash or control character, which JSON would escape."""
    encoded = orjson.dumps(text)[1:-1]
    return encoded if encoded == text.encode() else None


def required_in_record(nodes: list[Any]) -> tuple[list[bytes], list[bytes]]:
    """Byte strings a trace's span record must contain for some span to satisfy all of
    ``nodes`` (the record holds every span, so each one's needs add up): (exact, lower-cased
    ASCII). A cheap test before the record is parsed; an empty answer means "parse anyway"."""
    from . import ast as A

    exact: list[bytes] = []
    folded: list[bytes] = []
    for n in nodes:
        if isinstance(n, A.Compare) and n.op == "=" and isinstance(n.value, A.String):
            found = _as_record_bytes(n.value.value)
            if found:
                exact.append(found)
        elif isinstance(n, A.Like) and not n.negated and n.op in ("LIKE", "ILIKE"):
            for run in _literals(n.pattern.value):
                found = _as_record_bytes(run)
                if found is None:
                    continue
                if n.op == "LIKE":
                    exact.append(found)
                elif found.isascii() and not set(found.lower()) & set(b"ks"):
                    # ILIKE folds like RE2: k and s also match the Kelvin sign and the long s,
                    # which no byte comparison sees, so a run holding them is no requirement.
                    folded.append(found.lower())
    return exact, folded
