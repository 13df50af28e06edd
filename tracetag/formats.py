"""Names of the formats tracetag reads and writes (imports nothing, so the command line can
check an option without loading what handles the format)."""

from __future__ import annotations

__all__ = ["BOM", "EXPORT_FORMATS", "IMPORT_FORMATS", "LABEL_MODES", "invalid_json"]

EXPORT_FORMATS = ("tracetag", "mlflow", "otlp")
# json: MLflow's or tracetag's trace JSON, told apart per document; otlp: JSON or protobuf.
IMPORT_FORMATS = ("json", "otlp")
# How OTLP label lists (langfuse.trace.tags, tag.tags) become key/value tags.
LABEL_MODES = ("tag", "joined", "ignore")
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, as editors write before JSON


def invalid_json(e: Exception) -> str:
    """What is wrong with bytes that are not JSON, in words (orjson's reason, no position)."""
    return f"invalid JSON ({str(e).split(':')[0]})"
