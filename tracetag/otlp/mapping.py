"""OpenTelemetry spans as tracetag traces, and back.

Reading follows MLflow 3's mapping, so that a trace sent to MLflow and to tracetag reads the
same in both, and takes what Langfuse, OpenInference (Phoenix), OpenLLMetry and the GenAI
semantic conventions write:

- trace id: ``tr-`` + the 32-hex OpenTelemetry trace id (or the span attribute
  ``mlflow.traceRequestId`` where MLflow wrote one);
- tags: ``mlflow.traceTag.<key>`` span attributes (the root's win), the resource's
  ``service.name``, and labels (``langfuse.trace.tags``, ``tag.tags``: string lists), which
  become tags ``<label>=true`` (``labels="tag"``), one tag ``labels=a,b`` (``"joined"``) or
  nothing (``"ignore"``);
- metadata: ``session.id`` / ``langfuse.session.id`` / ``gen_ai.conversation.id`` as
  ``mlflow.trace.session``, ``user.id`` / ``langfuse.user.id`` as ``mlflow.trace.user``,
  ``langfuse.trace.metadata.<key>`` as ``<key>``;
- span type: ``mlflow.spanType``, ``openinference.span.kind``, ``traceloop.span.kind``,
  ``langfuse.observation.type``, ``gen_ai.operation.name``;
- inputs and outputs: ``mlflow.spanInputs/Outputs``, ``input.value``/``output.value``,
  ``traceloop.entity.input/output``, ``langfuse.observation.input/output``;
- the trace: the root (the span without a parent) gives name, times, previews and state
  (``ERROR`` if its status is an error, else ``OK``); a trace whose root has not arrived, or
  has not ended, is ``IN_PROGRESS``.

MLflow writes every span attribute as JSON text; on a span that carries MLflow's attributes,
string values are read as JSON. Other producers' strings stay strings.

Writing (:func:`otlp_request`) is MLflow's form plus what peers read: tags as
``mlflow.traceTag.<key>`` on the root, session and user as ``session.id``/``user.id``, the
other metadata and what spans cannot say (the trace's own times, previews and ids) in one
root attribute ``tracetag.trace``, so that tracetag -> OTLP -> tracetag is exact.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from ..formats import LABEL_MODES
from ..interop import json_or_text
from ..model import preview_of
from ..tags import MAX_KEY_LENGTH, MAX_VALUE_LENGTH
from .decode import OtelSpan

__all__ = [
    "LABEL_MODES",
    "Assembled",
    "assemble",
    "derive_info",
    "merge_trace",
    "otel_ids",
    "otlp_request",
    "otlp_span",
]

SESSION = "mlflow.trace.session"
USER = "mlflow.trace.user"
TRACE_ATTR = "tracetag.trace"
_TAG_PREFIX = "mlflow.traceTag."
_LANGFUSE_META = "langfuse.trace.metadata."
_SESSION_KEYS = ("session.id", "langfuse.session.id", "gen_ai.conversation.id")
_USER_KEYS = ("user.id", "langfuse.user.id")
_LABEL_KEYS = ("langfuse.trace.tags", "langfuse.tags", "tag.tags")
_NOT_KEY = re.compile(r"[^\w\-.:/ ]")
_TR_ID = re.compile(r"tr-[0-9a-f]{32}")

# What other conventions call a span's kind, as MLflow's span types.
_TYPES: dict[str, dict[str, str]] = {
    "openinference.span.kind": {
        k: k
        for k in (
            "LLM",
            "CHAIN",
            "RETRIEVER",
            "RERANKER",
            "TOOL",
            "AGENT",
            "EMBEDDING",
            "GUARDRAIL",
            "EVALUATOR",
        )
    },
    "traceloop.span.kind": {"workflow": "CHAIN", "task": "CHAIN", "agent": "AGENT", "tool": "TOOL"},
    "langfuse.observation.type": {
        "generation": "LLM",
        "agent": "AGENT",
        "tool": "TOOL",
        "chain": "CHAIN",
        "retriever": "RETRIEVER",
        "embedding": "EMBEDDING",
        "evaluator": "EVALUATOR",
        "guardrail": "GUARDRAIL",
    },
    "gen_ai.operation.name": {
        "chat": "CHAT_MODEL",
        "text_completion": "LLM",
        "generate_content": "LLM",
        "embeddings": "EMBEDDING",
        "execute_tool": "TOOL",
        "invoke_agent": "AGENT",
        "create_agent": "AGENT",
    },
}
# Attributes whose content has a home of its own: they become the span's fields.
_INPUTS = (
    "mlflow.spanInputs",
    "input.value",
    "traceloop.entity.input",
    "langfuse.observation.input",
)
_OUTPUTS = (
    "mlflow.spanOutputs",
    "output.value",
    "traceloop.entity.output",
    "langfuse.observation.output",
)
_LIFTED = frozenset(
    ("mlflow.spanType", TRACE_ATTR, "input.mime_type", "output.mime_type")
) | frozenset(_INPUTS + _OUTPUTS)
_PREFIXES = (_TAG_PREFIX, _LANGFUSE_META)
# Keys that say something about the trace (besides the prefixes, which MLflow's own spans
# carry: a span with an mlflow.* key is always looked at).
_HINT_KEYS = frozenset(
    (*_SESSION_KEYS, *_USER_KEYS, *_LABEL_KEYS, TRACE_ATTR, "langfuse.trace.name")
)
_SPAN_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}
_STATUS_CODES = {"UNSET": 0, "OK": 1, "ERROR": 2}


_json = json_or_text


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _label_key(label: str) -> str:
    return _NOT_KEY.sub("_", label.strip())[:MAX_KEY_LENGTH] or "_"


def _labels(value: Any) -> list[str]:
    """Langfuse takes a list, a JSON list in a string, or a comma-separated string."""
    if isinstance(value, str):
        parsed = _json(value) if value.lstrip().startswith("[") else value.split(",")
        value = parsed if isinstance(parsed, list) else [value]
    if not isinstance(value, list):
        return []
    return [str(v).strip() for v in value if str(v).strip()]


@dataclass
class _Hints:
    """What one span says about its trace."""

    tags: dict[str, str]
    metadata: dict[str, str]
    labels: list[str]
    trace: dict[str, Any] | None  # tracetag's own TRACE_ATTR
    trace_id: str | None  # mlflow.traceRequestId
    name: str | None  # langfuse.trace.name


_NO_HINTS = _Hints({}, {}, [], None, None, None)  # read only


def _kind_and_content(attrs: dict[str, Any]) -> tuple[str, Any, Any]:
    """A span's type, inputs and outputs, from whichever convention its attributes follow."""
    span_type = attrs.get("mlflow.spanType")
    if not isinstance(span_type, str) or not span_type:
        span_type = "UNKNOWN"
        for key, table in _TYPES.items():
            kind = attrs.get(key)
            if kind is not None and str(kind) in table:
                span_type = table[str(kind)]
                break
    inputs = outputs = None
    for key in _INPUTS:
        if key in attrs:
            inputs = attrs[key]
            break
    for key in _OUTPUTS:
        if key in attrs:
            outputs = attrs[key]
            break
    if attrs.get("input.mime_type") == "application/json" and "mlflow.spanInputs" not in attrs:
        inputs = _json(inputs)
    if attrs.get("output.mime_type") == "application/json" and "mlflow.spanOutputs" not in attrs:
        outputs = _json(outputs)
    return span_type, inputs, outputs


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            return value
    return None


def _hints(attrs: dict[str, Any]) -> _Hints:
    """What a span's attributes say about its trace; trace tags leave the attributes."""
    hints = _Hints({}, {}, [], None, None, None)
    for k in [k for k in attrs if k.startswith(_PREFIXES)]:
        if k.startswith(_TAG_PREFIX):
            v = attrs.pop(k)
            if v is not None:
                hints.tags[k[len(_TAG_PREFIX) :]] = _text(v)
        elif k.startswith(_LANGFUSE_META) and attrs[k] is not None:
            hints.metadata[k[len(_LANGFUSE_META) :]] = _text(attrs[k])
    for meta, keys in ((SESSION, _SESSION_KEYS), (USER, _USER_KEYS)):
        value = _first(attrs, keys)
        if value is not None:
            hints.metadata[meta] = _text(value)
    labels = _first(attrs, _LABEL_KEYS)
    if labels is not None:
        hints.labels = _labels(labels)
    trace = attrs.get(TRACE_ATTR)
    hints.trace = trace if isinstance(trace, dict) else None
    rid = attrs.get("mlflow.traceRequestId")
    hints.trace_id = rid if isinstance(rid, str) and rid else None
    name = attrs.get("langfuse.trace.name")
    hints.name = name if isinstance(name, str) else None
    return hints


def _span(o: OtelSpan) -> tuple[dict[str, Any], _Hints]:
    raw = o.attributes
    # MLflow encodes every attribute as JSON text; other SDKs' strings are plain strings.
    prefixed = [k for k in raw if k.startswith(("mlflow.", "langfuse."))]
    mlflow_made = any(k.startswith("mlflow.") for k in prefixed)
    attrs = {k: _json(v) for k, v in raw.items()} if mlflow_made else dict(raw)
    hints = _hints(attrs) if prefixed or not _HINT_KEYS.isdisjoint(raw) else _NO_HINTS
    span_type, inputs, outputs = _kind_and_content(attrs)
    lifted = _LIFTED.intersection(attrs)
    span = {
        "span_id": o.span_id,
        "parent_id": o.parent_id,
        "name": o.name,
        "span_type": span_type,
        "start_time_ns": o.start_ns,
        "end_time_ns": o.end_ns,
        "status": _SPAN_STATUS[o.status],
        "status_message": o.message,
        "attributes": {k: v for k, v in attrs.items() if k not in lifted} if lifted else attrs,
        "events": [
            {
                "name": e["name"],
                "timestamp_ns": e["timestamp_ns"],
                "attributes": (
                    {k: _json(v) for k, v in e["attributes"].items()}
                    if mlflow_made
                    else e["attributes"]
                ),
            }
            for e in o.events
        ],
        "inputs": inputs,
        "outputs": outputs,
    }
    return span, hints


@dataclass
class Assembled:
    """One trace's worth of an OTLP request: its info document and the spans that came."""

    doc: dict[str, Any]
    spans: list[dict[str, Any]]
    # The tags and metadata the spans set, which a merge lays over what the store has.
    tags: dict[str, str]
    metadata: dict[str, str]
    info: dict[str, Any] | None  # tracetag's own trace attribute, when the root carried it
    name: str | None  # a name the spans gave the trace (langfuse.trace.name)


def assemble(
    spans: Iterable[OtelSpan], experiment_id: str | None = None, labels: str = "tag"
) -> list[Assembled]:
    """The traces of ``spans`` (grouped by trace id, in order of first appearance), in
    ``experiment_id`` (None: the one tracetag's own export names, else ``0``)."""
    groups: dict[str, list[OtelSpan]] = {}
    for s in spans:
        groups.setdefault(s.trace_id, []).append(s)
    return [_trace(hex_id, group, experiment_id, labels) for hex_id, group in groups.items()]


def _trace(hex_id: str, group: list[OtelSpan], experiment_id: str | None, labels: str) -> Assembled:
    converted = [_span(o) for o in group]
    # Later copies of a span (a retried request) replace earlier ones.
    by_id: dict[str, dict[str, Any]] = {}
    for span, _h in converted:
        by_id[span["span_id"]] = span
    tags: dict[str, str] = {}
    metadata: dict[str, str] = {}
    info: dict[str, Any] | None = None
    trace_id: str | None = None
    name: str | None = None
    resource_service = next(
        (o.resource.get("service.name") for o in group if o.resource.get("service.name")), None
    )
    if isinstance(resource_service, str):
        tags["service.name"] = resource_service
    # Roots last, so that what the root says wins.
    order = sorted(zip(group, converted, strict=True), key=lambda x: x[0].parent_id is None)
    for o, (_span_dict, h) in order:
        if labels != "ignore" and h.labels:
            if labels == "joined":
                tags["labels"] = ",".join(h.labels)[:MAX_VALUE_LENGTH]
            else:
                tags.update({_label_key(label): "true" for label in h.labels})
        tags.update(h.tags)
        metadata.update(h.metadata)
        trace_id = h.trace_id or trace_id
        name = h.name or name
        if o.parent_id is None and h.trace is not None:
            info = h.trace
    if info is not None and info.get("synthetic_root"):
        # tracetag's export of a trace without a root span: the stand-in root goes again.
        by_id = {k: s for k, s in by_id.items() if s["parent_id"] is not None}
    spans = list(by_id.values())
    if experiment_id is None:
        named = (info or {}).get("experiment_id")
        experiment_id = named if isinstance(named, str) else "0"
    doc = derive_info(spans, trace_id or f"tr-{hex_id}", experiment_id, name, info)
    if info is not None:
        metadata.update(_str_dict(info.get("metadata")))
    doc["tags"] = dict(tags)
    doc["metadata"] = dict(metadata)
    return Assembled(doc, spans, tags, metadata, info, name)


def _str_dict(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def derive_info(
    spans: list[dict[str, Any]],
    trace_id: str,
    experiment_id: str,
    name: str | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A trace's info from its spans: the root's name, times, previews and state."""
    root = next((s for s in spans if s["parent_id"] is None), None)
    if root is not None:
        start = root["start_time_ns"]
        end = root["end_time_ns"]
        status = "IN_PROGRESS" if not end else "ERROR" if root["status"] == "ERROR" else "OK"
        duration = (end - start) // 1_000_000 if end else None
    else:
        start = min((s["start_time_ns"] for s in spans), default=0)
        status, duration = "IN_PROGRESS", None
    doc: dict[str, Any] = {
        "trace_id": trace_id,
        "experiment_id": experiment_id,
        "name": name or (root["name"] if root else None),
        "timestamp_ms": start // 1_000_000,
        "execution_time_ms": duration,
        "status": status,
        "tags": {},
        "metadata": {},
        "request_preview": preview_of(root["inputs"]) if root else None,
        "response_preview": preview_of(root["outputs"]) if root else None,
        "client_request_id": None,
    }
    if info is not None:  # tracetag's own export: the trace exactly as it was
        for k in (
            "name",
            "timestamp_ms",
            "execution_time_ms",
            "status",
            "request_preview",
            "response_preview",
            "client_request_id",
        ):
            if k in info:
                doc[k] = info[k]
        if isinstance(info.get("trace_id"), str):
            doc["trace_id"] = info["trace_id"]
    return doc


def merge_trace(
    old: dict[str, Any], old_spans: list[dict[str, Any]], new: Assembled
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A trace already stored, with more of its spans: spans by id (the new copy wins), the
    info derived again from all of them, the stored tags and metadata with the new ones laid
    over (a tag someone set meanwhile stays), and the trace stays in its experiment."""
    by_id = {s["span_id"]: s for s in old_spans}
    by_id.update((s["span_id"], s) for s in new.spans)
    spans = list(by_id.values())
    doc = derive_info(spans, old["trace_id"], old["experiment_id"], new.name, new.info)
    if doc["name"] is None:
        doc["name"] = old.get("name")
    doc["tags"] = {**(old.get("tags") or {}), **new.tags}
    doc["metadata"] = {**(old.get("metadata") or {}), **new.metadata}
    if doc["client_request_id"] is None:
        doc["client_request_id"] = old.get("client_request_id")
    return doc, spans


# -- writing -------------------------------------------------------------------------------------


def otel_ids(trace_id: str) -> str:
    """The 32-hex OpenTelemetry id of a tracetag trace id (hashed when it is not one)."""
    if _TR_ID.fullmatch(trace_id):
        return trace_id[3:]
    if len(trace_id) == 32 and all(c in "0123456789abcdef" for c in trace_id):
        return trace_id
    return hashlib.sha256(trace_id.encode()).hexdigest()[:32]


def _span_hex(span_id: str) -> str:
    if len(span_id) == 16 and all(c in "0123456789abcdef" for c in span_id):
        return span_id
    return hashlib.sha256(span_id.encode()).hexdigest()[:16]


def _attr(key: str, value: Any) -> dict[str, Any]:
    """MLflow reads a span attribute's string as JSON and stores what it decodes; numbers and
    booleans go as typed OTLP values (sent as text, MLflow would give them back as strings)."""
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": orjson.dumps(value).decode()}}


def otlp_span(
    tid: str, s: dict[str, Any], extra: dict[str, Any] | None = None, *, open_end: int = 0
) -> dict[str, Any]:
    """One tracetag span as an OTLP/JSON span, in MLflow's attribute form (``extra``: more
    attributes, set after the span's own; ``open_end``: the end time of a span that has not
    ended, 0 in OTLP's own terms)."""
    attrs = dict(s.get("attributes") or {})
    attrs["mlflow.spanType"] = s.get("span_type") or "UNKNOWN"
    if s.get("inputs") is not None:
        attrs["mlflow.spanInputs"] = s["inputs"]
    if s.get("outputs") is not None:
        attrs["mlflow.spanOutputs"] = s["outputs"]
    attrs.update(extra or {})
    span: dict[str, Any] = {
        "traceId": tid,
        "spanId": _span_hex(s["span_id"]),
        "name": s.get("name") or "",
        "kind": 1,
        "startTimeUnixNano": str(s.get("start_time_ns") or 0),
        "endTimeUnixNano": str(s.get("end_time_ns") or open_end),
        "attributes": [_attr(k, v) for k, v in attrs.items()],
        "status": {"code": _STATUS_CODES.get(s.get("status") or "UNSET", 0)},
        "events": [
            {
                "name": e.get("name") or "",
                "timeUnixNano": str(e.get("timestamp_ns") or 0),
                "attributes": [_attr(k, v) for k, v in (e.get("attributes") or {}).items()],
            }
            for e in s.get("events") or []
        ],
    }
    if s.get("status_message"):
        span["status"]["message"] = s["status_message"]
    if s.get("parent_id"):
        span["parentSpanId"] = _span_hex(s["parent_id"])
    return span


def _trace_spans(doc: dict[str, Any], spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spans of a trace as OTLP/JSON with the trace's own data on the root."""
    tid = otel_ids(doc["trace_id"])
    tags = dict(doc.get("tags") or {})
    tags.pop("service.name", None)  # goes on the resource, where MLflow and peers read it
    metadata = dict(doc.get("metadata") or {})
    root_attrs: dict[str, Any] = {f"{_TAG_PREFIX}{k}": v for k, v in tags.items()}
    for key, meta in (("session.id", SESSION), ("user.id", USER)):
        if meta in metadata:
            root_attrs[key] = metadata.pop(meta)
    root_attrs[TRACE_ATTR] = {
        "trace_id": doc["trace_id"],
        "experiment_id": doc["experiment_id"],
        "name": doc.get("name"),
        "timestamp_ms": doc["timestamp_ms"],
        "execution_time_ms": doc.get("execution_time_ms"),
        "status": doc["status"],
        "request_preview": doc.get("request_preview"),
        "response_preview": doc.get("response_preview"),
        "client_request_id": doc.get("client_request_id"),
        "metadata": metadata,
    }
    roots = [s for s in spans if not s.get("parent_id")]
    if not roots:
        # A trace without a root span (an info without spans, say) still has to travel: it
        # goes as a root of its own that reading drops again.
        root_attrs[TRACE_ATTR]["synthetic_root"] = True
        start = doc["timestamp_ms"] * 1_000_000
        synthetic = {
            "span_id": hashlib.sha256(doc["trace_id"].encode()).hexdigest()[:16],
            "name": doc.get("name") or "",
            "start_time_ns": start,
            "end_time_ns": start + (doc.get("execution_time_ms") or 0) * 1_000_000,
            "status": "ERROR" if doc["status"] == "ERROR" else "OK",
        }
        spans = [synthetic, *spans]
        roots = [synthetic]
    first_root = roots[0]["span_id"]
    return [otlp_span(tid, s, root_attrs if s["span_id"] == first_root else None) for s in spans]


def otlp_request(
    items: list[tuple[dict[str, Any], list[dict[str, Any]]]], *, trace_data: bool = True
) -> dict[str, Any]:
    """One OTLP/JSON ``ExportTraceServiceRequest`` with the traces of ``items`` (one resource
    per ``service.name`` tag). ``trace_data=False``: the spans alone (for a server that takes
    the trace's info separately)."""
    by_service: dict[str | None, list[dict[str, Any]]] = {}
    for doc, spans in items:
        if trace_data:
            service = (doc.get("tags") or {}).get("service.name")
            by_service.setdefault(service, []).extend(_trace_spans(doc, spans))
        else:
            tid = otel_ids(doc["trace_id"])
            # An MLflow server takes an unfinished span's end as its start (0 would be 1970).
            by_service.setdefault(None, []).extend(
                otlp_span(tid, s, open_end=s.get("start_time_ns") or 0) for s in spans
            )
    resources = []
    for service, spans in by_service.items():
        attrs = []
        if service is not None:
            attrs.append({"key": "service.name", "value": {"stringValue": service}})
        resources.append(
            {
                "resource": {"attributes": attrs},
                "scopeSpans": [{"scope": {"name": "tracetag"}, "spans": spans}],
            }
        )
    return {"resourceSpans": resources}
