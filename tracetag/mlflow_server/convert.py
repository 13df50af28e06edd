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

__all__ = ["doc_of_info", "info_of_doc", "otel_trace_id", "spans_of_rest"]

_OTEL_ID = re.compile(r"tr-([0-9a-f]{32})")


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
    (``"1.500s"``), absent fields are left out, and the name is the tag MLflow reads it from."""
    info = mlflow_info(doc, experiment_id)
    if doc.get("name") and "mlflow.traceName" not in info["tags"]:
        info["tags"]["mlflow.traceName"] = doc["name"]  # where MLflow keeps a trace's name
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
