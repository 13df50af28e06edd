"""How traces look in the terminal UI: table cells, the span tree, the detail texts.

Every string from the data goes through :func:`plain` and into a :class:`rich.text.Text`, never
Rich markup: a tag value of ``[bold]`` or an escape sequence shows as what it is.
"""

from __future__ import annotations

from typing import Any

import orjson
from rich.text import Text

from ..cli.output import visible
from ..filters.fields import format_iso_ms

__all__ = [
    "COLUMNS",
    "ORDER_OF_COLUMN",
    "bar",
    "metadata_text",
    "plain",
    "row_cells",
    "span_label",
    "span_text",
    "trace_text",
]

# Id, status and duration first: what fits at 80 columns is what a review needs.
COLUMNS = [
    ("trace_id", "trace id"),
    ("status", "status"),
    ("duration", "duration"),
    ("time", "time"),
    ("name", "name"),
]
ORDER_OF_COLUMN = {
    "trace_id": "trace_id",
    "time": "timestamp_ms",
    "name": "name",
    "status": "status",
    "duration": "execution_time_ms",
}
STATUS_STYLE = {"OK": "green", "ERROR": "bold red", "IN_PROGRESS": "yellow", "UNSET": "dim"}
MAX_SHOWN = 4000  # characters of one input, output or attribute shown in the detail pane


def plain(value: Any) -> str:
    """Data as text a terminal shows as it is (control characters escaped)."""
    return visible(value, newlines=True)


def duration(ms: Any) -> str:
    if ms is None:
        return ""
    ms = float(ms)
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f}s"
    return f"{ms / 60_000:.1f}m"


def row_cells(doc: dict[str, Any], tag_columns: list[str], marked: bool) -> list[Text]:
    ts = format_iso_ms(doc["timestamp_ms"])
    status = doc.get("status") or ""
    tags = doc.get("tags") or {}
    return [
        Text("●" if marked else ""),
        Text(visible(doc["trace_id"])),
        Text(visible(status), style=STATUS_STYLE.get(status, "")),
        Text(duration(doc.get("execution_time_ms")), justify="right"),
        Text(f"{ts[5:10]} {ts[11:19]}"),  # month-day time: the year costs columns
        Text(visible(doc.get("name") or "")[:40]),
        *(Text(visible(tags.get(k, ""))[:40]) for k in tag_columns),
    ]


def bar(fraction: float, width: int) -> str:
    """A horizontal bar in eighths of a cell."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(width)


def span_label(span: Any, start: int, total: int, width: int = 12) -> Text:
    """A span in the tree: a bar placed where it ran within the trace, then its name, type
    and duration."""
    end = span.end_time_ns or span.start_time_ns
    offset = (span.start_time_ns - start) / total if total > 0 else 0.0
    length = (end - span.start_time_ns) / total if total > 0 else 0.0
    lead = min(width - 1, round(offset * width))
    shown = bar(length * width / max(1, width - lead), width - lead) if total else " " * width
    style = "red" if span.status == "ERROR" else "cyan"
    label = Text(" " * lead)
    label.append(shown, style=style)
    label.append(f" {plain(span.name)}")
    label.append(f" [{plain(span.span_type)}]", style="dim")
    ms = None if span.end_time_ns is None else (end - span.start_time_ns) / 1e6
    label.append(f" {duration(ms)}" if ms is not None else " running", style="bold")
    if span.status == "ERROR":
        label.append(" ERROR", style="bold red")
    return label


def _json(value: Any) -> str:
    text = (
        value
        if isinstance(value, str)
        else orjson.dumps(
            value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=repr
        ).decode()
    )
    text = plain(text)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + f"... ({len(text)} chars)"


def _section(out: Text, title: str, body: str) -> None:
    out.append(f"\n{title}\n", style="bold")
    out.append(body + "\n")


def span_text(span: Any) -> Text:
    """A span's inputs, outputs, attributes and events."""
    out = Text()
    out.append(plain(span.name), style="bold")
    out.append(f"  {plain(span.span_type)}  {plain(span.status)}", style="dim")
    if span.status_message:
        out.append(f"\n{plain(span.status_message)}", style="red")
    if span.inputs is not None:
        _section(out, "inputs", _json(span.inputs))
    if span.outputs is not None:
        _section(out, "outputs", _json(span.outputs))
    if span.attributes:
        _section(out, "attributes", _json(span.attributes))
    for e in span.events:
        _section(out, f"event {plain(e.name)}", _json(e.attributes))
    return out


def trace_text(trace: Any) -> Text:
    """A trace's info and tags (what a review looks at first; metadata comes last)."""
    i = trace.info
    out = Text()
    out.append(plain(i.trace_id), style="bold")
    out.append(f"\n{plain(i.name or '')}  ")
    out.append(plain(i.status), style=STATUS_STYLE.get(i.status, ""))
    out.append(f"  {format_iso_ms(i.timestamp_ms)}  {duration(i.execution_time_ms)}")
    out.append(f"  experiment {plain(i.experiment_id)}", style="dim")
    _pairs(out, "tags", i.tags)
    return out


def metadata_text(trace: Any) -> Text:
    out = Text()
    _pairs(out, "metadata", trace.info.metadata)
    return out


def _pairs(out: Text, title: str, pairs: dict[str, str]) -> None:
    out.append(f"\n{title} ({len(pairs)})", style="bold")
    for k, v in sorted(pairs.items()):
        out.append(f"\n  {plain(k)}", style="cyan")
        out.append(f" = {plain(v)[:300]}")
