"""Names of the formats tracetag reads and writes (imports nothing, so the command line can
check an option without loading what handles the format)."""

from __future__ import annotations

__all__ = ["EXPORT_FORMATS", "IMPORT_FORMATS", "LABEL_MODES"]

EXPORT_FORMATS = ("tracetag", "mlflow", "otlp")
# json: MLflow's or tracetag's trace JSON, told apart per document; otlp: JSON or protobuf.
IMPORT_FORMATS = ("json", "otlp")
# How OTLP label lists (langfuse.trace.tags, tag.tags) become key/value tags.
LABEL_MODES = ("tag", "joined", "ignore")
