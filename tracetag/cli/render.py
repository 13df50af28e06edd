"""Rendering for the CLI: Rich on a terminal, plain TSV / CSV / JSON for pipes and scripts.

Data goes to stdout, summaries and notes to stderr, so ``| jq`` and ``| xargs`` see only data.
"""

from __future__ import annotations

import contextlib
import csv
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


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


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


def _tsv_cell(value: Any) -> str:
    return str("" if value is None else value).replace("\t", " ").replace("\n", " ")


def _tsv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    out = sys.stdout
    out.write("\t".join(header) + "\n")
    for row in rows:
        out.write("\t".join(_tsv_cell(c) for c in row) + "\n")
    out.flush()


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow(["" if c is None else c for c in row])
    sys.stdout.flush()


def _table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    color: bool,
    wrap: Sequence[str] = (),
    right: Sequence[str] = (),
    **kw: Any,
) -> None:
    """A Rich table; columns not named in ``wrap`` never wrap (ids and times stay whole), and
    those in ``right`` (numbers) align right."""
    from rich.table import Table

    table = Table(header_style="bold" if color else None, **kw)
    for name in header:
        justify: Literal["left", "right"] = "right" if name in right else "left"
        if name in wrap:
            table.add_column(name, overflow="fold", ratio=1, justify=justify)
        else:
            table.add_column(name, no_wrap=True, justify=justify)
    for row in rows:
        table.add_row(*("" if c is None else str(c) for c in row))
    _console(color).print(table)


# -- search ------------------------------------------------------------------------------------


def traces(page: Any, fmt: str, color: bool) -> None:
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
        header = [
            "trace_id",
            "time (UTC)" if pretty else "time",
            "name",
            "status",
            "duration" if pretty else "duration_ms",
            "tags",
        ]
        rows = (_trace_row(TraceInfo.from_dict(d), pretty, color) for d in page)
        if pretty:
            _table(header, rows, color, wrap=("name", "tags"), right=("duration",))
        else:
            (_csv if fmt == "csv" else _tsv)(header, rows)
    out.flush()
    if fmt != "json":
        if token:
            _err(f"{len(page)} traces; next page: --page-token {token}")
        elif fmt == "table":
            _err(f"{len(page)} traces")


def _info(doc: dict) -> dict:
    """The public fields of an info document (not the store's span pointer)."""
    return TraceInfo.from_dict(doc).to_dict()


def _trace_row(i: TraceInfo, pretty: bool, color: bool) -> tuple[Any, ...]:
    """One listing row: formatted for a terminal, or raw values for pipes and spreadsheets."""
    tags = sorted(_user_tags(i.tags).items())
    if pretty:
        shown = _escape("\n".join(f"{k}={v}" for k, v in tags))  # one tag a line
        status = _status(i.status, color)
        return (
            i.trace_id,
            fmt_time(i.timestamp_ms),
            i.name,
            status,
            fmt_duration(i.execution_time_ms),
            shown,
        )
    shown = " ".join(f"{k}={v}" for k, v in tags)
    return (i.trace_id, iso_time(i.timestamp_ms), i.name, i.status, i.execution_time_ms, shown)


def _status(status: str, color: bool) -> str:
    if not color:
        return status
    style = {"OK": "green", "ERROR": "bold red", "IN_PROGRESS": "yellow"}.get(status, "")
    return f"[{style}]{status}[/]" if style else status


def explain(node: Any, keys: Sequence[Any]) -> None:
    from ..filters.ast import tree

    out = sys.stdout
    if node is None:
        out.write("filter: (none: every trace)\n")
    else:
        out.write(f"filter: {node}\n{tree(node, '  ')}\n")
    out.write("order: " + ", ".join(str(k) for k in keys) + "\n")


# -- one trace ---------------------------------------------------------------------------------


def trace_detail(trace: Trace, fmt: str, color: bool) -> None:
    if fmt == "json":
        _write_json(trace.to_dict())
        return
    from rich.table import Table
    from rich.tree import Tree

    con = _console(color)
    i = trace.info
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold" if color else None)
    head.add_column()
    for label, value in (
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
            head.add_row(label, value if label == "status" else _escape(str(value)))
    con.print(head)
    for title, values in (("tags", i.tags), ("metadata", i.metadata)):
        t = Table(title=f"{title} ({len(values)})", title_justify="left", show_header=False)
        t.add_column(style="cyan" if color else None)
        t.add_column()
        for k in sorted(values):
            t.add_row(_escape(k), _escape(values[k]))
        con.print(t)
    tree = Tree(f"spans ({len(trace.spans)})")
    children: dict[str | None, list[Span]] = {}
    ids = {s.span_id for s in trace.spans}
    for s in sorted(trace.spans, key=lambda s: s.start_time_ns):
        parent = s.parent_id if s.parent_id in ids else None
        children.setdefault(parent, []).append(s)

    def add(node: Any, parent: str | None) -> None:
        for s in children.get(parent, []):
            kind = _escape(f"[{s.span_type}]")
            took = fmt_duration(s.duration_ms)
            label = f"{_escape(s.name)} {kind} {took} {_status(s.status, color)}"
            branch = node.add(label)
            for e in s.events:
                branch.add(f"event {_escape(e.name)}: {_escape(str(e.attributes))}")
            add(branch, s.span_id)

    add(tree, None)
    con.print(tree)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# -- tags --------------------------------------------------------------------------------------


def key_values(values: Mapping[str, str], fmt: str, color: bool) -> None:
    if fmt == "json":
        _write_json(dict(values))
        return
    rows = [(_escape(k), _escape(values[k])) for k in sorted(values)]
    if fmt == "table":
        _table(["key", "value"], rows, color, wrap=("value",))
    else:
        _tsv(["key", "value"], rows)


def tag_report(report: Any, fmt: str, color: bool, show_changes: bool = False) -> None:
    """The summary on stderr; with ``--dry-run`` (or ``show_changes``) each change on stdout."""
    if fmt == "json":
        _write_json(report.to_dict())
    elif report.dry_run or show_changes:
        out = sys.stdout
        for c in report.changes:
            if not c.is_change:
                out.write(f"{c.trace_id}  unchanged\n")
                continue
            for k, v in c.added.items():
                out.write(f"{c.trace_id}  + {k}={v}\n")
            for k, (old, new) in c.changed.items():
                out.write(f"{c.trace_id}  ~ {k}: {old} -> {new}\n")
            for k, v in c.deleted.items():
                out.write(f"{c.trace_id}  - {k} (was {v})\n")
        out.flush()
    verb = "would change" if report.dry_run else "changed"
    parts = [f"{len(report.changed)} traces {verb}", f"{len(report.unchanged)} unchanged"]
    if report.not_found:
        parts.append(f"{len(report.not_found)} not found")
    _err(", ".join(parts) + ("" if report.written or report.dry_run else "; nothing written"))
    for tid in report.not_found:
        _err(f"tracetag: trace not found: {tid}")
    for tid, key in report.missing_keys:
        _err(f"tracetag: trace {tid} has no tag {key!r}")


def delete_report(report: Any, fmt: str) -> None:
    if fmt == "json":
        _write_json(report.to_dict())
    elif report.dry_run:
        sys.stdout.write("".join(f"{tid}\n" for tid in report.trace_ids))
        sys.stdout.flush()
    verb = "would delete" if report.dry_run else "deleted"
    _err(
        f"{verb} {report.deleted} traces"
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


def rows(data: Sequence[Mapping[str, Any]], cols: Sequence[str], fmt: str, color: bool) -> None:
    if fmt == "json":
        _write_json(list(data))
        return
    body = [[r.get(c) for c in cols] for r in data]
    if fmt == "table":
        _table(cols, body, color)
    elif fmt == "csv":
        _csv(cols, body)
    else:
        _tsv(cols, body)


def _bar(value: float, top: float, width: int = 12) -> str:
    if top <= 0:
        return ""
    n = value / top * width
    full = int(n)
    part = " ▏▎▍▌▋▊▉"[int((n - full) * 8)] if full < width else ""
    return ("█" * full + part.strip()).ljust(width)


def stats(result: Any, fmt: str, color: bool) -> None:
    cols = [
        *result.group_names,
        "count",
        "error_rate",
        "mean_ms",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
    ]
    data = result.rows
    if fmt == "json":
        _write_json({"group_by": result.group_names, "percentiles": "nearest-rank", "groups": data})
        return
    body = [
        [
            *r["group"],
            r["count"],
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
        _csv(cols, body)
    elif fmt == "tsv":
        _tsv(cols, body)
    else:
        top_mean = max((r["mean_ms"] or 0 for r in data), default=0)
        pretty = [
            [
                *r["group"],
                r["count"],
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
        header = [
            *result.group_names,
            "count",
            "errors",
            "mean",
            "p50",
            "p95",
            "p99",
            "max",
            "mean ▁▃▅█",
        ]
        numbers = ("count", "errors", "mean", "p50", "p95", "p99", "max")
        _table(header, pretty, color, wrap=tuple(result.group_names), right=numbers)
        _err(
            f"{sum(r['count'] for r in data)} traces in {len(data)} groups; "
            "percentiles are nearest-rank"
        )


def lint_findings(findings: Sequence[Any], fmt: str, color: bool) -> None:
    if fmt == "json":
        _write_json([f.to_dict() for f in findings])
        return
    if not findings:
        _err("no findings")
        return
    body = [(f.rule, f.key, f.value or "", f.traces, f.suggestion) for f in findings]
    if fmt == "table":
        _table(["rule", "key", "value", "traces", "suggestion"], body, color, wrap=("suggestion",))
    else:
        _tsv(["rule", "key", "value", "traces", "suggestion"], body)
    _err(f"{len(findings)} findings")


def import_summary(summary: Any, fmt: str) -> None:
    if fmt == "json":
        _write_json(summary.to_dict())
        return
    _err(f"imported {summary.imported} traces ({summary.new} new, {summary.updated} updated)")
    for line, msg in summary.invalid:
        _err(f"skipped record {line}: {msg}")
    if summary.invalid:
        _err(f"{len(summary.invalid)} invalid records skipped")


def mapping(data: Mapping[str, Any], fmt: str) -> None:
    if fmt == "json":
        _write_json(dict(data))
        return
    width = max((len(k) for k in data), default=0)
    for k, v in data.items():
        sys.stdout.write(f"{k.ljust(width)}  {v}\n")


def check_report(report: Any, fmt: str) -> None:
    if fmt == "json":
        _write_json(report.to_dict())
        return
    for line in report.lines():
        sys.stdout.write(line + "\n")
