"""OpenTelemetry (OTLP) in and out: files, requests, and the mapping to tracetag traces.

JSON needs nothing beyond tracetag's own dependencies; binary protobuf needs the ``otlp``
extra (``opentelemetry-proto``).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import ImportFormatError
from ..formats import BOM, invalid_json
from ..interop import json_records
from .decode import (
    OtelSpan,
    ProtobufMissing,
    decode_json_request,
    decode_protobuf,
    is_json_request,
    protobuf_available,
)
from .mapping import LABEL_MODES, Assembled, assemble, merge_trace, otlp_request

__all__ = [
    "LABEL_MODES",
    "Assembled",
    "OtelSpan",
    "ProtobufMissing",
    "assemble",
    "decode_body",
    "detect_format",
    "merge_trace",
    "otlp_request",
    "protobuf_available",
    "read_otlp",
]


def _first_json(data: bytes) -> Any:
    """The first JSON value of ``data`` (a document, an array's first item, a first line)."""
    stripped = data.lstrip()
    try:
        whole = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        line = stripped.split(b"\n", 1)[0]
        try:
            whole = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
    if isinstance(whole, list):
        return whole[0] if whole else None
    return whole


def detect_format(data: bytes) -> str:
    """``otlp`` for OTLP requests (JSON or protobuf), ``json`` for MLflow or tracetag traces."""
    data = data.removeprefix(BOM)
    head = data.lstrip()[:1]
    if head not in (b"{", b"["):
        return "otlp" if head else "json"  # not JSON: protobuf; empty: nothing to import
    return "otlp" if is_json_request(_first_json(data)) else "json"


def read_otlp(
    data: bytes, source: str = "-", *, skip_invalid: bool = False
) -> tuple[list[OtelSpan], list[tuple[int, str]]]:
    """The spans of every request in an OTLP file: JSON (a request, an array of them, one
    per line as the Collector's file exporter writes) or protobuf. A record that cannot be
    read raises :class:`ImportFormatError` naming it, unless ``skip_invalid`` (then it is
    listed, and none of its spans are taken)."""
    data = data.removeprefix(BOM)
    stripped = data.strip()
    if stripped[:1] not in (b"{", b"["):
        try:
            requests = decode_protobuf(data)
        except ValueError as e:
            raise ImportFormatError(f"{source}: {e}") from None
        return [s for r in requests for s in r], []
    spans: list[OtelSpan] = []
    items, unit, invalid = json_records(data, source, skip_invalid=skip_invalid)
    for number, obj in items:
        try:
            spans.extend(decode_json_request(obj))
        except ValueError as e:
            if not skip_invalid:
                raise ImportFormatError(f"{source}: {unit} {number}: {e}") from None
            invalid.append((number, str(e)))
    return spans, invalid


def decode_body(body: bytes, content_type: str) -> list[OtelSpan]:
    """The spans of one OTLP/HTTP request body (already decompressed); ValueError if it is
    not one."""
    if content_type == "application/json":
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise ValueError(invalid_json(e)) from None
        return decode_json_request(obj)
    return decode_protobuf(body, framed=False)[0]
