"""How the CLI writes: terminal-safe text, TSV and CSV that programs can parse, JSON, and Rich
tables that fit the terminal. Data goes to stdout, summaries and notes to stderr, so ``| jq``
and ``| xargs`` see only data. :func:`dispatch` picks a writer per output format.
"""

from __future__ import annotations

import contextlib
import csv as csv_module
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson


def default_format() -> str:
    """A Rich table on a terminal; tab-separated text with a header line in a pipe."""
    return "table" if sys.stdout.isatty() else "tsv"


def console(color: bool = True, stderr: bool = False) -> Any:

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
        console=console(stderr=True),
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


def err(text: str) -> None:
    sys.stderr.write(visible(text, newlines=True) + "\n")


def write_json(obj: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


def fmt_time(ms: int | None) -> str:
    """For people: UTC to the second (headers say UTC)."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso_time(ms: int | None) -> str:
    """For programs: ISO 8601 in UTC with milliseconds, which the filter's dates accept."""
    from ..filters.fields import format_iso_ms

    return "" if ms is None else format_iso_ms(ms)


def fmt_duration(ms: int | float | None) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f}s"
    return f"{ms / 60_000:.1f}m"


def user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags minus MLflow's bookkeeping (``mlflow.*``), for compact listings."""
    return {k: v for k, v in tags.items() if not k.startswith("mlflow.")}


def tsv(header: Sequence[str], rows: Iterable[Sequence[Any]], show_header: bool = True) -> None:
    out = sys.stdout
    if show_header:
        out.write("\t".join(tsv_cell(h) for h in header) + "\n")
    for row in rows:
        out.write("\t".join(tsv_cell(c) for c in row) + "\n")
    out.flush()


def csv(header: Sequence[str], rows: Iterable[Sequence[Any]], show_header: bool = True) -> None:
    w = csv_module.writer(sys.stdout, lineterminator="\n")
    if show_header:
        w.writerow([csv_cell(h) for h in header])
    for row in rows:
        w.writerow([csv_cell(c) for c in row])
    sys.stdout.flush()


def jsonl(items: Iterable[Any]) -> None:
    out = sys.stdout.buffer
    for item in items:
        out.write(orjson.dumps(item) + b"\n")
    out.flush()


def cell(value: Any) -> Any:
    """A table cell: data is never markup (``[/api]`` stays text, ``[link=...]`` no link)."""
    from rich.text import Text

    if isinstance(value, Text):
        return value
    return Text(visible(value, newlines=True))


def table(
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

    screen = console(color)
    body = [list(r) for r in rows]
    widths = {name: max([len(name)] + [width(r[i]) for r in body]) for i, name in enumerate(header)}
    keep = list(header)
    for name in drop:
        need = sum(min(widths[c], wrap_min) if c in wrap else widths[c] for c in keep)
        need += 3 * len(keep)
        if need <= screen.width:
            break
        if name in keep:
            keep.remove(name)
    grid = Table(header_style="bold" if color else None, box=box.SIMPLE_HEAD, pad_edge=False, **kw)
    for name in keep:
        justify: Literal["left", "right"] = "right" if name in right else "left"
        if name in wrap:
            grid.add_column(name, overflow="fold", ratio=1, justify=justify, min_width=8)
        else:
            grid.add_column(name, no_wrap=True, justify=justify, min_width=widths[name])
    index = [list(header).index(name) for name in keep]
    for row in body:
        grid.add_row(*(cell(row[i]) for i in index))
    screen.print(grid)


def width(value: Any) -> int:
    from rich.cells import cell_len

    text = value.plain if hasattr(value, "plain") else visible(value, newlines=True)
    return max((cell_len(line) for line in text.split("\n")), default=0)


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
    body = [[r.get(c) for c in cols] for r in data]

    def as_table() -> None:
        numbers = [
            c
            for i, c in enumerate(cols)
            if body and all(isinstance(r[i], int | float) for r in body)
        ]
        table(cols, body, color, wrap=wrap or [c for c in cols if c not in numbers], right=numbers)

    dispatch(
        fmt,
        json=lambda: write_json(list(data)),
        jsonl=lambda: jsonl(data),
        table=as_table,
        csv=lambda: csv(cols, body, header),
        tsv=lambda: tsv(cols, body, header),
    )


def dispatch(fmt: str, **writers: Callable[[], None]) -> None:
    """Run the writer named after ``fmt`` (``other`` when there is none for it): one place
    that maps formats to code, instead of a chain of ``if fmt == ...`` in every renderer."""
    writer = writers.get(fmt) or writers.get("other")
    if writer is None:
        raise ValueError(f"no writer for format {fmt!r}")
    writer()
