"""The names a filter can use: attributes and their aliases, prefixes, and how a field, a
quoted string, a duration or an ISO date is read. Shared by the parser, the node builder, the
evaluator, ordering, grouping and completion."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from . import ast as A

__all__ = [
    "ASSESSMENT_PREFIXES",
    "ATTRIBUTES",
    "LIKELY",
    "NUMERIC_ATTRIBUTES",
    "SPAN_FIELDS",
    "SPAN_STATUS_VALUES",
    "STATUS_VALUES",
    "TIME_ATTRIBUTES",
    "duration_of",
    "format_iso_ms",
    "parse_field",
    "parse_iso_ms",
    "unquote",
]

# Attribute names (and MLflow's aliases, old and new) -> canonical name.
ATTRIBUTES = {
    "status": "status",
    "state": "status",
    "name": "name",
    "timestamp_ms": "timestamp_ms",
    "timestamp": "timestamp_ms",
    "request_time": "timestamp_ms",
    "execution_time_ms": "execution_time_ms",
    "execution_time": "execution_time_ms",
    "execution_duration_ms": "execution_time_ms",
    "execution_duration": "execution_time_ms",
    "end_time_ms": "end_time_ms",
    "end_time": "end_time_ms",
    "request_id": "trace_id",
    "trace_id": "trace_id",
    "client_request_id": "client_request_id",
    "run_id": "run_id",
    "experiment_id": "experiment_id",
}
NUMERIC_ATTRIBUTES = {"timestamp_ms", "execution_time_ms", "end_time_ms"}
STATUS_VALUES = ("OK", "ERROR", "IN_PROGRESS")
# Names people type for an attribute that has another name here.
LIKELY = {
    "duration": "execution_time_ms",
    "duration_ms": "execution_time_ms",
    "latency": "execution_time_ms",
    "latency_ms": "execution_time_ms",
    "elapsed": "execution_time_ms",
    "time": "timestamp_ms",
    "time_ms": "timestamp_ms",
    "date": "timestamp_ms",
    "created": "timestamp_ms",
    "start_time": "timestamp_ms",
    "id": "trace_id",
    "experiment": "experiment_id",
    "trace_name": "name",
    "text": "trace.text",
}
TIME_ATTRIBUTES = {"timestamp_ms", "end_time_ms"}
_PREFIXES = {
    "tags": "tag",
    "tag": "tag",
    "metadata": "metadata",
    "request_metadata": "metadata",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "trace": "attribute",
}
_FIELD_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\.(.*))?$", re.S)


def unquote(text: str) -> str:
    quote = text[0]
    body = text[1:-1]
    return re.sub(r"\\([\\" + quote + "])", r"\1", body)


SPAN_FIELDS = ("name", "type", "status", "content")
SPAN_STATUS_VALUES = ("OK", "ERROR", "UNSET")
ASSESSMENT_PREFIXES = ("feedback", "expectation")


def _unquoted(key: str) -> str:
    if len(key) >= 2 and key[0] == key[-1] and key[0] in '`"':
        return key[1:-1]
    return key


def _span_field(key: str, pos: int, raw: str) -> A.Field:
    """``span.name`` ... ``span.attributes.`mlflow.spanType``` (names are case-sensitive, as
    in MLflow)."""
    if key.startswith("attributes."):
        return A.Field("span", "attributes." + _unquoted(key[len("attributes.") :]), pos, raw)
    return A.Field("span", key, pos, raw)


def parse_field(raw: str, pos: int = 0) -> A.Field:
    """``tags.service.name`` -> Field('tag', 'service.name'); bare names are attributes;
    ``span.*``, ``trace.text`` and ``span.content`` are span fields (kind ``span``),
    ``feedback.X`` / ``expectation.X`` assessments, ``prompt`` the trace's linked prompts."""
    m = _FIELD_RE.match(raw)
    if not m:
        return A.Field("unknown", raw, pos, raw)
    prefix, key = m.group(1), m.group(2)
    if key is None:
        if prefix == "prompt":
            return A.Field("prompt", "", pos, raw)
        return A.Field("attribute", ATTRIBUTES.get(prefix.lower(), prefix), pos, raw)
    if prefix == "span":
        return _span_field(key, pos, raw)
    if prefix in ("trace", "attributes", "attribute") and key == "text":
        return A.Field("span", "content", pos, raw)
    if prefix in ASSESSMENT_PREFIXES:
        return A.Field("assessment", f"{prefix}.{_unquoted(key)}", pos, raw)
    key = _unquoted(key)
    kind = _PREFIXES.get(prefix.lower())
    if kind is None:
        return A.Field("unknown", raw, pos, raw)
    if kind == "attribute":
        key = ATTRIBUTES.get(key.lower(), key)
    return A.Field(kind, key, pos, raw)


def duration_of(tok: Any) -> A.Duration:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", str(tok), re.I)
    assert m is not None
    return A.Duration(float(m.group(1)) * A.UNITS[m.group(2).lower()], tok.start_pos)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_iso_ms(text: str) -> int:
    """``2025-03-05`` or ``2025-03-02T12:00:00[Z|+01:00]`` -> epoch ms; UTC when no zone given."""
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // timedelta(milliseconds=1)  # exact, no float rounding


def format_iso_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 in UTC with milliseconds (``2025-03-01T00:00:30.207Z``):
    what :func:`parse_iso_ms` reads back, and MLflow's RFC 3339 form."""
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
