"""Rendering for the CLI: Rich on a terminal, plain TSV / CSV / JSON for pipes and scripts.

Data goes to stdout, summaries and notes to stderr, so ``| jq`` and ``| xargs`` see only data.
"""

from __future__ import annotations

import contextlib
import csv
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from ..model import Span, Trace, TraceInfo


def default_format() -> str:
    """A Rich table on a terminal; tab-separated text with a header line in a pipe."""
    return "table" if sys.stdout.isatty() else "tsv"


def _console(color: bool = True, stderr: bool = False) -> Any:
    import os

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # A table asked for in a pipe has no terminal width to fit: give it room rather than 80.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, no_color=not color, highlight=False, soft_wrap=False, width=width)


@contextlib.contextmanager
def progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A transient progress bar on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total or None)


_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_CONTROL_ALL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def visible(text: Any, newlines: bool = False) -> str:
    """Text for a person's terminal: control characters (ESC, CR, BEL...) and bidirectional
    overrides shown as ``\\x1b``-style escapes, so data can never move the cursor, retitle the
    window, clear the screen or hide what follows. Tabs become spaces; newlines are escaped too
    unless ``newlines``."""
    text = "" if text is None else str(text)
    text = text.replace("\t", " ")
    return (_CONTROL if newlines else _CONTROL_ALL).sub(_escape_char, text)


def tsv_cell(value: Any) -> str:
    """A TSV field that a program can split and decode exactly: backslash, tab, newline, CR
    and other control characters are written as backslash escapes (as PostgreSQL's text
    format does); everything else is as stored."""
    text = "" if value is None else str(value)
    if not _CONTROL_ALL.search(text) and "\\" not in text:
        return text
    text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return _CONTROL_ALL.sub(_escape_char, text)


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV field that a spreadsheet will not run: text starting with ``= + - @`` gets a
    leading ``'`` (numbers stay numbers); control characters other than newline and tab are
    escaped. JSON is the lossless format."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    text = _CONTROL.sub(_escape_char, value)
    if text.startswith(_FORMULA) and not _NUMBER_RE.fullmatch(text):
        return "'" + text
    return text


_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 trace``, ``2 traces``."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def _err(text: str) -> None:
    sys.stderr.write(visible(text, newlines=True) + "\n")


def _write_json(obj: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


def fmt_time(ms: int | None) -> str:
    """For people: UTC to the second (headers say UTC)."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso_time(ms: int | None) -> str:
    """For programs: ISO 8601 in UTC with milliseconds, which the filter's dates accept."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def fmt_duration(ms: int | float | None) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f}s"
    return f"{ms / 60_000:.1f}m"


def _user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags minus MLflow's bookkeeping (``mlflow.*``), for compact listings."""
    return {k: v for k, v in tags.items() if not k.startswith("mlflow.")}


def _tsv(header: Sequence[str], rows: Iterable[Sequence[Any]], show_header: bool = True) -> None:
    out = sys.stdout
    if show_header:
        out.write("\t".join(tsv_cell(h) for h in header) + "\n")
    for row in rows:
        out.write("\t".join(tsv_cell(c) for c in row) + "\n")
    out.flush()


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]], show_header: bool = True) -> None:
    w = csv.writer(sys.stdout, lineterminator="\n")
    if show_header:
        w.writerow([csv_cell(h) for h in header])
    for row in rows:
        w.writerow([csv_cell(c) for c in row])
    sys.stdout.flush()


def _jsonl(items: Iterable[Any]) -> None:
    out = sys.stdout.buffer
    for item in items:
        out.write(orjson.dumps(item) + b"\n")
    out.flush()


def _cell(value: Any) -> Any:
    """A table cell: data is never markup (``[/api]`` stays text, ``[link=...]`` no link)."""
    from rich.text import Text

    if isinstance(value, Text):
        return value
    return Text(visible(value, newlines=True))


def _table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    color: bool,
    wrap: Sequence[str] = (),
    right: Sequence[str] = (),
    drop: Sequence[str] = (),
    wrap_min: int = 16,
    **kw: Any,
) -> None:
    """A Rich table that fits the terminal: columns not in ``wrap`` never wrap (ids and times
    stay whole, so they can be copied), those in ``right`` (numbers) align right, and when the
    columns cannot fit (``wrap`` columns counted at ``wrap_min``), those in ``drop`` are left
    out, first named first."""
    from rich import box
    from rich.table import Table

    console = _console(color)
    rows = [list(r) for r in rows]
    widths = {
        name: max([len(name)] + [_width(r[i]) for r in rows]) for i, name in enumerate(header)
    }
    keep = list(header)
    for name in drop:
        need = sum(min(widths[c], wrap_min) if c in wrap else widths[c] for c in keep)
        need += 3 * len(keep)
        if need <= console.width:
            break
        if name in keep:
            keep.remove(name)
    table = Table(header_style="bold" if color else None, box=box.SIMPLE_HEAD, pad_edge=False, **kw)
    for name in keep:
        justify: Literal["left", "right"] = "right" if name in right else "left"
        if name in wrap:
            table.add_column(name, overflow="fold", ratio=1, justify=justify, min_width=8)
        else:
            table.add_column(name, no_wrap=True, justify=justify, min_width=widths[name])
    index = [list(header).index(name) for name in keep]
    for row in rows:
        table.add_row(*(_cell(row[i]) for i in index))
    console.print(table)


def _width(value: Any) -> int:
    from rich.cells import cell_len

    text = value.plain if hasattr(value, "plain") else visible(value, newlines=True)
    return max((cell_len(line) for line in text.split("\n")), default=0)


# -- search ---------------------------------------------------------------------------------

MAX_TABLE_ROWS = 10_000  # a Rich table lays out every row in memory before printing one
SEARCH_COLUMNS = ("trace_id", "time", "name", "status", "duration", "tags")


def parse_columns(text: str | None) -> list[str] | None:
    """``--columns trace_id,status,tags.user_id``: the search listing's columns, in order. A
    ``tags.KEY`` or ``metadata.KEY`` gets a column of its own, which is what a script wants
    instead of parsing the joined ``tags`` column."""
    if text is None:
        return None
    from ..errors import InvalidInput

    cols = [c.strip() for c in text.split(",") if c.strip()]
    if not cols:
        raise InvalidInput("--columns is empty; e.g. --columns trace_id,status,tags.user_id")
    for c in cols:
        prefix, _, key = c.partition(".")
        if c not in SEARCH_COLUMNS and not (prefix in ("tags", "metadata") and key):
            raise InvalidInput(
                f"unknown column {c!r}; use {', '.join(SEARCH_COLUMNS)}, tags.KEY or metadata.KEY"
            )
    return cols


def traces(
    page: Any,
    fmt: str,
    color: bool,
    columns: list[str] | None = None,
    header: bool = True,
) -> None:
    """A search page (info documents, streamed where the format allows)."""
    out = sys.stdout.buffer
    token = page.token
    if fmt == "ids":
        for d in page:
            out.write(d["trace_id"].encode() + b"\n")
    elif fmt == "json":
        out.write(b'{"traces": [')
        for n, d in enumerate(page):
            out.write((b",\n  " if n else b"\n  ") + orjson.dumps(_info(d)))
        out.write(b'\n], "next_page_token": ' + orjson.dumps(token) + b"}\n")
    elif fmt == "jsonl":
        for d in page:
            out.write(orjson.dumps(_info(d)) + b"\n")
    else:
        out.flush()
        pretty = fmt == "table"
        cols = columns or list(SEARCH_COLUMNS)
        names = [_column_title(c, pretty) for c in cols]
        rows = (_trace_row(TraceInfo.from_dict(d), cols, pretty, color) for d in page)
        if pretty:
            _table(
                names,
                rows,
                color,
                wrap=("name", "tags"),
                right=("duration",),
                drop=("time (UTC)", "name", "duration", "status"),
                wrap_min=28,  # tags stay readable: other columns go first
            )
        else:
            (_csv if fmt == "csv" else _tsv)(names, rows, header)
    out.flush()
    if fmt != "json":
        if token:
            _err(f"{plural(len(page), 'trace')}; next page: --page-token {token}")
        elif fmt == "table":
            _err(plural(len(page), "trace"))


def _column_title(col: str, pretty: bool) -> str:
    if col == "time":
        return "time (UTC)" if pretty else "time"
    if col == "duration" and not pretty:
        return "duration_ms"
    return col


def _info(doc: dict) -> dict:
    """The public fields of an info document (not the store's span pointer)."""
    return TraceInfo.from_dict(doc).to_dict()


def _trace_row(i: TraceInfo, cols: Sequence[str], pretty: bool, color: bool) -> list[Any]:
    """One listing row: formatted for a terminal, or raw values for pipes and spreadsheets."""
    row: list[Any] = []
    for c in cols:
        if c == "trace_id":
            row.append(i.trace_id)
        elif c == "time":
            row.append(fmt_time(i.timestamp_ms) if pretty else iso_time(i.timestamp_ms))
        elif c == "name":
            row.append(i.name)
        elif c == "status":
            row.append(_status(i.status, color) if pretty else i.status)
        elif c == "duration":
            row.append(fmt_duration(i.execution_time_ms) if pretty else i.execution_time_ms)
        elif c == "tags":
            tags = sorted(_user_tags(i.tags).items())
            # Joined with ", " so that a wide terminal shows them side by side and a narrow one
            # wraps between tags. In pipes, use --columns tags.KEY for an unambiguous field.
            row.append(", ".join(f"{k}={v}" for k, v in tags))
        else:
            prefix, _, key = c.partition(".")
            row.append((i.tags if prefix == "tags" else i.metadata).get(key))
    return row


def _status(status: str, color: bool) -> Any:
    from rich.text import Text

    style = {"OK": "green", "ERROR": "bold red", "IN_PROGRESS": "yellow"}.get(status, "")
    return Text(visible(status), style=style if color else "")


def explain(node: Any, keys: Sequence[Any]) -> None:
    from ..filters.ast import tree

    out = sys.stdout
    if node is None:
        out.write("filter: (none: every trace)\n")
    else:
        out.write(f"filter: {node}\n{tree(node, '  ')}\n")
    out.write("order: " + ", ".join(str(k) for k in keys) + "\n")


# -- one trace ---------------------------------------------------------------------------------


MAX_TREE_DEPTH = 40


def trace_detail(trace: Trace, fmt: str, color: bool) -> None:
    if fmt == "json":
        _write_json(trace.to_dict())
        return
    from rich.table import Table
    from rich.text import Text
    from rich.tree import Tree

    con = _console(color)
    i = trace.info
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold" if color else None)
    head.add_column(overflow="fold")
    for field_name, value in (
        ("trace", i.trace_id),
        ("name", i.name),
        ("experiment", i.experiment_id),
        ("status", _status(i.status, color)),
        ("started", fmt_time(i.timestamp_ms) + " UTC"),
        ("duration", fmt_duration(i.execution_time_ms)),
        ("request", i.request_preview),
        ("response", i.response_preview),
        ("client request", i.client_request_id),
    ):
        if value:
            head.add_row(field_name, _cell(value))
    con.print(head)
    for title, values in (("tags", i.tags), ("metadata", i.metadata)):
        if not values:
            con.print(Text(f"{title}: none"))
            continue
        t = Table(title=f"{title} ({len(values)})", title_justify="left", show_header=False)
        t.add_column(style="cyan" if color else None, overflow="fold")
        t.add_column(overflow="fold")
        for k in sorted(values):
            t.add_row(_cell(k), _cell(values[k]))
        con.print(t)
    tree = Tree(f"spans ({len(trace.spans)})")
    # Where each span's children go: its own node, or past MAX_TREE_DEPTH the node its chain
    # hangs flat under, so a 5,000-span chain stays readable.
    holder: dict[int, Any] = {}
    # Each level indents by 4 columns: keep 40 for the label, whatever the terminal's width.
    max_depth = max(4, min(MAX_TREE_DEPTH, (con.width - 40) // 4))
    for parent, span, depth in span_order(trace.spans):
        label = Text.assemble(
            visible(span.name),
            f" [{visible(span.span_type)}] {fmt_duration(span.duration_ms)} ",
            _status(span.status, color),
        )
        under = tree if parent is None else holder[id(parent)]
        if depth > max_depth:
            label = Text.assemble(f"(depth {depth}) ", label)
        node = under.add(label)
        for e in span.events:
            node.add(Text(f"event {visible(e.name)}: {visible(str(e.attributes))}"))
        holder[id(span)] = node if depth < max_depth else under
    con.print(tree)


def span_order(spans: Sequence[Span]) -> list[tuple[Span | None, Span, int]]:
    """Spans in tree order as (parent, span, depth), parents first, without recursion.

    A span whose parent is missing is a root; spans caught in a parent cycle are shown as
    roots too, never hidden.
    """
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[Span]] = {}
    for s in sorted(spans, key=lambda s: s.start_time_ns):
        parent = s.parent_id if s.parent_id in ids and s.parent_id != s.span_id else None
        children.setdefault(parent, []).append(s)
    seen: set[int] = set()
    out: list[tuple[Span | None, Span, int]] = []
    pending: list[tuple[Span | None, Span, int]] = [
        (None, s, 0) for s in reversed(children.get(None, []))
    ]
    while True:
        while pending:
            parent_span, s, depth = pending.pop()
            if id(s) in seen:
                continue
            seen.add(id(s))
            out.append((parent_span, s, depth))
            pending.extend((s, c, depth + 1) for c in reversed(children.get(s.span_id, [])))
        rest = [s for s in spans if id(s) not in seen]
        if not rest:
            return out
        pending = [(None, rest[0], 0)]


# -- tags --------------------------------------------------------------------------------------


def key_values(values: Mapping[str, str], fmt: str, color: bool, header: bool = True) -> None:
    if fmt == "json":  # one object, as a trace's tags are in every other JSON we write
        _write_json(dict(values))
        return
    data = [{"key": k, "value": values[k]} for k in sorted(values)]
    rows(data, ["key", "value"], fmt, color, header=header, wrap=("value",))


def tag_report(report: Any, fmt: str, color: bool, show_changes: bool = False) -> None:
    """The summary on stderr; with ``--dry-run`` (or ``show_changes``) each change on stdout."""
    if fmt == "json":
        _write_json(report.to_dict())
    elif report.dry_run or show_changes:
        out = sys.stdout
        for c in report.changes:
            tid = visible(c.trace_id)
            if not c.is_change:
                if not c.conflicts:
                    out.write(f"{tid}  unchanged\n")
                continue
            for k, v in c.added.items():
                out.write(f"{tid}  + {visible(k)}={visible(v)}\n")
            for k, (old, new) in c.changed.items():
                out.write(f"{tid}  ~ {visible(k)}: {visible(old)} -> {visible(new)}\n")
            for k, v in c.deleted.items():
                out.write(f"{tid}  - {visible(k)} (was {visible(v)})\n")
        out.flush()
    verb = (
        "would change" if report.dry_run or (report.changed and not report.written) else "changed"
    )
    n = len(report.changed)
    parts = [f"{n} {'trace' if n == 1 else 'traces'} {verb}", f"{len(report.unchanged)} unchanged"]
    if report.not_found:
        parts.append(f"{len(report.not_found)} not found")
    if report.conflicts:
        parts.append(f"{len(report.conflicts)} renames skipped")
    _err(", ".join(parts) + ("" if report.written or report.dry_run else "; nothing written"))
    for tid in report.not_found:
        _err(f"tracetag: trace not found: {tid}")
    for tid, key in report.missing_keys:
        _err(f"tracetag: trace {tid} has no tag {key!r}")
    for tid, key, target in report.conflicts:
        _err(f"tracetag: {tid}: not renamed {key!r} -> {target!r}: {target!r} holds another value")


def delete_report(report: Any, fmt: str) -> None:
    if fmt == "json":
        _write_json(report.to_dict())
    elif report.dry_run:
        sys.stdout.write("".join(f"{visible(tid)}\n" for tid in report.trace_ids))
        sys.stdout.flush()
    verb = "would delete" if report.dry_run else "deleted"
    _err(
        f"{verb} {plural(report.deleted, 'trace')}"
        + (f", {len(report.not_found)} not found" if report.not_found else "")
    )
    for tid in report.not_found:
        _err(f"tracetag: trace not found: {tid}")


def edit_result(result: Any) -> None:
    if result.error:
        _err(f"tracetag: error: {result.error}")
        if result.saved_to:
            _err(f"tracetag: your edit is saved in {result.saved_to}")
        return
    change = result.change
    if change is None or not change.is_change:
        _err("no changes; nothing written")
        return
    for k, v in change.added.items():
        _err(f"+ {k}={v}")
    for k, (old, new) in change.changed.items():
        _err(f"~ {k}: {old} -> {new}")
    for k, v in change.deleted.items():
        _err(f"- {k} (was {v})")


# -- tables of rows ----------------------------------------------------------------------------

LISTING_FORMATS = ("table", "tsv", "csv", "json", "jsonl")


def rows(
    data: Sequence[Mapping[str, Any]],
    cols: Sequence[str],
    fmt: str,
    color: bool,
    header: bool = True,
    wrap: Sequence[str] = (),
) -> None:
    """Any listing in any of :data:`LISTING_FORMATS`."""
    if fmt == "json":
        _write_json(list(data))
        return
    if fmt == "jsonl":
        _jsonl(data)
        return
    body = [[r.get(c) for c in cols] for r in data]
    if fmt == "table":
        numbers = [
            c
            for i, c in enumerate(cols)
            if body and all(isinstance(r[i], int | float) for r in body)
        ]
        _table(cols, body, color, wrap=wrap or [c for c in cols if c not in numbers], right=numbers)
    elif fmt == "csv":
        _csv(cols, body, header)
    else:
        _tsv(cols, body, header)


def _bar(value: float, top: float, width: int = 12) -> str:
    if top <= 0:
        return ""
    n = value / top * width
    full = int(n)
    part = " ▏▎▍▌▋▊▉"[int((n - full) * 8)] if full < width else ""
    return ("█" * full + part.strip()).ljust(width)


STATS_COLUMNS = ("count", "errors", "error_rate", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms")


def stats(result: Any, fmt: str, color: bool, header: bool = True) -> None:
    """One vocabulary everywhere: ``errors`` is a count, ``error_rate`` a fraction."""
    cols = [*result.group_names, *STATS_COLUMNS]
    data = result.rows
    if fmt == "json":
        _write_json({"group_by": result.group_names, "percentiles": "nearest-rank", "groups": data})
        return
    if fmt == "jsonl":
        _jsonl(data)
        return
    body = [
        [
            *r["group"],
            r["count"],
            r["errors"],
            round(r["error_rate"], 4),
            None if r["mean_ms"] is None else round(r["mean_ms"], 2),
            r["p50_ms"],
            r["p95_ms"],
            r["p99_ms"],
            r["max_ms"],
        ]
        for r in data
    ]
    if fmt == "csv":
        _csv(cols, body, header)
        return
    if fmt == "tsv":
        _tsv(cols, body, header)
        return
    top_mean = max((r["mean_ms"] or 0 for r in data), default=0)
    pretty = [
        [
            *r["group"],
            r["count"],
            r["errors"],
            f"{r['error_rate']:.1%}",
            fmt_duration(r["mean_ms"]),
            fmt_duration(r["p50_ms"]),
            fmt_duration(r["p95_ms"]),
            fmt_duration(r["p99_ms"]),
            fmt_duration(r["max_ms"]),
            _bar(r["mean_ms"] or 0, top_mean),
        ]
        for r in data
    ]
    names = [*result.group_names, "count", "errors", "error_rate", "mean", "p50", "p95", "p99"]
    names += ["max", "mean ▁▃▅█"]
    numbers = ("count", "errors", "error_rate", "mean", "p50", "p95", "p99", "max")
    drop = ("mean ▁▃▅█", "p99", "p95", "error_rate", "max", "mean")
    _table(names, pretty, color, right=numbers, drop=drop)
    total = sum(r["count"] for r in data)
    groups = plural(len(data), "group")
    _err(f"{plural(total, 'trace')} in {groups}; percentiles are nearest-rank")


def lint_findings(findings: Sequence[Any], fmt: str, color: bool) -> None:
    cols = ["rule", "key", "value", "traces", "suggestion"]
    if fmt in ("json", "jsonl"):
        (_write_json if fmt == "json" else _jsonl)([f.to_dict() for f in findings])
        return
    if not findings:
        _err("no findings")
        return
    data = [
        dict(zip(cols, (f.rule, f.key, f.value, f.traces, f.suggestion), strict=True))
        for f in findings
    ]
    rows(data, cols, fmt, color, wrap=("suggestion", "value"))
    _err(plural(len(findings), "finding"))


def import_summary(summary: Any, fmt: str) -> None:
    if fmt == "json":
        _write_json(summary.to_dict())
        return
    _err(
        f"imported {plural(summary.imported, 'trace')} "
        f"({summary.new} new, {summary.updated} updated)"
    )
    for line, msg in summary.invalid:
        _err(f"skipped record {line}: {msg}")
    if summary.invalid:
        _err(f"{plural(len(summary.invalid), 'invalid record')} skipped")


def mapping(data: Mapping[str, Any], fmt: str) -> None:
    if fmt == "json":
        _write_json(dict(data))
        return
    width = max((len(k) for k in data), default=0)
    for k, v in data.items():
        sys.stdout.write(f"{k.ljust(width)}  {visible(v, newlines=True)}\n")


def check_report(report: Any, fmt: str) -> None:
    if fmt == "json":
        _write_json(report.to_dict())
        return
    for line in report.lines():
        sys.stdout.write(visible(line) + "\n")
