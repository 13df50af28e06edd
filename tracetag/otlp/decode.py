"""OTLP trace requests, JSON or protobuf, as plain spans.

Every shape OTLP data travels in reads into the same :class:`OtelSpan` list:

- OTLP/JSON as the specification has it: lowerCamelCase keys, **hex** ids, integer enums,
  64-bit integers as decimal strings;
- protobuf's canonical JSON (``json_format``, MLflow's REST answers): base64 ids, enum names,
  snake_case keys when asked to preserve field names;
- binary protobuf (``application/x-protobuf``, ``.pb`` files), with ``opentelemetry-proto``
  (the ``tracetag[otlp]`` extra); a file may hold one request or several, each preceded by
  its length as four big-endian bytes (the Collector's file exporter in proto mode).

Errors are :class:`ValueError` naming the place (``resourceSpans[0].scopeSpans[1].spans[3]``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OtelSpan", "ProtobufMissing", "decode_json_request", "decode_protobuf"]

_HEX = frozenset("0123456789abcdefABCDEF")
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
# An AnyValue nested deeper than this is refused: no reader needs it, and each level costs
# recursion here and in every later encoder.
MAX_VALUE_DEPTH = 64


class ProtobufMissing(ValueError):
    """Binary OTLP needs ``opentelemetry-proto``, which the base install leaves out."""


@dataclass(slots=True)
class OtelSpan:
    trace_id: str  # 32 hex digits, lower case
    span_id: str  # 16 hex digits
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int | None  # None (or 0 on the wire): the span has not ended
    attributes: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    status: int = 0  # 0 UNSET, 1 OK, 2 ERROR
    message: str = ""
    resource: dict[str, Any] = field(default_factory=dict)


def _id(value: Any, size: int, where: str, what: str) -> str:
    """Hex as OTLP/JSON has it, or base64 as protobuf's JSON mapping writes it."""
    if not isinstance(value, str):
        raise ValueError(f"{where}: {what} must be a string, not {type(value).__name__}")
    if len(value) == 2 * size and _HEX.issuperset(value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise ValueError(f"{where}: {what} {value[:40]!r} is not {size} bytes in hex or base64")
    return raw.hex()


def _int(value: Any, where: str, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{where}: {what} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"{where}: {what} {str(value)[:40]!r} is not an integer")


def _get(d: dict[str, Any], camel: str, snake: str) -> Any:
    v = d.get(camel)
    return d.get(snake) if v is None else v


def _list(d: dict[str, Any], camel: str, snake: str, where: str) -> list[Any]:
    v = _get(d, camel, snake)
    if v is None:
        return []
    if not isinstance(v, list):
        raise ValueError(f"{where}.{camel} must be a list")
    return v


def _any_json(v: Any, where: str, depth: int = 0) -> Any:
    if depth > MAX_VALUE_DEPTH:
        raise ValueError(f"{where}: attribute value nests deeper than {MAX_VALUE_DEPTH} levels")
    if not isinstance(v, dict):
        raise ValueError(f"{where}: attribute value must be an object (AnyValue)")
    for camel, snake in (("stringValue", "string_value"), ("boolValue", "bool_value")):
        x = _get(v, camel, snake)
        if x is not None:
            if not isinstance(x, str | bool):
                raise ValueError(f"{where}: {camel} has the wrong type")
            return x
    x = _get(v, "intValue", "int_value")
    if x is not None:
        return _int(x, where, "intValue")
    x = _get(v, "doubleValue", "double_value")
    if x is not None:
        if isinstance(x, bool) or not isinstance(x, int | float | str):
            raise ValueError(f"{where}: doubleValue has the wrong type")
        try:
            return float(x)  # protobuf JSON writes "NaN" and "Infinity" as strings
        except ValueError:
            raise ValueError(f"{where}: doubleValue {x!r} is not a number") from None
    x = _get(v, "arrayValue", "array_value")
    if x is not None:
        return [_any_json(i, where, depth + 1) for i in _list(x, "values", "values", where)]
    x = _get(v, "kvlistValue", "kvlist_value")
    if x is not None:
        return _attrs_json(_list(x, "values", "values", where), where, depth + 1)
    x = _get(v, "bytesValue", "bytes_value")
    if x is not None:
        return x  # base64 text, as JSON carries bytes
    return None  # an empty AnyValue


def _attrs_json(items: list[Any], where: str, depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in items:
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise ValueError(f"{where}: an attribute needs a string key")
        out[kv["key"]] = _any_json(kv.get("value") or {}, f"{where} attribute {kv['key']!r}", depth)
    return out


def _status_json(s: Any, where: str) -> tuple[int, str]:
    if s is None:
        return 0, ""
    if not isinstance(s, dict):
        raise ValueError(f"{where}: status must be an object")
    code = s.get("code", 0)
    if isinstance(code, str) and code in _STATUS_NAMES:
        code = _STATUS_NAMES[code]
    code = _int(code, where, "status code")
    if code not in (0, 1, 2):
        raise ValueError(f"{where}: status code {code} is not 0, 1 or 2")
    message = s.get("message") or ""
    if not isinstance(message, str):
        raise ValueError(f"{where}: status message must be a string")
    return code, message


def _span_json(s: Any, where: str, resource: dict[str, Any]) -> OtelSpan:
    if not isinstance(s, dict):
        raise ValueError(f"{where}: a span must be an object")
    parent = _get(s, "parentSpanId", "parent_span_id")
    end = _get(s, "endTimeUnixNano", "end_time_unix_nano")
    name = s.get("name") or ""
    if not isinstance(name, str):
        raise ValueError(f"{where}: name must be a string")
    events = []
    for j, e in enumerate(_list(s, "events", "events", where)):
        ew = f"{where}.events[{j}]"
        if not isinstance(e, dict):
            raise ValueError(f"{ew}: an event must be an object")
        events.append(
            {
                "name": e.get("name") or "",
                "timestamp_ns": _int(
                    _get(e, "timeUnixNano", "time_unix_nano") or 0, ew, "timeUnixNano"
                ),
                "attributes": _attrs_json(_list(e, "attributes", "attributes", ew), ew),
            }
        )
    code, message = _status_json(s.get("status"), where)
    end_ns = _int(end, where, "endTimeUnixNano") if end is not None else 0
    return OtelSpan(
        trace_id=_id(_get(s, "traceId", "trace_id"), 16, where, "traceId"),
        span_id=_id(_get(s, "spanId", "span_id"), 8, where, "spanId"),
        parent_id=_id(parent, 8, where, "parentSpanId") if parent else None,
        name=name,
        start_ns=_int(_get(s, "startTimeUnixNano", "start_time_unix_nano") or 0, where, "start"),
        end_ns=end_ns or None,
        attributes=_attrs_json(_list(s, "attributes", "attributes", where), where),
        events=events,
        status=code,
        message=message,
        resource=resource,
    )


def is_json_request(obj: Any) -> bool:
    """Whether a decoded JSON value is an ``ExportTraceServiceRequest``."""
    return isinstance(obj, dict) and ("resourceSpans" in obj or "resource_spans" in obj)


def decode_json_request(obj: Any) -> list[OtelSpan]:
    """The spans of one OTLP/JSON ``ExportTraceServiceRequest`` (already parsed JSON)."""
    if not is_json_request(obj):
        raise ValueError("not an OTLP trace request: expected an object with 'resourceSpans'")
    spans: list[OtelSpan] = []
    for i, rs in enumerate(_list(obj, "resourceSpans", "resource_spans", "")):
        rw = f"resourceSpans[{i}]"
        if not isinstance(rs, dict):
            raise ValueError(f"{rw}: must be an object")
        res = rs.get("resource") or {}
        if not isinstance(res, dict):
            raise ValueError(f"{rw}.resource: must be an object")
        resource = _attrs_json(_list(res, "attributes", "attributes", rw), f"{rw}.resource")
        scopes = _list(rs, "scopeSpans", "scope_spans", rw) or _list(
            rs, "instrumentationLibrarySpans", "instrumentation_library_spans", rw
        )
        for j, ss in enumerate(scopes):
            sw = f"{rw}.scopeSpans[{j}]"
            if not isinstance(ss, dict):
                raise ValueError(f"{sw}: must be an object")
            for k, s in enumerate(_list(ss, "spans", "spans", sw)):
                spans.append(_span_json(s, f"{sw}.spans[{k}]", resource))
    return spans


# -- protobuf ------------------------------------------------------------------------------------


def _request_type() -> Any:
    try:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    except ImportError:
        raise ProtobufMissing(
            "binary OTLP (protobuf) needs the otlp extra: pip install 'tracetag[otlp]'"
        ) from None
    return trace_service_pb2.ExportTraceServiceRequest


def protobuf_available() -> bool:
    try:
        _request_type()
    except ProtobufMissing:
        return False
    return True


def _any_pb(v: Any, where: str) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_pb(x, where) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _attrs_pb(v.kvlist_value.values, where)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, kind)


def _attrs_pb(items: Any, where: str) -> dict[str, Any]:
    return {kv.key: _any_pb(kv.value, f"{where} attribute {kv.key!r}") for kv in items}


def _raw_id(raw: bytes, size: int, where: str, what: str) -> str:
    if len(raw) != size:
        raise ValueError(f"{where}: {what} is {len(raw)} bytes, not {size}")
    return raw.hex()


def _spans_pb(request: Any) -> list[OtelSpan]:
    spans: list[OtelSpan] = []
    for i, rs in enumerate(request.resource_spans):
        resource = _attrs_pb(rs.resource.attributes, f"resourceSpans[{i}].resource")
        for j, ss in enumerate(rs.scope_spans):
            for k, s in enumerate(ss.spans):
                where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                code = s.status.code
                if code not in (0, 1, 2):
                    raise ValueError(f"{where}: status code {code} is not 0, 1 or 2")
                spans.append(
                    OtelSpan(
                        trace_id=_raw_id(s.trace_id, 16, where, "traceId"),
                        span_id=_raw_id(s.span_id, 8, where, "spanId"),
                        parent_id=(
                            _raw_id(s.parent_span_id, 8, where, "parentSpanId")
                            if s.parent_span_id
                            else None
                        ),
                        name=s.name,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano or None,
                        attributes=_attrs_pb(s.attributes, where),
                        events=[
                            {
                                "name": e.name,
                                "timestamp_ns": e.time_unix_nano,
                                "attributes": _attrs_pb(e.attributes, f"{where}.events"),
                            }
                            for e in s.events
                        ],
                        status=code,
                        message=s.status.message,
                        resource=resource,
                    )
                )
    return spans


def decode_protobuf(data: bytes, *, framed: bool | None = None) -> list[list[OtelSpan]]:
    """The requests in ``data``: one ``ExportTraceServiceRequest``, or (``framed``, or when
    ``None`` and one message does not parse) several, each after a 4-byte big-endian length."""
    from google.protobuf.message import DecodeError

    request_type = _request_type()
    if not framed:
        try:
            return [_spans_pb(request_type.FromString(data))]
        except (DecodeError, RecursionError) as e:
            if framed is False:
                raise ValueError(f"not an OTLP protobuf request ({e})") from None
    out: list[list[OtelSpan]] = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError(f"byte {pos}: not an OTLP protobuf request (truncated length)")
        size = int.from_bytes(data[pos : pos + 4], "big")
        if pos + 4 + size > len(data):
            raise ValueError(f"byte {pos}: not an OTLP protobuf request (truncated message)")
        try:
            out.append(_spans_pb(request_type.FromString(data[pos + 4 : pos + 4 + size])))
        except (DecodeError, RecursionError) as e:
            raise ValueError(f"byte {pos}: not an OTLP protobuf request ({e})") from None
        pos += 4 + size
    return out
