"""Commands about whole traces: search, show, import, export, delete."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InvalidInput
from ..formats import EXPORT_FORMATS, IMPORT_FORMATS
from .app import (
    DryRunOpt,
    ExpOpt,
    FilterOpt,
    LabelsOpt,
    NoHeaderOpt,
    SearchOutput,
    ShowOutput,
    TextOutput,
    _choice,
    _ids_from,
    _render,
    _state,
    app,
    complete_trace_ids,
)

# ---------------------------------------------------------------------------------------------
# search / show


OrderByOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--order-by",
        metavar="KEY",
        help="KEY [ASC|DESC] (repeatable, or comma-separated), e.g. 'execution_time_ms DESC'.",
    ),
]
MaxResultsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-results",
        "-n",
        metavar="N",
        min=1,
        help="Traces per page (default: 100 on a terminal; every match with -o ids or "
        "in a pipe, so a pipeline never stops at a page).",
        show_default=False,
    ),
]
AllOpt = Annotated[bool, typer.Option("--all", "-a", help="Every match, no paging.")]
PageTokenOpt = Annotated[
    str | None,
    typer.Option("--page-token", metavar="TOKEN", help="Token printed by the previous page."),
]
ColumnsOpt = Annotated[
    str | None,
    typer.Option(
        "--columns",
        metavar="COLS",
        help="Columns for table/tsv/csv, comma-separated: trace_id, time, name, status, "
        "duration, tags, or tags.KEY / metadata.KEY in a column of its own.",
        show_default=False,
    ),
]
ExplainOpt = Annotated[
    bool, typer.Option("--explain", help="Print the parsed filter and order; do not search.")
]


@app.command()
def search(
    ctx: typer.Context,
    filter_string: FilterOpt = None,
    order_by: OrderByOpt = None,
    max_results: MaxResultsOpt = None,
    all_results: AllOpt = False,
    experiment_id: ExpOpt = None,
    page_token: PageTokenOpt = None,
    output: SearchOutput = None,
    columns: ColumnsOpt = None,
    no_header: NoHeaderOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Search traces with a filter, ordering and paging.

    \b
    Example: tracetag search -f "execution_time_ms > 5s" --order-by "execution_time_ms DESC"
    """
    st = _state(ctx)
    render = _render()
    if explain:
        from ..filters import parse_filter
        from ..query import parse_order_by

        node = parse_filter(filter_string)
        keys = parse_order_by(order_by)
        render.explain(node, keys)
        paged = not all_results and (max_results is not None or (output or "table") == "table")
        local = st.store_file()
        if local is None or local.exists():  # (a store not there yet has no plan to tell)
            for line in st.client.explain(node, order=keys, paged=paged):
                print(line)  # where a database or a server evaluates what; the file's plan
        return
    from ..filters import parse_filter

    parse_filter(filter_string)  # a wrong filter is reported before anything about the store
    cols = render.parse_columns(columns)
    fmt = output or render.default_format()
    if max_results is None and not all_results and fmt == "table":
        max_results = 100  # a screenful for a person; pipes and -o ids get every match
    page = st.client.search_page(
        experiment_id,
        filter_string,
        None if all_results else max_results,
        order_by,
        page_token,
        ids_only=fmt == "ids",
    )
    if fmt == "table" and len(page) > render.MAX_TABLE_ROWS:
        raise InvalidInput(
            f"{len(page)} traces are too many for a table; use -o tsv, -o jsonl or -n N"
        )
    render.traces(page, fmt, color=st.color, columns=cols, header=not no_header)


@app.command()
def show(
    ctx: typer.Context,
    trace_id: Annotated[
        str, typer.Argument(help="Trace id.", metavar="TRACE_ID", autocompletion=complete_trace_ids)
    ],
    output: ShowOutput = None,
) -> None:
    """Show a trace: info, tags, metadata and the span tree.

    \b
    Example: tracetag show tr-6663f3d7173cfa73b65948ca5fbc00b3 --output json
    """
    st = _state(ctx)
    trace = st.client.get_trace(trace_id)
    _render().trace_detail(trace, "json" if output == "json" else "table", color=st.color)


# ---------------------------------------------------------------------------------------------
# import / export


ImportFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        metavar="FORMAT",
        help="json (MLflow or tracetag) or otlp; default: told from each file.",
        callback=_choice(IMPORT_FORMATS),
        show_default=False,
    ),
]
IntoExperimentOpt = Annotated[
    str | None,
    typer.Option(
        "--experiment",
        "-x",
        metavar="NAME|ID",
        help="Where OTLP traces go (a new name makes an experiment); default: 0.",
        show_default=False,
    ),
]


@app.command("import")
def import_(
    ctx: typer.Context,
    files: Annotated[
        list[str],
        typer.Argument(
            help="Trace files: MLflow or tracetag JSON, OTLP JSON or protobuf; - for stdin.",
            metavar="FILE...",
        ),
    ],
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Import the readable traces, report the rest.")
    ] = False,
    format: ImportFormatOpt = None,
    experiment: IntoExperimentOpt = None,
    labels: LabelsOpt = "tag",
    output: TextOutput = None,
) -> None:
    """Import traces: MLflow's (Trace.to_json, mlflow traces get), tracetag's, or OTLP's.

    All files are one write: a bad record aborts the whole import (nothing is written) unless
    --skip-invalid. A trace already in the store is updated, not duplicated; OTLP spans of one
    trace may be spread over requests and files, and join the trace already stored. A JSON
    file over 64 MB is read in pieces, so memory does not grow with it (a progress bar shows on
    a terminal).

    \b
    Example: tracetag import traces.jsonl
    Example: tracetag import --format otlp collector-*.json -x chatbot
    """
    st = _state(ctx)
    st.creates = True
    with _render().progress("importing") as bar:
        summary = st.client.import_files(
            files,
            skip_invalid=skip_invalid,
            format=format,
            experiment=experiment,
            labels=labels,
            progress=bar,
        )
    _render().import_summary(summary, output or "text")
    if summary.invalid:
        raise typer.Exit(1)


@app.command()
def export(
    ctx: typer.Context,
    filter_string: FilterOpt = None,
    experiment_id: ExpOpt = None,
    out: Annotated[
        str | None,
        typer.Option("--out", "-O", metavar="FILE", help="Write to this file instead of stdout."),
    ] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="tracetag (imports back identically), mlflow (Trace.to_dict(), as MLflow "
            "writes and reads it) or otlp (OTLP/JSON requests, one per line, for any collector).",
            callback=_choice(EXPORT_FORMATS),
        ),
    ] = "tracetag",
) -> None:
    """Export traces (info and spans) as JSON lines: tracetag's, MLflow's or OTLP's.

    OTLP lines post unchanged to a collector's /v1/traces; tags travel as mlflow.traceTag.*
    and session and user as session.id and user.id, as MLflow, Langfuse and Phoenix read them.

    \b
    Example: tracetag export -f "tags.environment = 'production'" -O prod.jsonl
    Example: tracetag export --format otlp | head -1 | curl -H 'Content-Type: application/json'
    --data-binary @- http://localhost:4318/v1/traces
    """
    st = _state(ctx)
    if out is None:
        n = st.client.export_traces(sys.stdout.buffer, filter_string, experiment_id, format)
        sys.stdout.buffer.flush()
    else:
        n = _export_to_file(st.client, Path(out), filter_string, experiment_id, format)
    from .output import plural

    typer.echo(f"exported {plural(n, 'trace')}", err=True)


def _export_to_file(
    client: Any, out: Path, filter_string: str | None, exps: Any, format: str
) -> int:
    """Write beside ``out`` and rename, so a failed export never leaves half a file; the
    file is private (it holds prompts and responses) like the store."""
    from ..store import PRIVATE_FILE, create_file

    tmp = out.with_name(f".{out.name}.partial")
    try:
        fd = create_file(tmp, PRIVATE_FILE)
    except OSError as e:
        raise InvalidInput(f"{out}: cannot write ({e.strerror})") from None
    try:
        with open(fd, "wb") as fh:
            n = client.export_traces(fh, filter_string, exps, format)
        tmp.replace(out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InvalidInput(f"{out}: cannot write ({e.strerror})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


@app.command()
def delete(
    ctx: typer.Context,
    trace_ids: Annotated[
        list[str] | None,
        typer.Argument(
            help="Trace ids, or - to read them from stdin.",
            metavar="TRACE_ID",
            autocompletion=complete_trace_ids,
            show_default=False,
        ),
    ] = None,
    filter_string: FilterOpt = None,
    experiment_id: ExpOpt = None,
    max_traces: Annotated[
        int | None,
        typer.Option("--max-traces", metavar="N", min=1, help="Delete at most the N oldest."),
    ] = None,
    dry_run: DryRunOpt = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask before deleting by filter.")
    ] = False,
    output: TextOutput = None,
) -> None:
    """Delete traces by id or by filter, in one atomic write.

    Deleting by filter asks first on a terminal and needs --yes in a script.
    \b
    Example: tracetag delete -f "timestamp_ms < now() - 30d" --dry-run
    """
    from ..terminal import ask

    st = _state(ctx)
    if (trace_ids and filter_string is not None) or (not trace_ids and filter_string is None):
        raise InvalidInput("give trace ids or --filter (one of the two)")
    if experiment_id and len(experiment_id) > 1:
        raise InvalidInput("delete takes one --experiment-id")
    exp = experiment_id[0] if experiment_id else None
    ids = _ids_from(trace_ids) if trace_ids else None

    def run(dry: bool) -> Any:
        return st.client.delete_traces(
            exp, None, max_traces, ids, filter_string=filter_string, dry_run=dry
        )

    if filter_string is not None and not dry_run and not yes:
        planned = run(True)
        if planned.deleted and not ask(f"Delete {planned.deleted} traces?", default=False):
            if sys.stdin.isatty() and sys.stderr.isatty():
                typer.echo("nothing deleted", err=True)  # declining is an answer, not an error
                return
            raise InvalidInput(
                f"not deleting {planned.deleted} traces without confirmation; add --yes"
            )
    report = run(dry_run)
    _render().delete_report(report, output or "text")
    if report.not_found:
        raise typer.Exit(1)
