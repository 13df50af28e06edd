"""What the CLI shows for each kind of result: search pages, one trace, tag and delete reports,
statistics, lint findings. The writing itself (safe text, TSV, CSV, JSON, tables) is
:mod:`.output`'s.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ..model import Span, Trace, TraceInfo
from .output import (
    LISTING_FORMATS,
    cell,
    console,
    csv,
    csv_cell,
    default_format,
    dispatch,
    err,
    fmt_duration,
    fmt_time,
    iso_time,
    jsonl,
    plural,
    progress,
    rows,
    table,
    tsv,
    tsv_cell,
    user_tags,
    visible,
    write_json,
)

__all__ = [
    "LISTING_FORMATS",
    "csv_cell",
    "default_format",
    "progress",
    "rows",
    "tsv_cell",
    "visible",
]


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

    def ids() -> None:
        every = page.trace_ids()
        for start in range(0, len(every), 65536):  # large writes, not one per trace
            out.write("".join(f"{t}\n" for t in every[start : start + 65536]).encode())

    def as_json() -> None:
        out.write(b'{"traces": [')
        for n, d in enumerate(page):
            out.write((b",\n  " if n else b"\n  ") + orjson.dumps(_info(d)))
        out.write(b'\n], "next_page_token": ' + orjson.dumps(token) + b"}\n")

    def as_jsonl() -> None:
        for d in page:
            out.write(orjson.dumps(_info(d)) + b"\n")

    def listing() -> None:
        out.flush()
        pretty = fmt == "table"
        cols = columns or list(SEARCH_COLUMNS)
        names = [_column_title(c, pretty) for c in cols]
        body = (_trace_row(TraceInfo.from_dict(d), cols, pretty, color) for d in page)
        if not pretty:
            (csv if fmt == "csv" else tsv)(names, body, header)
            return
        table(
            names,
            body,
            color,
            wrap=("name", "tags"),
            right=("duration",),
            drop=("time (UTC)", "name", "duration", "status"),
            wrap_min=28,  # tags stay readable: other columns go first
        )

    dispatch(fmt, ids=ids, json=as_json, jsonl=as_jsonl, other=listing)
    out.flush()
    if fmt != "json":
        if token:
            err(f"{plural(len(page), 'trace')}; next page: --page-token {token}")
        elif fmt == "table":
            err(plural(len(page), "trace"))


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
            tags = sorted(user_tags(i.tags).items())
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
    dispatch(fmt, json=lambda: write_json(trace.to_dict()), other=lambda: _tree(trace, color))


def _tree(trace: Trace, color: bool) -> None:
    from rich.table import Table
    from rich.text import Text
    from rich.tree import Tree

    con = console(color)
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
            head.add_row(field_name, cell(value))
    con.print(head)
    for title, values in (("tags", i.tags), ("metadata", i.metadata)):
        if not values:
            con.print(Text(f"{title}: none"))
            continue
        t = Table(title=f"{title} ({len(values)})", title_justify="left", show_header=False)
        t.add_column(style="cyan" if color else None, overflow="fold")
        t.add_column(overflow="fold")
        for k in sorted(values):
            t.add_row(cell(k), cell(values[k]))
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
    data = [{"key": k, "value": values[k]} for k in sorted(values)]
    dispatch(
        fmt,
        # one object, as a trace's tags are in every other JSON we write
        json=lambda: write_json(dict(values)),
        other=lambda: rows(data, ["key", "value"], fmt, color, header=header, wrap=("value",)),
    )


def tag_report(report: Any, fmt: str, color: bool, show_changes: bool = False) -> None:
    """The summary on stderr; with ``--dry-run`` (or ``show_changes``) each change on stdout."""
    show = report.dry_run or show_changes
    dispatch(
        fmt,
        json=lambda: write_json(report.to_dict()),
        other=lambda: _tag_changes(report) if show else None,
    )
    _tag_summary(report)


def _tag_changes(report: Any) -> None:
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


def _tag_summary(report: Any) -> None:
    verb = (
        "would change" if report.dry_run or (report.changed and not report.written) else "changed"
    )
    n = len(report.changed)
    parts = [f"{n} {'trace' if n == 1 else 'traces'} {verb}", f"{len(report.unchanged)} unchanged"]
    if report.not_found:
        parts.append(f"{len(report.not_found)} not found")
    if report.conflicts:
        parts.append(f"{len(report.conflicts)} renames skipped")
    err(", ".join(parts) + ("" if report.written or report.dry_run else "; nothing written"))
    for tid in report.not_found:
        err(f"tracetag: trace not found: {tid}")
    for tid, key in report.missing_keys:
        err(f"tracetag: trace {tid} has no tag {key!r}")
    for tid, key, target in report.conflicts:
        err(f"tracetag: {tid}: not renamed {key!r} -> {target!r}: {target!r} holds another value")


def delete_report(report: Any, fmt: str) -> None:
    def ids() -> None:
        if report.dry_run:
            sys.stdout.write("".join(f"{visible(tid)}\n" for tid in report.trace_ids))
            sys.stdout.flush()

    dispatch(fmt, json=lambda: write_json(report.to_dict()), other=ids)
    verb = "would delete" if report.dry_run else "deleted"
    err(
        f"{verb} {plural(report.deleted, 'trace')}"
        + (f", {len(report.not_found)} not found" if report.not_found else "")
    )
    for tid in report.not_found:
        err(f"tracetag: trace not found: {tid}")


def edit_result(result: Any) -> None:
    if result.error:
        err(f"tracetag: error: {result.error}")
        if result.saved_to:
            err(f"tracetag: your edit is saved in {result.saved_to}")
        return
    change = result.change
    if change is None or not change.is_change:
        err("no changes; nothing written")
        return
    for k, v in change.added.items():
        err(f"+ {k}={v}")
    for k, (old, new) in change.changed.items():
        err(f"~ {k}: {old} -> {new}")
    for k, v in change.deleted.items():
        err(f"- {k} (was {v})")


# -- tables of rows ----------------------------------------------------------------------------


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
    whole = {
        "group_by": result.group_names,
        "unit": result.unit,
        "percentiles": "nearest-rank",
        "groups": data,
    }
    dispatch(
        fmt,
        json=lambda: write_json(whole),
        jsonl=lambda: jsonl(data),
        csv=lambda: csv(cols, body, header),
        tsv=lambda: tsv(cols, body, header),
        table=lambda: _stats_table(result, color),
    )


def _stats_table(result: Any, color: bool) -> None:
    data = result.rows
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
    table(names, pretty, color, right=numbers, drop=drop)
    total = sum(r["count"] for r in data)
    groups = plural(len(data), "group")
    err(f"{plural(total, result.unit)} in {groups}; percentiles are nearest-rank")


def lint_findings(findings: Sequence[Any], fmt: str, color: bool) -> None:
    cols = ["rule", "key", "value", "traces", "suggestion"]
    as_dicts = [f.to_dict() for f in findings]

    def listing() -> None:
        if not findings:
            err("no findings")
            return
        data = [
            dict(zip(cols, (f.rule, f.key, f.value, f.traces, f.suggestion), strict=True))
            for f in findings
        ]
        rows(data, cols, fmt, color, wrap=("suggestion", "value"))
        err(plural(len(findings), "finding"))

    dispatch(fmt, json=lambda: write_json(as_dicts), jsonl=lambda: jsonl(as_dicts), other=listing)


def import_summary(summary: Any, fmt: str, verb: str = "imported") -> None:
    dispatch(
        fmt, json=lambda: write_json(summary.to_dict()), other=lambda: _imported(summary, verb)
    )


def _imported(summary: Any, verb: str) -> None:
    err(
        f"{verb} {plural(summary.imported, 'trace')} ({summary.new} new, {summary.updated} updated)"
    )
    for line, msg in summary.invalid:
        err(f"skipped record {line}: {msg}")
    if summary.invalid:
        err(f"{plural(len(summary.invalid), 'invalid record')} skipped")


def mapping(data: Mapping[str, Any], fmt: str) -> None:
    def text() -> None:
        width = max((len(k) for k in data), default=0)
        for k, v in data.items():
            sys.stdout.write(f"{k.ljust(width)}  {visible(v, newlines=True)}\n")

    dispatch(fmt, json=lambda: write_json(dict(data)), other=text)


def check_report(report: Any, fmt: str) -> None:
    def text() -> None:
        for line in report.lines():
            sys.stdout.write(visible(line) + "\n")

    dispatch(fmt, json=lambda: write_json(report.to_dict()), other=text)
