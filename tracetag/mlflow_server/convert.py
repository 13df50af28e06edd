"""Traces as MLflow's REST API speaks them, both ways.

Reading: trace infos are ``TraceInfoV3`` JSON (what ``tracetag import`` reads from
``Trace.to_dict()``), spans protobuf-canonical JSON (base64 ids, ``[{key, value: AnyValue}]``
attributes). Writing: spans go as OTLP/JSON (hex ids) to ``/v1/traces``, whose span attributes
MLflow reads as JSON-encoded strings; the info (tags, metadata, state, times) as ``TraceInfoV3``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ..errors import InvalidInput
from ..interop import mlflow_info, mlflow_span, mlflow_trace

__all__ = ["doc_of_info", "info_of_doc", "otlp_request", "spans_of_rest"]

_OTEL_ID = re.compile(r"tr-([0-9a-f]{32})")
_STATUS_CODES = {"UNSET": 0, "OK": 1, "ERROR": 2}


def doc_of_info(info: dict[str, Any]) -> dict[str, Any]:
    """A ``TraceInfoV3`` as tracetag's info document."""
    return mlflow_trace({"info": info, "data": {"spans": []}}).info.to_dict()


def _any_value(v: dict[str, Any]) -> Any:
    """An OTLP ``AnyValue`` in protobuf-canonical JSON as a Python value."""
    if "string_value" in v:
        return v["string_value"]
    if "bool_value" in v:
        return bool(v["bool_value"])
    if "int_value" in v:
        return int(v["int_value"])
    if "double_value" in v:
        return float(v["double_value"])
    if "array_value" in v:
        return [_any_value(x) for x in (v["array_value"].get("values") or [])]
    if "kvlist_value" in v:
        return {
            kv["key"]: _any_value(kv.get("value") or {})
            for kv in v["kvlist_value"].get("values") or []
        }
    return None


def spans_of_rest(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans of a ``traces/get`` answer as tracetag's span dicts. MLflow has decoded the JSON
    of span attributes into AnyValues already; event attributes are still JSON text."""
    out = []
    for s in spans:
        attrs = {a["key"]: _any_value(a.get("value") or {}) for a in s.get("attributes") or []}
        events = [
            {
                **e,
                "attributes": {
                    a["key"]: _any_value(a.get("value") or {}) for a in e.get("attributes") or []
                },
            }
            for e in s.get("events") or []
        ]
        # _mlflow_span reads Trace.to_dict()'s form, whose attribute values are JSON text.
        encoded = {k: orjson.dumps(v).decode() for k, v in attrs.items()}
        span = mlflow_span({**s, "attributes": encoded, "events": events})
        out.append(span.to_dict())
    return out


def info_of_doc(doc: dict[str, Any], experiment_id: str) -> dict[str, Any]:
    """The ``TraceInfoV3`` the traces endpoint takes: its duration is a protobuf Duration
    (``"1.500s"``), and absent fields are left out."""
    info = mlflow_info(doc, experiment_id)
    ms = info.pop("execution_duration_ms")
    if ms is not None:
        info["execution_duration"] = f"{ms / 1000:.3f}s"
    return {k: v for k, v in info.items() if v is not None}


def otel_trace_id(trace_id: str) -> str:
    m = _OTEL_ID.fullmatch(trace_id)
    if m is None:
        raise InvalidInput(
            f"trace id {trace_id!r} cannot go to an MLflow server: it takes 'tr-' and 32 hex "
            "digits (an OpenTelemetry trace id)"
        )
    return m.group(1)


def _attr(key: str, value: Any) -> dict[str, Any]:
    """MLflow reads a span attribute's string as JSON and stores what it decodes; a number or
    a boolean sent that way comes back as a string, so those go as typed OTLP values."""
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": orjson.dumps(value).decode()}}


def _otlp_span(tid: str, s: dict[str, Any]) -> dict[str, Any]:
    attrs = [_attr(k, v) for k, v in (s.get("attributes") or {}).items()]
    attrs.append(_attr("mlflow.spanType", s.get("span_type") or "UNKNOWN"))
    for key, field in (("mlflow.spanInputs", "inputs"), ("mlflow.spanOutputs", "outputs")):
        if s.get(field) is not None:
            attrs.append(_attr(key, s[field]))
    span: dict[str, Any] = {
        "traceId": tid,
        "spanId": s["span_id"],
        "name": s.get("name") or "",
        "kind": 1,
        "startTimeUnixNano": str(s.get("start_time_ns") or 0),
        "endTimeUnixNano": str(s.get("end_time_ns") or s.get("start_time_ns") or 0),
        "attributes": attrs,
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
        span["parentSpanId"] = s["parent_id"]
    return span


def otlp_request(items: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> dict[str, Any]:
    """One OTLP/JSON ``ExportTraceServiceRequest`` with the spans of ``items``."""
    spans = [
        _otlp_span(otel_trace_id(doc["trace_id"]), s) for doc, doc_spans in items for s in doc_spans
    ]
    scope = {"scope": {"name": "tracetag"}, "spans": spans}
    return {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [scope]}]}
