"""The trace model: a ``Trace`` is a ``TraceInfo`` (what searches and tag writes touch) plus spans.

Field names follow MLflow 3 where they exist, with MLflow's older names kept as read-only
aliases so that code written against either ports by a rename. ``to_dict`` / ``from_dict`` are
the JSON form used by the store and by ``tracetag export``; they round-trip without loss.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

import orjson

__all__ = [
    "STATUSES",
    "Span",
    "SpanEvent",
    "Trace",
    "TraceData",
    "TraceDoc",
    "TraceInfo",
    "doc_to_trace",
    "new_span_id",
    "new_trace_id",
    "span_dict",
    "trace_to_doc",
]

STATUSES = ("OK", "ERROR", "IN_PROGRESS")


def new_trace_id() -> str:
    # random's generator is seeded from the OS and reseeded in a forked child (as
    # OpenTelemetry's ids); 128 bits make a collision as unlikely as secrets' would.
    return f"tr-{random.getrandbits(128):032x}"


PREVIEW_CHARS = 1000


def preview_of(value: Any) -> str | None:
    """The request or response preview of a trace whose root span has ``value``."""
    if value is None:
        return None
    text = value if isinstance(value, str) else orjson.dumps(value, default=repr).decode()
    return text[:PREVIEW_CHARS]


def new_span_id() -> str:
    return f"{random.getrandbits(64):016x}"


@dataclass
class SpanEvent:
    name: str
    timestamp_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "timestamp_ns": self.timestamp_ns, "attributes": self.attributes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpanEvent:
        return cls(d["name"], int(d.get("timestamp_ns") or 0), dict(d.get("attributes") or {}))


def span_dict(span: Any) -> dict[str, Any]:
    """The JSON form of a span: of a :class:`Span`, or of a span still being recorded (whose
    attributes are copied, since its owner may go on changing them)."""
    return {
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "name": span.name,
        "span_type": span.span_type,
        "start_time_ns": span.start_time_ns,
        "end_time_ns": span.end_time_ns,
        "status": span.status,
        "status_message": span.status_message,
        "attributes": span.attributes if isinstance(span, Span) else dict(span.attributes),
        "events": [e.to_dict() for e in span.events],
        "inputs": span.inputs,
        "outputs": span.outputs,
    }


@dataclass
class Span:
    span_id: str
    name: str
    parent_id: str | None = None
    span_type: str = "UNKNOWN"
    start_time_ns: int = 0
    end_time_ns: int | None = None
    status: str = "OK"
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    inputs: Any = None
    outputs: Any = None

    def to_dict(self) -> dict[str, Any]:
        return span_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Span:
        return cls(
            span_id=d["span_id"],
            name=d.get("name", ""),
            parent_id=d.get("parent_id"),
            span_type=d.get("span_type") or "UNKNOWN",
            start_time_ns=int(d.get("start_time_ns") or 0),
            end_time_ns=d.get("end_time_ns"),
            status=d.get("status") or "OK",
            status_message=d.get("status_message") or "",
            attributes=dict(d.get("attributes") or {}),
            events=[SpanEvent.from_dict(e) for e in d.get("events") or []],
            inputs=d.get("inputs"),
            outputs=d.get("outputs"),
        )

    @property
    def parent_span_id(self) -> str | None:  # MLflow's name
        return self.parent_id

    @property
    def duration_ms(self) -> float | None:
        if self.end_time_ns is None:
            return None
        return (self.end_time_ns - self.start_time_ns) / 1e6


class TraceDoc(TypedDict, total=False):
    """A trace's info document as every backend stores and returns it (``TraceInfo.to_dict``
    plus where its spans are): what searches, filters and tag writes work on."""

    trace_id: str
    experiment_id: str
    name: str | None
    timestamp_ms: int
    execution_time_ms: int | None
    status: str
    tags: dict[str, str]
    metadata: dict[str, str]
    request_preview: str | None
    response_preview: str | None
    client_request_id: str | None
    spans_at: list[int]  # the local store's pointer into its span file
    span_kinds: str  # and its spans' distinct (name, type, status), filters.spans


# Keys of the stored info document; also the order of ``to_dict``.
INFO_FIELDS = (
    "trace_id",
    "experiment_id",
    "name",
    "timestamp_ms",
    "execution_time_ms",
    "status",
    "tags",
    "metadata",
    "request_preview",
    "response_preview",
    "client_request_id",
)


@dataclass
class TraceInfo:
    trace_id: str
    experiment_id: str = "0"
    name: str | None = None
    timestamp_ms: int = 0
    execution_time_ms: int | None = None
    status: str = "OK"
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    request_preview: str | None = None
    response_preview: str | None = None
    client_request_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in INFO_FIELDS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TraceInfo:
        return cls(
            trace_id=d["trace_id"],
            experiment_id=str(d.get("experiment_id", "0")),
            name=d.get("name"),
            timestamp_ms=int(d.get("timestamp_ms") or 0),
            execution_time_ms=d.get("execution_time_ms"),
            status=d.get("status") or "OK",
            tags=dict(d.get("tags") or {}),
            metadata=dict(d.get("metadata") or {}),
            request_preview=d.get("request_preview"),
            response_preview=d.get("response_preview"),
            client_request_id=d.get("client_request_id"),
        )

    # MLflow 2 and 3 spellings, so ported code reads the same fields.
    @property
    def request_id(self) -> str:
        return self.trace_id

    @property
    def state(self) -> str:
        return self.status

    @property
    def request_time(self) -> int:
        return self.timestamp_ms

    @property
    def execution_duration(self) -> int | None:
        return self.execution_time_ms

    @property
    def end_time_ms(self) -> int | None:
        if self.execution_time_ms is None:
            return None
        return self.timestamp_ms + self.execution_time_ms

    @property
    def request_metadata(self) -> dict[str, str]:
        return self.metadata

    @property
    def trace_metadata(self) -> dict[str, str]:
        return self.metadata


class TraceData:
    """The spans of a trace, loaded on first access when they come from a search."""

    def __init__(
        self,
        spans: list[Span] | None = None,
        loader: Callable[[], list[Span]] | None = None,
    ):
        self._spans = spans
        self._loader = loader

    @property
    def spans(self) -> list[Span]:
        if self._spans is None:
            self._spans = self._loader() if self._loader else []
        return self._spans

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TraceData) and self.spans == other.spans

    def __repr__(self) -> str:
        return f"TraceData(spans={len(self.spans)})"


class Trace:
    def __init__(self, info: TraceInfo, data: TraceData | None = None):
        self.info = info
        self.data = data if data is not None else TraceData([])

    @property
    def spans(self) -> list[Span]:
        return self.data.spans

    def to_dict(self) -> dict[str, Any]:
        return {"info": self.info.to_dict(), "spans": [s.to_dict() for s in self.spans]}

    def to_json(self, pretty: bool = False) -> str:
        """The trace as JSON text (MLflow's ``Trace.to_json``); ``tracetag import`` reads it."""
        option = orjson.OPT_INDENT_2 if pretty else 0
        return orjson.dumps(self.to_dict(), option=option).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> Trace:
        import orjson

        return cls.from_dict(orjson.loads(text))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trace:
        return cls(
            TraceInfo.from_dict(d["info"]),
            TraceData([Span.from_dict(s) for s in d.get("spans") or []]),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Trace) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Trace(trace_id={self.info.trace_id!r}, status={self.info.status!r})"


def trace_to_doc(trace: Trace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A trace as the store keeps it: the info document and the span dicts."""
    return trace.info.to_dict(), [s.to_dict() for s in trace.spans]


def doc_to_trace(doc: dict[str, Any], load_spans: Callable[[], list[dict[str, Any]]]) -> Trace:
    """A Trace whose spans are read (by ``load_spans``) only when first used."""
    return Trace(
        TraceInfo.from_dict(doc),
        TraceData(loader=lambda: [Span.from_dict(s) for s in load_spans()]),
    )
