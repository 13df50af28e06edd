"""Reference pages for ``tracetag help TOPIC``: what does not fit in one command's --help."""

from __future__ import annotations

__all__ = ["TOPICS"]

FILTERS = """\
Filters (--filter / -f, and filter_string= in Python)

A filter is a condition on each trace; only traces for which it is TRUE match.

Fields
  tags.KEY, tag.KEY             a tag (tags.service.name is the tag "service.name";
                                quote other keys: tags.`review status`)
  metadata.KEY                  a metadata entry (request_metadata.KEY too)
  status                        OK, ERROR or IN_PROGRESS (state is the same field)
  name                          the trace's name
  timestamp_ms                  start time (timestamp, request_time)
  execution_time_ms             duration (execution_time, execution_duration_ms)
  end_time_ms, trace_id, client_request_id, run_id, experiment_id
  Attributes may be written attributes.status or trace.status as well.

Comparisons
  =  !=  <  <=  >  >=           tags compare as numbers with a number: tags.retries > 3
  LIKE 'pat%'  ILIKE  NOT LIKE  % any run of characters, _ one character, \\ escapes
  RLIKE 'regex'                 RE2 syntax, matches anywhere (anchor with ^ and $)
  IN ('a', 'b')  NOT IN (...)
  IS NULL  IS NOT NULL          a tag that is absent / present

Logic
  AND, OR, NOT and parentheses; AND binds tighter than OR. A comparison with an
  absent tag is unknown, not false: tags.env != 'prod' skips traces without env
  (add OR tags.env IS NULL to include them).

Durations and dates
  execution_time_ms > 5s        ms, s, m, h, d, w (1.5m is 90000 ms)
  timestamp_ms >= '2025-03-05'  ISO dates and times, UTC unless a zone is given
  timestamp_ms > now() - 24h    $TRACETAG_NOW fixes now() for reproducible reports

Examples
  tags.environment = 'production' AND status = 'ERROR' AND execution_time_ms > 5s
  tags.model_version IN ('v2.0.0', 'v2.1.0') OR tags.retries > 3
  NOT (tags.environment = 'production' OR tags.priority IS NULL)
  name LIKE 'rag%' AND timestamp_ms > now() - 7d

See how a filter is read:   tracetag search --explain -f "..."
"""

FORMATS = """\
Output formats (--output / -o)

  table    for people: a table sized to the terminal (the default on a terminal)
  tsv      tab-separated with a header line (the default in a pipe); tabs, newlines,
           backslashes and control characters in values are written as \\t \\n \\\\ \\x1b
  csv      comma-separated; text starting with = + - @ gets a leading ' so that a
           spreadsheet shows it instead of running it
  json     one JSON document; jsonl: one JSON object a line
  ids      (search) one trace id a line, for | tracetag tag set -

  --no-header leaves out the header line of tsv and csv; search --columns picks columns,
  and tags.KEY / metadata.KEY get a column of their own.
  In a pipe, and with -o ids, search prints every match unless -n N is given.

Trace files (import --format, export --format)

  tracetag  tracetag's JSON lines ({"info", "spans"}): imports back identically (export's
            default)
  mlflow    MLflow's Trace.to_dict() / to_json(), `mlflow traces get`; MLflow 2's shape too
  otlp      OpenTelemetry: OTLP/JSON requests (one, an array, or one a line, as a
            Collector's file exporter writes; hex or base64 ids) or protobuf (.pb, one
            request or several, length-prefixed); export writes one request a line
  import tells them apart by itself (json: mlflow or tracetag); tracetag serve receives
  OTLP over HTTP. README: "OpenTelemetry in and out" for how attributes map.
"""

TOPICS = {"filters": FILTERS, "formats": FORMATS}
