"""Reading traces written by MLflow (``Trace.to_dict()`` / ``to_json()``) and by tracetag itself.

MLflow 3 writes ``{"info": {...}, "data": {"spans": [...]}}`` with OpenTelemetry-style spans:
ids are base64 of raw bytes (stored here as hex, as OpenTelemetry prints them), times are
nanoseconds, and span attributes are JSON-encoded strings, of which ``mlflow.spanType``,
``mlflow.spanInputs`` and ``mlflow.spanOutputs`` become the span's own fields. MLflow 2's
``request_id`` / ``timestamp_ms`` / ``request_metadata`` shape is read as well.
tracetag's own export is ``{"info": {...}, "spans": [...]}`` in the model's ``to_dict`` form.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import ImportFormatError, InvalidInput
from .filters.fields import format_iso_ms, parse_iso_ms
from .formats import BOM, invalid_json
from .model import Span, SpanEvent, Trace, TraceData, TraceInfo
from .schema import check_trace

__all__ = [
    "ImportResult",
    "json_or_text",
    "json_records",
    "mlflow_info",
    "mlflow_span",
    "mlflow_trace",
    "parse_traces",
    "to_mlflow_dict",
    "trace_from_any",
]

_STATES = {
    "OK": "OK",
    "ERROR": "ERROR",
    "IN_PROGRESS": "IN_PROGRESS",
    "STATE_UNSPECIFIED": "IN_PROGRESS",
    "TRACE_STATUS_UNSPECIFIED": "IN_PROGRESS",
}
_SPAN_STATUS = {"STATUS_CODE_OK": "OK", "STATUS_CODE_ERROR": "ERROR", "STATUS_CODE_UNSET": "UNSET"}
_LIFTED = ("mlflow.spanType", "mlflow.spanInputs", "mlflow.spanOutputs")


@dataclass
class ImportResult:
    traces: list[Trace] = field(default_factory=list)
    # (line or item number, message) for each record that could not be read
    invalid: list[tuple[int, str]] = field(default_factory=list)


def _hex_id(value: str | None) -> str | None:
    """MLflow's JSON span ids are base64 of the raw bytes; hex ones pass through."""
    if value is None:
        return None
    if len(value) in (16, 32) and all(c in "0123456789abcdef" for c in value):
        return value
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return value


_JSON_START = frozenset('{["-0123456789tfn')


def json_or_text(value: Any) -> Any:
    """MLflow's JSON-encoded attribute text decoded; text that is not JSON stays as it is (a
    plain word is told by its first character, without the cost of a failed parse)."""
    if isinstance(value, str) and value[:1] in _JSON_START:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _to_ms(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"unreadable time {value!r}")
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"unreadable time {value!r}")
        return int(value)
    text = str(value)
    if text.isdigit():
        return int(text)
    try:
        return parse_iso_ms(text)
    except ValueError:
        raise ValueError(f"unreadable time {text!r}") from None


def _duration_ms(value: Any) -> int | None:
    if value is None:
        return None
    try:
        if isinstance(value, str) and value.endswith("s"):  # protobuf Duration JSON: "1.853s"
            return round(float(value[:-1]) * 1000)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError
        return int(value)
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"unreadable duration {value!r}") from None


def mlflow_span(s: dict[str, Any]) -> Span:
    attrs = {k: json_or_text(v) for k, v in (s.get("attributes") or {}).items()}
    status = s.get("status") or {}
    code = status.get("code", "STATUS_CODE_UNSET") if isinstance(status, dict) else status
    return Span(
        span_id=_hex_id(s.get("span_id") or s.get("context", {}).get("span_id")) or "",
        name=s.get("name", ""),
        parent_id=_hex_id(s.get("parent_span_id") or s.get("parent_id")),
        span_type=str(attrs.pop("mlflow.spanType", None) or "UNKNOWN"),
        start_time_ns=int(s.get("start_time_unix_nano") or s.get("start_time_ns") or 0),
        end_time_ns=(
            int(s["end_time_unix_nano"]) if s.get("end_time_unix_nano") is not None else None
        ),
        status=_SPAN_STATUS.get(code, code) or "UNSET",
        status_message=(status.get("message") or "") if isinstance(status, dict) else "",
        attributes={k: v for k, v in attrs.items() if k not in _LIFTED},
        events=[
            SpanEvent(
                e.get("name", ""),
                int(e.get("time_unix_nano") or e.get("timestamp_ns") or 0),
                {k: json_or_text(v) for k, v in (e.get("attributes") or {}).items()},
            )
            for e in s.get("events") or []
        ],
        inputs=attrs.get("mlflow.spanInputs"),
        outputs=attrs.get("mlflow.spanOutputs"),
    )


def _kv(value: Any) -> dict[str, str]:
    """MLflow 2 sometimes writes tags as ``[{"key": k, "value": v}]``."""
    pairs = [(x["key"], x["value"]) for x in value] if isinstance(value, list) else value or {}
    if isinstance(pairs, dict):
        pairs = pairs.items()
    out: dict[str, str] = {}
    for k, v in pairs:
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"tag and metadata keys and values are strings, not {k!r}: {v!r}")
        out[k] = v
    return out


def mlflow_trace(d: dict[str, Any]) -> Trace:
    info = d["info"]
    tags = _kv(info.get("tags"))
    metadata = _kv(info.get("trace_metadata") or info.get("request_metadata"))
    location = info.get("trace_location") or {}
    experiment = (location.get("mlflow_experiment") or {}).get("experiment_id")
    if experiment is None:
        experiment = info.get("experiment_id", "0")
    trace_id = info.get("trace_id") or info.get("request_id")
    if not trace_id:
        raise ValueError("no trace_id")
    state = info.get("state") or info.get("status") or "OK"
    if state not in _STATES:
        raise ValueError(f"unknown state {state!r}")
    timestamp = info.get("request_time", info.get("timestamp_ms"))
    duration = info.get("execution_duration_ms", info.get("execution_duration"))
    if duration is None:
        duration = info.get("execution_time_ms")
    spans = [mlflow_span(s) for s in (d.get("data") or {}).get("spans") or []]
    return Trace(
        TraceInfo(
            trace_id=str(trace_id),
            experiment_id=str(experiment),
            name=tags.get("mlflow.traceName") or (spans[0].name if spans else None),
            timestamp_ms=_to_ms(timestamp),
            execution_time_ms=_duration_ms(duration),
            status=_STATES[state],
            tags=tags,
            metadata=metadata,
            request_preview=info.get("request_preview"),
            response_preview=info.get("response_preview"),
            client_request_id=info.get("client_request_id"),
        ),
        TraceData(spans),
    )


def trace_from_any(d: Any) -> Trace:
    """One trace from an MLflow (2 or 3) or a tracetag JSON document."""
    if not isinstance(d, dict) or not isinstance(d.get("info"), dict):
        raise ValueError("not a trace: expected an object with an 'info' object")
    if "data" in d:
        return mlflow_trace(d)
    if "spans" in d:
        trace = Trace.from_dict(d)
        if trace.info.status not in _STATES:
            raise ValueError(f"unknown status {trace.info.status!r}")
        return trace
    return mlflow_trace(d)


def json_records(
    data: bytes, source: str, *, skip_invalid: bool
) -> tuple[list[tuple[int, Any]], str, list[tuple[int, str]]]:
    """The JSON values of a file, numbered: a document, an array's items, or one per line
    (JSON lines). Returns (numbered values, what a number counts: ``item`` or ``line``, lines
    that are not JSON, when ``skip_invalid``; else the first raises ``ImportFormatError``)."""
    data = data.removeprefix(BOM)
    stripped = data.strip()
    whole: Any = None
    if stripped[:1] in (b"[", b"{"):
        try:
            whole = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            whole = None
    if isinstance(whole, list):
        return [(i + 1, x) for i, x in enumerate(whole)], "item", []
    if isinstance(whole, dict):
        return [(1, whole)], "item" if b"\n" in stripped else "line", []
    items: list[tuple[int, Any]] = []
    invalid: list[tuple[int, str]] = []
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append((lineno, orjson.loads(line)))
        except orjson.JSONDecodeError as e:
            msg = invalid_json(e)
            if not skip_invalid:
                raise ImportFormatError(f"{source}: line {lineno}: {msg}") from None
            invalid.append((lineno, msg))
    return items, "line", invalid


def parse_traces(data: bytes, source: str = "-", *, skip_invalid: bool = False) -> ImportResult:
    """Every trace in ``data``: a JSON array, a single document, or one document per line.

    Unless ``skip_invalid``, the first unreadable record raises ``ImportFormatError`` naming its
    line, so that callers write nothing from a bad file.
    """

    result = ImportResult()
    items, unit, result.invalid = json_records(data, source, skip_invalid=skip_invalid)
    for number, obj in items:
        try:
            trace = trace_from_any(obj)
            # The store's own rules, so nothing that would break a later read gets in.
            check_trace(trace.info.to_dict(), [s.to_dict() for s in trace.spans])
        except (ValueError, KeyError, TypeError, AttributeError, InvalidInput) as e:
            ok = isinstance(e, ValueError | InvalidInput)
            msg = str(e) if ok else f"missing or wrong field {e}"
            if not skip_invalid:
                raise ImportFormatError(f"{source}: {unit} {number}: {msg}") from None
            result.invalid.append((number, msg))
            continue
        result.traces.append(trace)
    return result


# -- writing MLflow's form -----------------------------------------------------------------------

_SPAN_CODES = {"OK": "STATUS_CODE_OK", "ERROR": "STATUS_CODE_ERROR", "UNSET": "STATUS_CODE_UNSET"}


def _b64_id(hex_id: str | None, size: int) -> str | None:
    """An id as MLflow's JSON has it: base64 of the raw bytes (ids that are not hex of the
    right size are hashed to that size, so every export reads back into MLflow)."""
    if hex_id is None:
        return None
    try:
        raw = bytes.fromhex(hex_id)
    except ValueError:
        raw = b""
    if len(raw) != size:
        import hashlib

        raw = hashlib.sha256(hex_id.encode()).digest()[:size]
    return base64.b64encode(raw).decode()


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def mlflow_info(doc: dict[str, Any], experiment_id: str | None = None) -> dict[str, Any]:
    """An info document as MLflow 3's ``TraceInfoV3`` JSON (in ``experiment_id`` if given),
    with the duration as ``Trace.to_dict()`` writes it (``execution_duration_ms``)."""
    info: dict[str, Any] = {
        "trace_id": doc["trace_id"],
        "trace_location": {
            "type": "MLFLOW_EXPERIMENT",
            "mlflow_experiment": {"experiment_id": experiment_id or doc["experiment_id"]},
        },
        "request_time": format_iso_ms(doc["timestamp_ms"]),
        "state": doc["status"],
        "trace_metadata": dict(doc.get("metadata") or {}),
        "tags": dict(doc.get("tags") or {}),
        "request_preview": doc.get("request_preview"),
        "response_preview": doc.get("response_preview"),
        "execution_duration_ms": doc.get("execution_time_ms"),
    }
    if doc.get("client_request_id") is not None:
        info["client_request_id"] = doc["client_request_id"]
    return info


def to_mlflow_dict(trace: Trace) -> dict[str, Any]:
    """``trace`` as MLflow 3's ``Trace.to_dict()``: what ``Trace.from_dict`` (and
    ``tracetag import``) read back."""
    i = trace.info
    otel_id = i.trace_id[3:] if i.trace_id.startswith("tr-") else i.trace_id
    spans = [_mlflow_span_dict(otel_id, s) for s in trace.spans]
    return {"info": mlflow_info(i.to_dict()), "data": {"spans": spans}}


def _mlflow_span_dict(otel_id: str, s: Span) -> dict[str, Any]:
    attrs = {k: _json_text(v) for k, v in s.attributes.items()}
    attrs["mlflow.spanType"] = _json_text(s.span_type)
    if s.inputs is not None:
        attrs["mlflow.spanInputs"] = _json_text(s.inputs)
    if s.outputs is not None:
        attrs["mlflow.spanOutputs"] = _json_text(s.outputs)
    return {
        "trace_id": _b64_id(otel_id, 16),
        "span_id": _b64_id(s.span_id, 8),
        "parent_span_id": _b64_id(s.parent_id, 8),
        "name": s.name,
        "kind": "SPAN_KIND_INTERNAL",
        "start_time_unix_nano": s.start_time_ns,
        "end_time_unix_nano": s.end_time_ns,
        "events": [
            {
                "name": e.name,
                "time_unix_nano": e.timestamp_ns,
                "attributes": {k: _json_text(v) for k, v in e.attributes.items()},
            }
            for e in s.events
        ],
        "status": {
            "code": _SPAN_CODES.get(s.status, "STATUS_CODE_UNSET"),
            "message": s.status_message,
        },
        "attributes": attrs,
        "links": [],
    }
